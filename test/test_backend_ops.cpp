// The op harness (as ggml's test-backend-ops): every op case runs on each available backend and is compared
// with CpuReference, the tier-one composition of the shared functors, on the same inputs. Outputs are filled
// with NaN (INT8: -128, which no INT8 write produces) before the op, so an op that writes nothing fails, and are
// followed by guard elements that must stay untouched. The error metric is the normalised mean squared error
// (NMSE) with a tolerance per case and storage type.
//
// A candidate runs the cases of every op it replaces (Backend::replaces); a candidate that stores activations
// differently or runs on another device runs every case. Without a GPU the CUDA candidates say SKIPPED.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <cstring>
#include <functional>
#include <random>

#include "cpu/cpu_backend.h"
#include "quant/quantized.h"
#include "test/helpers.h"

using namespace qft;

namespace {

constexpr int64_t kGuard = 16;  // elements after each output that no op may touch

// The inputs and outputs of one case on one backend. Inputs come from one seeded generator, so every backend of
// a case sees the same values; activation inputs are bf16-representable, so that fp32 and bf16 storage hold them
// exactly.
class OpBench {
 public:
  OpBench(Backend& be, uint64_t seed) : be_(be), rng_(seed) {}
  Backend& be() { return be_; }
  std::mt19937_64& rng() { return rng_; }

  Act act_in(int64_t n, float stddev = 1.0f) { return upload_act(test::bf16_rounded(test::random_normal(size_t(n), rng_, stddev))); }
  float* f32_in(int64_t n, float stddev = 1.0f) { return upload_f32(test::random_normal(size_t(n), rng_, stddev)); }
  float* positive_in(int64_t n) {  // in [0.5, 1.5)
    std::vector<float> v(static_cast<size_t>(n));
    std::uniform_real_distribution<float> u(0.5f, 1.5f);
    for (float& x : v) x = u(rng_);
    return upload_f32(v);
  }
  const int32_t* ids_in(const std::vector<int32_t>& ids) {
    Buffer& b = keep(be_.alloc(ids.size() * 4, "test"));
    be_.copy_to_device(b.get(), ids.data(), ids.size() * 4);
    return b.i32();
  }
  // Outputs: NaN-filled, then read back by outputs().
  Act act_out(int64_t n) { return add_output(n, be_.act_dtype(), std::numeric_limits<float>::quiet_NaN()); }
  float* f32_out(int64_t n) { return add_output(n, DType::F32, std::numeric_limits<float>::quiet_NaN()).as<float>(); }
  // In-place operands: random values the op updates, read back as outputs.
  Act act_inout(int64_t n, float stddev = 1.0f) {
    const Act a = act_in(n, stddev);
    outputs_.push_back({a.ptr, a.dtype, n});
    return a;
  }
  float* f32_inout(int64_t n, float stddev = 1.0f) {
    float* p = f32_in(n, stddev);
    outputs_.push_back({p, DType::F32, n});
    return p;
  }
  // Output of an INT8 tensor the op fills: prefilled with -128, which round_int8 never returns.
  int8_t* int8_out(int64_t n) {
    Buffer& b = keep(be_.alloc(size_t(n + kGuard), "test"));
    std::vector<int8_t> fill(size_t(n + kGuard), int8_t(-128));
    be_.copy_to_device(b.get(), fill.data(), fill.size());
    outputs_.push_back({b.get(), DType::I8, n});
    return static_cast<int8_t*>(b.get());
  }
  void add_result(std::vector<float> v) { extra_.push_back(std::move(v)); }  // e.g. a reduction's host value

  // Every output as fp32, after checking it was written and its guard was not.
  std::vector<std::vector<float>> outputs() {
    std::vector<std::vector<float>> out;
    for (const Output& o : outputs_) out.push_back(read(o));
    for (auto& v : extra_) out.push_back(v);
    return out;
  }

 private:
  struct Output {
    void* ptr;
    DType dtype;
    int64_t n;
    bool guarded = false;
  };
  Buffer& keep(Buffer b) {
    buffers_.push_back(std::move(b));
    return buffers_.back();
  }
  Act upload_act(const std::vector<float>& v) {
    Buffer& b = keep(be_.alloc_act(int64_t(v.size()), "test"));
    std::vector<uint8_t> bytes(b.bytes());
    convert_from_f32(be_.act_dtype(), v.data(), bytes.data(), v.size());
    be_.copy_to_device(b.get(), bytes.data(), bytes.size());
    return b.act();
  }
  float* upload_f32(const std::vector<float>& v) {
    Buffer& b = keep(be_.alloc(v.size() * 4, "test"));
    be_.copy_to_device(b.get(), v.data(), v.size() * 4);
    return b.f32();
  }
  Act add_output(int64_t n, DType dtype, float fill) {
    Buffer& b = keep(be_.alloc(size_t(n + kGuard) * act_size(dtype), "test"));
    const std::vector<float> values(size_t(n + kGuard), fill);
    std::vector<uint8_t> bytes(b.bytes());
    convert_from_f32(dtype, values.data(), bytes.data(), values.size());
    be_.copy_to_device(b.get(), bytes.data(), bytes.size());
    outputs_.push_back({b.get(), dtype, n, true});
    return {b.get(), dtype};
  }
  std::vector<float> read(const Output& o) {
    const int64_t total = o.n + (o.guarded || o.dtype == DType::I8 ? kGuard : 0);
    std::vector<float> v(static_cast<size_t>(total));
    if (o.dtype == DType::I8) {
      std::vector<int8_t> q(static_cast<size_t>(total));
      be_.copy_to_host(q.data(), o.ptr, q.size());
      for (size_t i = 0; i < q.size(); ++i) v[i] = q[i];
      for (int64_t i = 0; i < o.n; ++i) REQUIRE(q[size_t(i)] != -128);    // written
      for (int64_t i = o.n; i < total; ++i) REQUIRE(q[size_t(i)] == -128);  // guard untouched
    } else {
      v = be_.read_f32(CAct{o.ptr, o.dtype}, total);
      for (int64_t i = o.n; i < total; ++i) REQUIRE(std::isnan(v[size_t(i)]));  // guard untouched
    }
    v.resize(size_t(o.n));
    for (float x : v) REQUIRE(std::isfinite(x));  // written, and no NaN or inf produced
    return v;
  }

  Backend& be_;
  std::mt19937_64 rng_;
  std::vector<Buffer> buffers_;
  std::vector<Output> outputs_;
  std::vector<std::vector<float>> extra_;
};

struct OpCase {
  Op op;
  const char* what;
  double nmse_f32, nmse_bf16;  // tolerances against the fp32 reference, by the candidate's activation storage
  std::function<void(OpBench&)> run;
};

// Token ids with repeats, and one ignored target where asked.
std::vector<int32_t> ids(OpBench& b, int n, int bound) { return test::random_ids(size_t(n), bound, b.rng()); }

// Causal attention over two rows of 9 tokens with GQA (4 heads, 2 KV heads) and packed documents in row 1.
struct AttentionShape {
  static constexpr int B = 2, T = 9, H = 4, KVH = 2, D = 8, N = B * T;
  static std::vector<int32_t> doc_start() {
    std::vector<int32_t> d(N, 0);
    for (int t = 4; t < T; ++t) d[size_t(T + t)] = 4;  // row 1: documents [0, 4) and [4, 9)
    return d;
  }
};

HybridMatrix random_hybrid(OpBench& b, int64_t rows, int64_t cols) {
  const std::vector<float> w = test::random_normal(size_t(rows * cols), b.rng(), 0.05f);
  return quantize_hybrid(b.be(), w.data(), rows, cols, 0.05);
}

const std::vector<OpCase>& op_cases() {
  using S = AttentionShape;
  static const std::vector<OpCase> cases = {
      {Op::convert, "fp32 -> activation storage", 0, 1e-5,
       [](OpBench& b) { b.be().convert(b.act_out(300), b.f32_in(300), 300); }},
      {Op::matmul_forward, "(13, 40) @ (24, 40)^T", 1e-10, 1e-4,
       [](OpBench& b) { b.be().matmul_forward(b.act_out(13 * 24), b.act_in(13 * 40), b.act_in(24 * 40, 0.2f), 13, 40, 24); }},
      {Op::embedding_forward, "13 tokens of a (50, 24) table", 0, 0,
       [](OpBench& b) { b.be().embedding_forward(b.act_out(13 * 24), b.ids_in(ids(b, 13, 50)), b.act_in(50 * 24), 13, 24); }},
      {Op::rmsnorm_forward, "(9, 40)", 1e-10, 1e-4,
       [](OpBench& b) { b.be().rmsnorm_forward(b.act_out(9 * 40), b.f32_out(9), b.act_in(9 * 40), b.positive_in(40), 9, 40, 1e-5f); }},
      {Op::rope, "7 tokens, 3 heads of 8, forward then inverse on another tensor", 1e-10, 1e-4,
       [](OpBench& b) {
         const int32_t* pos = b.ids_in(ids(b, 7, 100));
         const float* inv_freq = b.positive_in(4);
         b.be().rope(b.act_inout(7 * 24), pos, inv_freq, 7, 3, 8, false);
         b.be().rope(b.act_inout(7 * 24), pos, inv_freq, 7, 3, 8, true);
       }},
      {Op::attention_forward, "GQA, packed documents", 1e-10, 1e-3,
       [](OpBench& b) {
         b.be().attention_forward({b.act_out(S::N * S::H * S::D), b.act_out(S::B * S::H * S::T * S::T),
                                   b.act_in(S::N * S::H * S::D), b.act_in(S::N * S::KVH * S::D),
                                   b.act_in(S::N * S::KVH * S::D), b.ids_in(S::doc_start()), S::B, S::T, S::H, S::KVH,
                                   S::D});
       }},
      {Op::attention_decode, "2 new queries after 5 cached positions, GQA", 1e-10, 1e-3,
       [](OpBench& b) {
         const int n = 2, past = 5, max_t = 9;
         Buffer scores = b.be().alloc(size_t(n) * S::H * max_t * 4, "test");  // scratch, not an output
         b.be().attention_decode({b.act_out(n * S::H * S::D), scores.f32(), b.act_in(n * S::H * S::D),
                                  b.act_in(max_t * S::KVH * S::D), b.act_in(max_t * S::KVH * S::D), n, past, max_t, S::H,
                                  S::KVH, S::D});
       }},
      {Op::swiglu_forward, "300 values", 1e-12, 1e-5,
       [](OpBench& b) { b.be().swiglu_forward(b.act_out(300), b.act_in(300), b.act_in(300), 300); }},
      {Op::residual_add, "300 values", 0, 1e-5, [](OpBench& b) { b.be().residual_add(b.act_inout(300), b.act_in(300), 300); }},
      {Op::cross_entropy_forward, "(6, 70), one ignored target", 1e-10, 1e-4,
       [](OpBench& b) {
         std::vector<int32_t> t = ids(b, 6, 70);
         t[2] = kIgnoreIndex;
         b.be().cross_entropy_forward(b.f32_out(6), b.f32_out(6), b.act_in(6 * 70, 2.0f), b.ids_in(t), 6, 70);
       }},
      {Op::matmul_backward_input, "(13, 24) @ (24, 40), accumulating", 1e-10, 1e-4,
       [](OpBench& b) { b.be().matmul_backward_input(b.act_inout(13 * 40), b.act_in(13 * 24), b.act_in(24 * 40), 13, 40, 24, true); }},
      {Op::matmul_backward_weight, "(13, 24)^T @ (13, 40)", 1e-10, 1e-4,
       [](OpBench& b) { b.be().matmul_backward_weight(b.f32_out(24 * 40), b.act_in(13 * 24), b.act_in(13 * 40), 13, 40, 24, false); }},
      {Op::rmsnorm_backward, "(70, 40): dx accumulating, dw over two row blocks", 1e-10, 1e-4,
       [](OpBench& b) {
         Backend& be = b.be();
         const CAct x = b.act_in(70 * 40);
         const float* w = b.positive_in(40);
         Buffer y = be.alloc_act(70 * 40, "test"), rstd = be.alloc(70 * 4, "test");
         be.rmsnorm_forward(y.act(), rstd.f32(), x, w, 70, 40, 1e-5f);
         be.rmsnorm_backward(b.act_inout(70 * 40), b.f32_out(40), b.act_in(70 * 40), x, w, rstd.f32(), 70, 40, true);
       }},
      {Op::attention_backward, "GQA, packed documents, from this backend's forward", 1e-9, 1e-3,
       [](OpBench& b) {
         Backend& be = b.be();
         const CAct q = b.act_in(S::N * S::H * S::D), k = b.act_in(S::N * S::KVH * S::D), v = b.act_in(S::N * S::KVH * S::D);
         Buffer out = be.alloc_act(S::N * S::H * S::D, "test"), probs = be.alloc_act(S::B * S::H * S::T * S::T, "test");
         be.attention_forward({out.act(), probs.act(), q, k, v, b.ids_in(S::doc_start()), S::B, S::T, S::H, S::KVH, S::D});
         Buffer scratch = be.alloc_act(S::KVH * S::T * S::T, "test");
         be.attention_backward({b.act_out(S::N * S::H * S::D), b.act_out(S::N * S::KVH * S::D),
                                b.act_out(S::N * S::KVH * S::D), scratch.act(), b.act_in(S::N * S::H * S::D), probs.act(), q,
                                k, v, S::B, S::T, S::H, S::KVH, S::D});
       }},
      {Op::swiglu_backward, "300 values", 1e-12, 1e-5,
       [](OpBench& b) { b.be().swiglu_backward(b.act_out(300), b.act_out(300), b.act_in(300), b.act_in(300), b.act_in(300), 300); }},
      {Op::cross_entropy_backward, "a (6, 30) tile at vocabulary column 20 of 70", 1e-10, 1e-4,
       [](OpBench& b) {
         Backend& be = b.be();
         std::vector<int32_t> t = ids(b, 6, 70);
         t[4] = kIgnoreIndex;
         const int32_t* targets = b.ids_in(t);
         const CAct logits = b.act_in(6 * 70, 2.0f);
         Buffer loss = be.alloc(6 * 4, "test"), lse = be.alloc(6 * 4, "test");
         be.cross_entropy_forward(loss.f32(), lse.f32(), logits, targets, 6, 70);
         be.cross_entropy_backward(b.act_inout(6 * 30, 2.0f), lse.f32(), targets, 6, 30, 20, 70, 0.125f);
       }},
      {Op::embedding_backward, "30 repeated tokens into vocabulary rows [10, 40) of a 150-wide gradient", 1e-12, 1e-5,
       [](OpBench& b) {
         b.be().embedding_backward(b.f32_inout(30 * 150), b.act_in(30 * 150), b.ids_in(ids(b, 30, 50)), 30, 150, 10, 30);
       }},
      {Op::sum_squares, "5000 values", 1e-12, 1e-12,
       [](OpBench& b) { b.add_result({float(b.be().sum_squares(b.f32_in(5000), 5000))}); }},
      {Op::dequantize_hybrid, "(12, 300) with 5% outliers", 0, 1e-5,
       [](OpBench& b) {
         const HybridMatrix m = random_hybrid(b, 12, 300);
         b.be().dequantize_hybrid(b.act_out(12 * 300), m.view());
       }},
      {Op::dequantize_blocks, "(5, 600) in blocks of 256", 0, 0,
       [](OpBench& b) {
         const BlockMatrix m = BlockMatrix::zeros(b.be(), 5, 600, 256, "test");
         b.be().quantize_blocks(m.view(), b.f32_in(5 * 600), {7, 3, 1, true}, 0);
         b.be().dequantize_blocks(b.f32_out(5 * 600), m.view());
       }},
      {Op::quantize_blocks, "(5, 600) in blocks of 256, stochastic rounding", 0, 0,
       [](OpBench& b) {
         const BlockView v{b.int8_out(5 * 600), b.f32_out(5 * 3), 5, 600, 256};
         b.be().quantize_blocks(v, b.f32_in(5 * 600), {7, 3, 1, true}, 11);
       }},
      {Op::accumulate_blocks, "(5, 600) in blocks of 256", 0, 0,
       [](OpBench& b) {
         const BlockMatrix m = BlockMatrix::zeros(b.be(), 5, 600, 256, "test");
         b.be().quantize_blocks(m.view(), b.f32_in(5 * 600), {7, 3, 2, true}, 0);
         b.be().accumulate_blocks(m.view(), b.f32_in(5 * 600, 0.1f), {7, 4, 2, true}, 0);
         b.be().dequantize_blocks(b.f32_out(5 * 600), m.view());
       }},
      {Op::lion_step_rows, "INT8 hybrid weights and INT8 momentum, (12, 300); then fp32 state", 0, 0,
       [](OpBench& b) {
         Backend& be = b.be();
         const HybridMatrix w = random_hybrid(b, 12, 300);
         const BlockMatrix m = BlockMatrix::zeros(be, 12, 300, 128, "test");
         be.quantize_blocks(m.view(), b.f32_in(12 * 300, 0.01f), {5, 0, 1, true}, 0);
         Buffer rescales = be.alloc(12 * 4, "test");
         be.zero(rescales.get(), rescales.bytes());
         LionRowStep st{};
         st.p = {0.05f, 0.9f, 0.99f, 0.1f, 0.5f};  // a large lr, so that some rows' scales grow
         st.g = b.f32_in(12 * 300, 0.01f);
         st.w = w.view();
         st.m = m.view();
         st.wkey = {5, 9, 0, true};
         st.mkey = {5, 9, 1, true};
         st.cols = 300;
         st.rescales = static_cast<uint32_t*>(rescales.get());
         be.lion_step_rows(st, 12);
         be.dequantize_hybrid(b.f32_out(12 * 300), w.view());
         be.dequantize_blocks(b.f32_out(12 * 300), m.view());
         std::vector<uint32_t> counts(12);
         be.copy_to_host(counts.data(), rescales.get(), 48);
         b.add_result(std::vector<float>(counts.begin(), counts.end()));
         be.lion_step_rows(test::fp32_lion_step(b.f32_inout(4 * 50), b.f32_inout(4 * 50, 0.01f), b.f32_in(4 * 50), 50,
                                                st.p),
                           4);
       }},
  };
  return cases;
}

double nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return err / std::max(norm, 1e-30);
}

// Runs one case on the reference and on a candidate with the same inputs, and compares every output.
void check_case(const OpCase& c, Backend& candidate, uint64_t seed) {
  INFO(op_name(c.op) << " (" << c.what << ") on " << candidate.name() << " with " << dtype_name(candidate.act_dtype())
                     << " activations, seed " << seed);
  CpuReference reference;
  OpBench want(reference, seed), got(candidate, seed);
  c.run(want);
  c.run(got);
  const auto w = want.outputs(), g = got.outputs();
  REQUIRE(w.size() == g.size());
  const double tol = candidate.act_dtype() == DType::BF16 ? c.nmse_bf16 : c.nmse_f32;
  for (size_t i = 0; i < w.size(); ++i) {
    INFO("output " << i << " of " << w.size());
    REQUIRE(g[i].size() == w[i].size());
    CHECK(nmse(g[i], w[i]) <= tol);
  }
}

// Every case the candidate must pass: those of the ops it replaces, or all when it runs the reference's code
// with another storage type or on another device.
int run_harness(Backend& candidate, bool runs_reference_code) {
  const uint64_t seed = test::fresh_seed();
  int ran = 0;
  for (const OpCase& c : op_cases()) {
    if (runs_reference_code && !candidate.replaces(c.op)) continue;
    check_case(c, candidate, seed);
    ran += 1;
  }
  return ran;
}

// A backend with one op replaced by a kernel that writes nothing: the harness must catch it.
class WritesNothing final : public HostBackend<WritesNothing> {
 public:
  WritesNothing() : HostBackend(DType::F32) {}
  void swiglu_forward(Act, CAct, CAct, int64_t) override {}
};

}  // namespace

TEST_CASE("every op of the seam has a harness case", "[ops]") {
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = Op(i);
    INFO(op_name(op));
    CHECK(std::any_of(op_cases().begin(), op_cases().end(), [&](const OpCase& c) { return c.op == op; }));
  }
}

TEST_CASE("replaces() reports exactly the ops a backend overrides", "[ops]") {
  const CpuReference reference;
  const CpuBackend cpu;
  const WritesNothing broken;
  for (int i = 0; i < kOpCount; ++i) {
    const Op op = Op(i);
    INFO(op_name(op));
    CHECK_FALSE(reference.replaces(op));
    CHECK(cpu.replaces(op) == (op == Op::embedding_backward));
    CHECK(broken.replaces(op) == (op == Op::swiglu_forward));
  }
}

TEST_CASE("the CPU backend's replaced ops match the reference", "[ops]") {
  CpuBackend cpu;
  CHECK(run_harness(cpu, true) >= 1);
}

TEST_CASE("every op with bf16 storage on the CPU matches the fp32 reference", "[ops]") {
  CpuBackend cpu(DType::BF16);
  CHECK(run_harness(cpu, false) == int(op_cases().size()));
}

TEST_CASE("a replaced op that writes nothing fails the harness", "[ops][!shouldfail]") {
  WritesNothing broken;
  run_harness(broken, true);
}

TEST_CASE("cuda: every op matches the reference, fp32 and bf16 storage", "[cuda][ops]") {
  for (DType activations : {DType::F32, DType::BF16}) {
    auto gpu = test::gpu_or_skip(activations);
    if (!gpu) return;
    CHECK(run_harness(*gpu, false) == int(op_cases().size()));
  }
}
