// [cuda] tests: each launcher against the CPU backend running the same shared functor. Without a GPU they
// print "SKIPPED:" and ctest reports them as skipped.
#include <catch2/catch.hpp>
#include <iostream>

#include "cpu/cpu_backend.h"
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
