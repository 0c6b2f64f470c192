// [cuda] tests: every op of the CUDA backend against the CPU backend running the same functors, the fused INT8
// step bit for bit, and a whole training step. Outputs are checked for NaN/inf and sit between sentinels that
// catch out-of-bounds writes. Without a GPU each test prints "SKIPPED:" and ctest reports it as skipped.
// Run only these: ./build/test/qft_tests "[cuda]"
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <iostream>
#include <type_traits>

#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_info.h"
#include "quant/quantized.h"
#include "test/helpers.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"

using namespace qft;

namespace {

constexpr size_t kGuard = 64;                 // sentinel elements on each side
constexpr uint32_t kSentinel = 0x7fc0dead;    // a NaN payload no kernel writes

// A device array of T between two sentinel regions.
template <class T>
struct Guarded {
  Backend& be;
  size_t n;
  Buffer buf;
  Guarded(Backend& b, const std::vector<T>& host)
      : be(b), n(host.size()), buf(b.alloc((n * sizeof(T) + 3) / 4 * 4 + 8 * kGuard)) {
    std::vector<uint8_t> bytes(buf.bytes());
    for (size_t i = 0; i + 4 <= bytes.size(); i += 4) std::memcpy(&bytes[i], &kSentinel, 4);
    std::memcpy(&bytes[kGuard * 4], host.data(), n * sizeof(T));
    be.copy_to_device(buf.get(), bytes.data(), bytes.size());
  }
  T* ptr() const { return reinterpret_cast<T*>(static_cast<uint8_t*>(buf.get()) + kGuard * 4); }
  std::vector<T> host() const {
    std::vector<uint8_t> bytes(buf.bytes());
    be.copy_to_host(bytes.data(), buf.get(), bytes.size());
    for (size_t i = 0; i < kGuard; ++i) {
      uint32_t lo, hi;
      std::memcpy(&lo, &bytes[i * 4], 4);
      std::memcpy(&hi, &bytes[bytes.size() - 4 - i * 4], 4);
      REQUIRE(lo == kSentinel);  // an op wrote outside its buffer
      REQUIRE(hi == kSentinel);
    }
    std::vector<T> out(n);
    std::memcpy(out.data(), &bytes[kGuard * 4], n * sizeof(T));
    return out;
  }
};

void require_finite(const std::vector<float>& v) {
  for (float x : v) REQUIRE(std::isfinite(x));
}

// GPU result vs CPU result: finite, and within `tol` in max-norm relative error.
void require_close(const std::vector<float>& got, const std::vector<float>& cpu, double tol) {
  require_finite(got);
  INFO("max-norm relative error bound " << tol);
  REQUIRE(test::max_rel_error(got, cpu) <= tol);
}
void require_close(const Guarded<float>& gpu, const std::vector<float>& cpu, double tol) {
  require_close(gpu.host(), cpu, tol);
}
void require_close(const Guarded<bf16>& gpu, const std::vector<bf16>& cpu, double tol) {
  require_close(test::widen(gpu.host()), test::widen(cpu), tol);
}

// Host values in storage type S.
template <class S>
std::vector<S> stored(const std::vector<float>& v) {
  if constexpr (std::is_same_v<S, bf16>) {
    return test::to_bf16(v);
  } else {
    return v;
  }
}

// The three GEMMs of a linear layer on both backends with storage S; the weight gradient is fp32 either way.
// tol bounds the S outputs, tol_dw the weight gradient.
template <class S>
void compare_gemms(Backend& gpu, Backend& cpu, double tol, double tol_dw, std::mt19937_64& rng) {
  const int N = 77, I = 130, O = 301;  // odd shapes: unaligned rows
  const auto x = stored<S>(test::random_normal(size_t(N) * I, rng));
  const auto w = stored<S>(test::random_normal(size_t(O) * I, rng, 0.1f));
  const auto dy = stored<S>(test::random_normal(size_t(N) * O, rng));
  const auto acc = stored<S>(test::random_normal(size_t(N) * I, rng));
  std::vector<S> y(size_t(N) * O), dx = acc;
  std::vector<float> dw(size_t(O) * I);
  cpu.matmul_forward(y.data(), x.data(), w.data(), N, I, O);
  cpu.matmul_backward_input(dx.data(), dy.data(), w.data(), N, I, O, true);
  cpu.matmul_backward_weight(dw.data(), dy.data(), x.data(), N, I, O, false);
  Guarded<S> gx(gpu, x), gw(gpu, w), gdy(gpu, dy), gy(gpu, std::vector<S>(y.size())), gdx(gpu, acc);
  Guarded<float> gdw(gpu, std::vector<float>(dw.size()));
  gpu.matmul_forward(gy.ptr(), gx.ptr(), gw.ptr(), N, I, O);
  gpu.matmul_backward_input(gdx.ptr(), gdy.ptr(), gw.ptr(), N, I, O, true);
  gpu.matmul_backward_weight(gdw.ptr(), gdy.ptr(), gx.ptr(), N, I, O, false);
  require_close(gy, y, tol);
  require_close(gdx, dx, tol);
  require_close(gdw, dw, tol_dw);
}

// Attention forward and backward on both backends with storage S, row 1 packing two documents.
template <class S>
void compare_attention(Backend& gpu, Backend& cpu, double tol, std::mt19937_64& rng) {
  const int B = 2, T = 45, H = 8, KVH = 2, D = 32;
  const size_t nq = size_t(B) * T * H * D, nkv = size_t(B) * T * KVH * D;
  const auto q = stored<S>(test::random_normal(nq, rng)), k = stored<S>(test::random_normal(nkv, rng));
  const auto v = stored<S>(test::random_normal(nkv, rng)), dout = stored<S>(test::random_normal(nq, rng));
  std::vector<int32_t> doc(size_t(B) * T);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) doc[size_t(b) * T + t] = b == 1 && t >= 20 ? 20 : 0;
  std::vector<S> out(nq), probs(size_t(B) * H * T * T), scratch(size_t(KVH) * T * T), dq(nq), dk(nkv), dv(nkv);
  cpu.attention_forward({out.data(), probs.data(), q.data(), k.data(), v.data(), doc.data(), B, T, H, KVH, D});
  cpu.attention_backward({dq.data(), dk.data(), dv.data(), scratch.data(), dout.data(), probs.data(), q.data(), k.data(),
                          v.data(), B, T, H, KVH, D});
  Guarded<S> gq(gpu, q), gk(gpu, k), gv(gpu, v), gdo(gpu, dout), gout(gpu, out), gp(gpu, probs), gs(gpu, scratch),
      gdq(gpu, dq), gdk(gpu, dk), gdv(gpu, dv);
  Guarded<int32_t> gdoc(gpu, doc);
  gpu.attention_forward({gout.ptr(), gp.ptr(), gq.ptr(), gk.ptr(), gv.ptr(), gdoc.ptr(), B, T, H, KVH, D});
  gpu.attention_backward({gdq.ptr(), gdk.ptr(), gdv.ptr(), gs.ptr(), gdo.ptr(), gp.ptr(), gq.ptr(), gk.ptr(), gv.ptr(),
                          B, T, H, KVH, D});
  require_close(gout, out, tol);
  require_close(gp, probs, tol);
  require_close(gdq, dq, tol);
  require_close(gdk, dk, tol);
  require_close(gdv, dv, tol);
}

// Runs check(S{}, gpu, cpu, rng) with fp32 storage on both backends, then with bf16 on both.
template <class Check>
void for_both_storages(Check&& check) {
  for (DType act : {DType::F32, DType::BF16}) {
    auto gpu = test::gpu_or_skip(act);
    if (!gpu) return;
    std::mt19937_64 rng(test::fresh_seed());
    CpuBackend cpu(act);
    INFO(dtype_name(act) << " storage");
    if (act == DType::F32) {
      check(float{}, *gpu, cpu, rng);
    } else {
      check(bf16{}, *gpu, cpu, rng);
    }
  }
}

}  // namespace

TEST_CASE("cuda GEMMs match the CPU: fp32 exactly computed, bf16 storage within one bf16 rounding", "[cuda]") {
  for_both_storages([](auto s, Backend& gpu, Backend& cpu, std::mt19937_64& rng) {
    using S = decltype(s);
    // Products of bf16 values are exact in fp32; the sums differ only in order, then round once to bf16.
    if constexpr (std::is_same_v<S, float>) {
      compare_gemms<S>(gpu, cpu, 1e-5, 1e-5, rng);
    } else {
      compare_gemms<S>(gpu, cpu, 8e-3, 1e-4, rng);
    }
  });
}

TEST_CASE("cuda ops on bf16 storage match the CPU's bf16 path", "[cuda]") {
  auto gpu = test::gpu_or_skip(DType::BF16);
  if (!gpu) return;
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend cpu(DType::BF16);
  const int N = 37, C = 1000, V = 3001;
  const auto x = test::to_bf16(test::random_normal(size_t(N) * C, rng, 2.0f)), dy = test::to_bf16(test::random_normal(size_t(N) * C, rng));
  const auto w = test::random_normal(C, rng);
  const auto g = test::to_bf16(test::random_normal(size_t(N) * C, rng, 3.0f));
  Guarded<bf16> gx(*gpu, x), gdy(*gpu, dy), gg(*gpu, g);
  Guarded<float> gw(*gpu, w);
  // rmsnorm: block reductions sum in another order than the CPU, so outputs may part by one bf16 rounding.
  std::vector<bf16> y(x.size()), dx(x.size()), sw(x.size()), dg(x.size()), du(x.size());
  std::vector<float> rstd(N), dw(C);
  cpu.rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
  cpu.rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C, false);
  cpu.swiglu_forward(sw.data(), g.data(), x.data(), int64_t(x.size()));
  cpu.swiglu_backward(dg.data(), du.data(), dy.data(), g.data(), x.data(), int64_t(x.size()));
  Guarded<bf16> gy(*gpu, y), gdx(*gpu, y), gsw(*gpu, y), gdg(*gpu, y), gdu(*gpu, y);
  Guarded<float> gr(*gpu, rstd), gdw(*gpu, dw);
  gpu->rmsnorm_forward(gy.ptr(), gr.ptr(), gx.ptr(), gw.ptr(), N, C, 1e-6f);
  gpu->rmsnorm_backward(gdx.ptr(), gdw.ptr(), gdy.ptr(), gx.ptr(), gw.ptr(), gr.ptr(), N, C, false);
  gpu->swiglu_forward(gsw.ptr(), gg.ptr(), gx.ptr(), int64_t(x.size()));
  gpu->swiglu_backward(gdg.ptr(), gdu.ptr(), gdy.ptr(), gg.ptr(), gx.ptr(), int64_t(x.size()));
  require_close(gy, y, 8e-3);
  require_close(gr, rstd, 1e-5);
  require_close(gdx, dx, 8e-3);
  require_close(gdw, dw, 1e-4);
  require_close(gsw, sw, 8e-3);  // device expf vs host exp: at most one bf16 rounding apart
  require_close(gdg, dg, 8e-3);
  require_close(gdu, du, 8e-3);

  const auto z = test::to_bf16(test::random_normal(size_t(N) * V, rng, 3.0f));
  auto tgt = test::random_ids(N, V, rng);
  tgt[5] = kIgnoreIndex;
  std::vector<float> loss(N), lse(N);
  std::vector<bf16> grad = z;
  cpu.cross_entropy_forward(loss.data(), lse.data(), z.data(), tgt.data(), N, V);
  cpu.cross_entropy_backward(grad.data(), lse.data(), tgt.data(), N, V, 0, V, 0.125f);
  Guarded<bf16> gz(*gpu, z);
  Guarded<float> gl(*gpu, loss), gls(*gpu, lse);
  Guarded<int32_t> gt(*gpu, tgt);
  gpu->cross_entropy_forward(gl.ptr(), gls.ptr(), gz.ptr(), gt.ptr(), N, V);
  gpu->cross_entropy_backward(gz.ptr(), gls.ptr(), gt.ptr(), N, V, 0, V, 0.125f);
  require_close(gl, loss, 1e-5);
  require_close(gls, lse, 1e-5);
  require_close(gz, grad, 8e-3);
}

TEST_CASE("cuda elementwise and row ops match the CPU backend", "[cuda]") {
  auto gpu = test::gpu_or_skip();
  if (!gpu) return;
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend cpu;
  const int N = 37, C = 1000, V = 3001, H = 4, D = 64;
  const auto x = test::random_normal(size_t(N) * C, rng, 2.0f), w = test::random_normal(C, rng);
  const auto dy = test::random_normal(size_t(N) * C, rng);
  const auto tokens = test::random_ids(N, V, rng), pos = test::random_ids(N, 4096, rng);
  Guarded<float> gx(*gpu, x), gw(*gpu, w), gdy(*gpu, dy);
  Guarded<int32_t> gtok(*gpu, tokens), gpos(*gpu, pos);

  SECTION("rmsnorm forward and backward") {
    std::vector<float> y(x.size()), rstd(N), dx(x.size()), dw(C);
    cpu.rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f);
    cpu.rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C, false);
    Guarded<float> gy(*gpu, std::vector<float>(y.size())), gr(*gpu, std::vector<float>(N)),
        gdx(*gpu, std::vector<float>(dx.size())), gdw(*gpu, std::vector<float>(C));
    gpu->rmsnorm_forward(gy.ptr(), gr.ptr(), gx.ptr(), gw.ptr(), N, C, 1e-6f);
    gpu->rmsnorm_backward(gdx.ptr(), gdw.ptr(), gdy.ptr(), gx.ptr(), gw.ptr(), gr.ptr(), N, C, false);
    require_close(gy, y, 1e-5);
    require_close(gr, rstd, 1e-5);
    require_close(gdx, dx, 1e-5);
    require_close(gdw, dw, 1e-5);
  }
  SECTION("rope forward and its inverse") {
    auto q = test::random_normal(size_t(N) * H * D, rng);
    std::vector<float> inv(D / 2);
    for (int i = 0; i < D / 2; ++i) inv[size_t(i)] = std::pow(10000.0f, -2.0f * float(i) / float(D));
    Guarded<float> gq(*gpu, q), ginv(*gpu, inv);
    cpu.rope(q.data(), pos.data(), inv.data(), N, H, D, false);
    gpu->rope(gq.ptr(), gpos.ptr(), ginv.ptr(), N, H, D, false);
    require_close(gq, q, 1e-5);
    cpu.rope(q.data(), pos.data(), inv.data(), N, H, D, true);
    gpu->rope(gq.ptr(), gpos.ptr(), ginv.ptr(), N, H, D, true);
    require_close(gq, q, 1e-5);
  }
  SECTION("swiglu, residual add, embedding forward and backward") {
    const auto g = test::random_normal(x.size(), rng, 3.0f);
    std::vector<float> out(x.size()), dg(x.size()), du(x.size()), r = x;
    cpu.swiglu_forward(out.data(), g.data(), x.data(), int64_t(x.size()));
    cpu.swiglu_backward(dg.data(), du.data(), dy.data(), g.data(), x.data(), int64_t(x.size()));
    cpu.residual_add(r.data(), dy.data(), int64_t(x.size()));
    Guarded<float> gg(*gpu, g), gout(*gpu, out), gdg(*gpu, dg), gdu(*gpu, du), gr(*gpu, x);
    gpu->swiglu_forward(gout.ptr(), gg.ptr(), gx.ptr(), int64_t(x.size()));
    gpu->swiglu_backward(gdg.ptr(), gdu.ptr(), gdy.ptr(), gg.ptr(), gx.ptr(), int64_t(x.size()));
    gpu->residual_add(gr.ptr(), gdy.ptr(), int64_t(x.size()));
    require_close(gout, out, 1e-6);
    require_close(gdg, dg, 1e-6);
    require_close(gdu, du, 1e-6);
    require_close(gr, r, 0);

    const int rows = 700, v0 = 300;  // a vocabulary chunk [300, 1000) of a (V, C) table
    const auto table = test::random_normal(size_t(V) * C, rng);
    std::vector<float> emb(x.size()), dtab(size_t(rows) * C, 0.5f);
    cpu.embedding_forward(emb.data(), tokens.data(), table.data(), N, C);
    cpu.embedding_backward(dtab.data(), dy.data(), tokens.data(), N, C, v0, rows);
    Guarded<float> gt(*gpu, table), gemb(*gpu, emb), gdt(*gpu, std::vector<float>(dtab.size(), 0.5f));
    gpu->embedding_forward(gemb.ptr(), gtok.ptr(), gt.ptr(), N, C);
    gpu->embedding_backward(gdt.ptr(), gdy.ptr(), gtok.ptr(), N, C, v0, rows);
    require_close(gemb, emb, 0);
    require_close(gdt, dtab, 1e-6);
  }
  SECTION("cross-entropy forward and backward, with an ignored target") {
    const auto z = test::random_normal(size_t(N) * V, rng, 3.0f);
    auto tgt = test::random_ids(N, V, rng);
    tgt[3] = -100;
    std::vector<float> loss(N), lse(N), grad = z;
    cpu.cross_entropy_forward(loss.data(), lse.data(), z.data(), tgt.data(), N, V);
    cpu.cross_entropy_backward(grad.data(), lse.data(), tgt.data(), N, V, 0, V, 0.125f);
    Guarded<float> gz(*gpu, z), gl(*gpu, loss), gls(*gpu, lse);
    Guarded<int32_t> gt(*gpu, tgt);
    gpu->cross_entropy_forward(gl.ptr(), gls.ptr(), gz.ptr(), gt.ptr(), N, V);
    gpu->cross_entropy_backward(gz.ptr(), gls.ptr(), gt.ptr(), N, V, 0, V, 0.125f);
    require_close(gl, loss, 1e-5);
    require_close(gls, lse, 1e-5);
    require_close(gz, grad, 1e-5);
  }
  SECTION("lion step and squared norm") {
    auto th = test::random_normal(x.size(), rng), m = test::random_normal(x.size(), rng, 0.1f);
    Guarded<float> gth(*gpu, th), gm(*gpu, m);
    const LionParams lp{1e-3f, 0.9f, 0.99f, 0.1f, 0.5f};
    cpu.lion_step_rows(test::fp32_lion_step(th.data(), m.data(), dy.data(), int64_t(x.size()), lp), 1);
    gpu->lion_step_rows(test::fp32_lion_step(gth.ptr(), gm.ptr(), gdy.ptr(), int64_t(x.size()), lp), 1);
    require_close(gth, th, 1e-6);
    require_close(gm, m, 1e-6);
    REQUIRE(gpu->sum_squares(gdy.ptr(), int64_t(x.size())) ==
            Approx(cpu.sum_squares(dy.data(), int64_t(x.size()))).epsilon(1e-6));
  }
}

TEST_CASE("cuda attention with GQA and packed documents matches the CPU, forward and backward", "[cuda]") {
  for_both_storages([](auto s, Backend& gpu, Backend& cpu, std::mt19937_64& rng) {
    using S = decltype(s);
    // A bf16 rounding of a score can move a probability by more than one rounding: looser than other ops.
    compare_attention<S>(gpu, cpu, std::is_same_v<S, float> ? 1e-5 : 3e-2, rng);
  });
}

TEST_CASE("cuda INT8 state: quantize, accumulate, dequantize and the fused Lion step are bit-identical to the CPU",
          "[cuda][quant]") {
  auto gpu = test::gpu_or_skip();
  if (!gpu) return;
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend cpu;
  const int64_t rows = 33, cols = 700, block = 256;  // a partial last block in every row
  const auto w = test::random_normal(size_t(rows * cols), rng, 0.02f);
  const auto m0 = test::random_normal(size_t(rows * cols), rng, 1e-3f), g = test::random_normal(size_t(rows * cols), rng, 1e-3f);
  // The same state on both backends, built by each backend's own ops from the same host values.
  auto build = [&](Backend& be, HybridMatrix& hm, BlockMatrix& mm, Buffer& gbuf, Buffer& counts) {
    hm = quantize_hybrid(be, w.data(), rows, cols, 0.01);
    mm = BlockMatrix::zeros(be, rows, cols, block, "momentum");
    Buffer tmp = be.alloc(m0.size() * 4);
    be.copy_to_device(tmp.get(), m0.data(), m0.size() * 4);
    be.quantize_blocks(mm.view(), tmp.f32(), {5, 0, 1, true}, 0);
    be.accumulate_blocks(mm.view(), tmp.f32(), {5, 1, 1, true}, 0);
    gbuf = be.alloc(g.size() * 4);
    be.copy_to_device(gbuf.get(), g.data(), g.size() * 4);
    counts = be.alloc(size_t(rows) * 4);
    be.zero(counts.get(), counts.bytes());
    LionRowStep s{};
    s.p = {2e-3f, 0.9f, 0.99f, 0.1f, 1.0f};
    s.cols = cols;
    s.wkey = {9, 3, 10, true};
    s.mkey = {9, 3, 11, true};
    s.g = gbuf.f32();
    s.w = hm.view();
    s.m = mm.view();
    s.rescales = static_cast<uint32_t*>(counts.get());
    be.lion_step_rows(s, rows);
  };
  HybridMatrix ch, gh;
  BlockMatrix cm, gm;
  Buffer cg, gg, cc, gc;
  build(cpu, ch, cm, cg, cc);
  build(*gpu, gh, gm, gg, gc);
  auto bytes = [](Backend& be, const Buffer& b) {
    std::vector<uint8_t> h(b.bytes());
    be.copy_to_host(h.data(), b.get(), h.size());
    return h;
  };
  REQUIRE(bytes(*gpu, gh.q) == bytes(cpu, ch.q));
  REQUIRE(bytes(*gpu, gh.scale) == bytes(cpu, ch.scale));
  REQUIRE(bytes(*gpu, gh.val) == bytes(cpu, ch.val));
  REQUIRE(bytes(*gpu, gm.q) == bytes(cpu, cm.q));
  REQUIRE(bytes(*gpu, gm.absmax) == bytes(cpu, cm.absmax));
  REQUIRE(bytes(*gpu, gc) == bytes(cpu, cc));

  Guarded<float> out(*gpu, std::vector<float>(size_t(rows * cols))), mout(*gpu, std::vector<float>(size_t(rows * cols)));
  std::vector<float> ref(size_t(rows * cols)), mref(size_t(rows * cols));
  cpu.dequantize_hybrid(ref.data(), ch.view());
  cpu.dequantize_blocks(mref.data(), cm.view());
  gpu->dequantize_hybrid(out.ptr(), gh.view());
  gpu->dequantize_blocks(mout.ptr(), gm.view());
  require_close(out, ref, 0);
  require_close(mout, mref, 0);
}

TEST_CASE("a whole INT8 training step on the GPU matches the CPU backend with the same storage", "[cuda][train]") {
  for (bool bf16 : {false, true}) {
    auto gpu = test::gpu_or_skip(bf16 ? DType::BF16 : DType::F32);
    if (!gpu) return;
    const HfModel hf(test::fixture("gqa_tied"));
    const SafeTensorsFile golden(test::fixture("gqa_tied/golden.safetensors"));
    const Batch batch = test::golden_batch(golden);
    CpuBackend cpu(bf16 ? DType::BF16 : DType::F32);
    const WeightStorage storage{true, 0.01};
    LlamaModel on_cpu(hf, cpu, storage), on_gpu(hf, *gpu, storage);
    OptimizerSettings os;
    os.momentum_int8 = true;
    os.seed = 3;
    LionOptimizer opt_cpu(on_cpu, os), opt_gpu(on_gpu, os);
    const StepResult rc = train_step(on_cpu, opt_cpu, nullptr, {batch}, 1e-3f, 1.0);
    const StepResult rg = train_step(on_gpu, opt_gpu, nullptr, {batch}, 1e-3f, 1.0);
    INFO((bf16 ? "bf16" : "fp32") << " activations: loss cpu " << rc.loss << " gpu " << rg.loss);
    REQUIRE(rg.loss == Approx(rc.loss).epsilon(bf16 ? 1e-2 : 1e-5));
    REQUIRE(*rg.grad_norm == Approx(*rc.grad_norm).epsilon(bf16 ? 5e-2 : 1e-4));
    // Lion moves each weight by lr * sign(.): where the two backends' gradients differ in sign, the weights
    // differ by 2 lr, plus one quantization step (the row's scale) where stochastic rounding then parts.
    int64_t moved_apart = 0, total = 0;
    for (int i = 0; i < int(on_cpu.params().size()); ++i) {
      const Param& p = on_cpu.params()[size_t(i)];
      const auto a = on_cpu.read_weight(i), b = on_gpu.read_weight(i);
      require_finite(b);
      std::vector<float> gpu_scale(p.quantized() ? size_t(p.rows) : 0);
      if (p.quantized()) gpu->copy_to_host(gpu_scale.data(), on_gpu.params()[size_t(i)].int8.scale.get(), gpu_scale.size() * 4);
      for (size_t j = 0; j < a.size(); ++j) {
        const size_t r = j / size_t(p.cols);
        const double step = p.quantized() ? 1.01 * std::max(p.int8.scale.f32()[r], gpu_scale[r]) : 0.0;
        REQUIRE(std::fabs(a[j] - b[j]) <= 2 * 1e-3 * 1.001 + step);
        moved_apart += a[j] != b[j];
      }
      total += int64_t(a.size());
    }
    INFO(moved_apart << " of " << total << " weights differ");
    REQUIRE(moved_apart <= total / (bf16 ? 20 : 200));
  }
}
