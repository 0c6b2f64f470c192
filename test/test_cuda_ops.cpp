// [cuda] tests: each launcher against the CPU backend running the same shared functor. Without a GPU they
// print "SKIPPED:" and ctest reports them as skipped.
#include <catch2/catch.hpp>
#include <iostream>

#include "cpu/cpu_backend.h"
#include "quant/quantized.h"
#include "cuda/device_info.h"
#include "test/helpers.h"
#ifdef QFT_WITH_CUDA
#include "cuda/cuda_ops.h"
#endif

using namespace qft;

namespace {

bool gpu_or_skip() {
  const DeviceInfo d = probe_cuda();
  if (d.device_count > 0) return true;
  std::cout << "SKIPPED: no usable GPU (" << d.error << ")\n";
  WARN("SKIPPED: no usable GPU (" << d.error << ")");
  return false;
}

#ifdef QFT_WITH_CUDA
// Device copies of host vectors, freed at scope exit.
struct DeviceVec {
  void* p;
  size_t bytes;
  template <class T>
  explicit DeviceVec(const std::vector<T>& h) : p(cuda::device_malloc(h.size() * sizeof(T))), bytes(h.size() * sizeof(T)) {
    cuda::copy_to_device(p, h.data(), bytes, nullptr);
  }
  ~DeviceVec() { cuda::device_free(p); }
  float* f() const { return static_cast<float*>(p); }
  std::vector<float> host() const {
    std::vector<float> h(bytes / 4);
    cuda::copy_to_host(h.data(), p, bytes, nullptr);
    return h;
  }
};
#endif

}  // namespace

TEST_CASE("cuda elementwise launcher: swiglu matches the CPU backend", "[cuda]") {
  if (!gpu_or_skip()) return;
#ifdef QFT_WITH_CUDA
  std::mt19937_64 rng(test::fresh_seed());
  const int64_t n = 100003;  // not a multiple of the block size
  auto g = test::random_normal(n, rng, 3.0f), u = test::random_normal(n, rng);
  std::vector<float> cpu(n);
  CpuBackend().swiglu_forward(cpu.data(), g.data(), u.data(), n);
  DeviceVec dg(g), du(u), dout(cpu);
  cuda::swiglu_forward(dout.f(), dg.f(), du.f(), n, nullptr);
  REQUIRE(test::max_rel_error(dout.host(), cpu) < 1e-6);
#endif
}

TEST_CASE("cuda row launcher: rmsnorm and cross-entropy match the CPU backend", "[cuda]") {
  if (!gpu_or_skip()) return;
#ifdef QFT_WITH_CUDA
  std::mt19937_64 rng(test::fresh_seed());
  const int N = 37, C = 1000, V = 32001;
  auto x = test::random_normal(size_t(N) * C, rng, 2.0f), w = test::random_normal(C, rng);
  std::vector<float> y(size_t(N) * C), rstd(N);
  CpuBackend cpu;
  cpu.rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
  DeviceVec dx(x), dw(w), dy(y), drstd(rstd);
  cuda::rmsnorm_forward(dy.f(), drstd.f(), dx.f(), dw.f(), N, C, 1e-6f, nullptr);
  REQUIRE(test::max_rel_error(dy.host(), y) < 1e-5);
  REQUIRE(test::max_rel_error(drstd.host(), rstd) < 1e-5);

  auto z = test::random_normal(size_t(N) * V, rng, 3.0f);
  std::vector<int32_t> tgt(N);
  for (int i = 0; i < N; ++i) tgt[i] = i == 3 ? -100 : int32_t(rng() % V);
  std::vector<float> loss(N);
  cpu.cross_entropy_forward(loss.data(), nullptr, z.data(), tgt.data(), N, V);
  DeviceVec dz(z), dt(tgt), dl(loss);
  cuda::cross_entropy_forward(dl.f(), dz.f(), static_cast<const int32_t*>(dt.p), N, V, nullptr);
  REQUIRE(test::max_rel_error(dl.host(), loss) < 1e-5);
#endif
}

TEST_CASE("cuda INT8 launchers: the fused Lion row step and dequantization match the CPU backend", "[cuda][quant]") {
  if (!gpu_or_skip()) return;
#ifdef QFT_WITH_CUDA
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend cpu;
  const int64_t rows = 33, cols = 700, block = 256;
  auto w = test::random_normal(size_t(rows * cols), rng, 0.02f);
  HybridMatrix hm = quantize_hybrid(cpu, w.data(), rows, cols, 0.01);
  BlockMatrix mm = BlockMatrix::zeros(cpu, rows, cols, block, "momentum");
  const auto m0 = test::random_normal(size_t(rows * cols), rng, 1e-3f), g = test::random_normal(size_t(rows * cols), rng, 1e-3f);
  cpu.quantize_blocks(mm.view(), m0.data(), {5, 0, 1, true}, 0);

  // Device copies of every buffer (host memory is the CPU backend's memory).
  auto up = [](const Buffer& b) { return DeviceVec(std::vector<uint8_t>(static_cast<const uint8_t*>(b.get()), static_cast<const uint8_t*>(b.get()) + b.bytes())); };
  DeviceVec q = up(hm.q), sc = up(hm.scale), rp = up(hm.row_ptr), col = up(hm.col), val = up(hm.val), mq = up(mm.q),
            am = up(mm.absmax), dg(g);
  HybridView dw = hm.view();
  dw.q = static_cast<int8_t*>(q.p);
  dw.scale = sc.f();
  dw.row_ptr = static_cast<const int32_t*>(rp.p);
  dw.col_idx = col.p;
  dw.val = val.f();
  BlockView dm = mm.view();
  dm.q = static_cast<int8_t*>(mq.p);
  dm.absmax = am.f();

  LionRowStep s{};
  s.p = {2e-3f, 0.9f, 0.99f, 0.1f, 1.0f};
  s.cols = cols;
  s.wkey = {9, 3, 10, true};
  s.mkey = {9, 3, 11, true};
  LionRowStep on_cpu = s, on_gpu = s;
  on_cpu.g = g.data();
  on_cpu.w = hm.view();
  on_cpu.m = mm.view();
  on_gpu.g = dg.f();
  on_gpu.w = dw;
  on_gpu.m = dm;
  cpu.lion_step_rows(on_cpu, rows);
  cuda::lion_step_rows(on_gpu, rows, nullptr);

  auto host_bytes = [](const DeviceVec& d) {
    std::vector<int8_t> h(d.bytes);
    cuda::copy_to_host(h.data(), d.p, d.bytes, nullptr);
    return h;
  };
  const auto gq = host_bytes(q), gm = host_bytes(mq);
  const auto* cq = static_cast<const int8_t*>(hm.q.get());
  const auto* cm = static_cast<const int8_t*>(mm.q.get());
  int64_t differ = 0;
  for (int64_t i = 0; i < rows * cols; ++i) {
    REQUIRE(std::abs(int(gq[size_t(i)]) - int(cq[i])) <= 1);  // FMA contraction may move a rounding boundary
    REQUIRE(std::abs(int(gm[size_t(i)]) - int(cm[i])) <= 1);
    differ += (gq[size_t(i)] != cq[i]) + (gm[size_t(i)] != cm[i]);
  }
  REQUIRE(differ <= rows * cols / 500);
  REQUIRE(test::max_rel_error(sc.host(), std::vector<float>(hm.scale.f32(), hm.scale.f32() + rows)) < 1e-6);
  REQUIRE(test::max_rel_error(val.host(), std::vector<float>(hm.val.f32(), hm.val.f32() + hm.nnz)) < 1e-6);

  DeviceVec out(std::vector<float>(size_t(rows * cols)));
  cuda::dequantize_hybrid(out.f(), dw, nullptr);
  std::vector<float> ref(size_t(rows * cols));
  cpu.dequantize_hybrid(ref.data(), hm.view());
  REQUIRE(test::max_rel_error(out.host(), ref) < 2e-2);  // the few rounding differences above, at most a step
#endif
}
