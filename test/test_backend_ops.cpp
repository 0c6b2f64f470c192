// The op harness (as ggml's test-backend-ops): every op case runs on each candidate backend and is compared with
// CpuReference, the tier-one composition of the shared functors, storing activations as the candidate does, on
// the same inputs. Outputs the op must fill hold a sentinel first (NaN; INT8: -128, which no INT8 write
// produces), so an op that writes nothing fails, and are followed by guard elements that must stay untouched.
// Every output must be finite and within the case's bound on the max-norm relative error.
//
// A candidate on the reference's device runs the cases of the ops it replaces (Backend::replaces); one on another
// device runs every case. Without a GPU the CUDA candidates say SKIPPED. That bf16 storage itself is right (each
// op's bf16 result is its fp32 result rounded once) is test_bf16.cpp's concern.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <memory>
#include <cstring>
#include <functional>
#include <random>

#include "cpu/cpu_backend.h"
#include "quant/quantized.h"
#include "test/helpers.h"
#include "test/lane_backend.h"

using namespace qft;

namespace {

constexpr int64_t kGuard = 16;  // elements after each output that no op may touch

// One output of a case, as fp32, with the type it was stored in.
struct Result {
  std::vector<float> values;
  DType stored_as;
};

// The inputs and outputs of one case on one backend. Inputs come from one seeded generator, so every backend of
// a case sees the same values; activation inputs are bf16-representable, so that fp32 and bf16 storage hold them
// exactly.
class OpBench {
 public:
  OpBench(Backend& be, uint64_t seed) : be_(be), rng_(seed) {}
  Backend& be() { return be_; }
  std::mt19937_64& rng() { return rng_; }

  // ---- inputs ----
  Act act_in(int64_t n, float stddev = 1.0f) {
    return upload_act(test::bf16_rounded(test::random_normal(size_t(n), rng_, stddev)));
  }
  float* f32_in(int64_t n, float stddev = 1.0f) { return upload(test::random_normal(size_t(n), rng_, stddev)); }
  float* upload(const std::vector<float>& v) {
    Buffer& b = keep(be_.alloc(v.size() * 4, "test"));
    be_.copy_to_device(b.get(), v.data(), v.size() * 4);
    return b.f32();
  }
  const int32_t* ids_in(const std::vector<int32_t>& ids) {
    Buffer& b = keep(be_.alloc(ids.size() * 4, "test"));
    be_.copy_to_device(b.get(), ids.data(), ids.size() * 4);
    return b.i32();
  }

  // ---- outputs the op must fill: a sentinel in every element and kGuard more that must stay ----
  Act act_out(int64_t n) { return sentinel_output(n, be_.act_dtype()); }
  float* f32_out(int64_t n) { return sentinel_output(n, DType::F32).as<float>(); }
  int8_t* int8_out(int64_t n) { return sentinel_output(n, DType::I8).as<int8_t>(); }
  uint32_t* u32_out(int64_t n) {  // counters the op increments: start at 0
    Buffer& b = keep(be_.alloc(size_t(n) * 4, "test"));
    be_.zero(b.get(), b.bytes());
    return static_cast<uint32_t*>(observe({b.get(), DType::U32}, n).ptr);
  }

  // ---- in-place operands and state the op updates: random values, read back ----
  Act act_inout(int64_t n, float stddev = 1.0f) { return observe(act_in(n, stddev), n); }
  float* f32_inout(int64_t n, float stddev = 1.0f) { return observe(f32_in(n, stddev), n); }
  Act observe(Act a, int64_t n) {
    outputs_.push_back({a.ptr, a.dtype, n, false});
    return a;
  }
  float* observe(float* p, int64_t n) { return observe(Act{p, DType::F32}, n).as<float>(); }
  int8_t* observe(int8_t* p, int64_t n) { return observe(Act{p, DType::I8}, n).as<int8_t>(); }
  void add_result(std::vector<float> v) { extra_.push_back({std::move(v), DType::F32}); }  // a value on the host
  // One plain value (a double total, a struct of them) in backend memory, and back.
  template <class T>
  T* upload_value(const T& v) {
    Buffer& b = keep(be_.alloc(sizeof(T), "test"));
    be_.copy_to_device(b.get(), &v, sizeof(T));
    return static_cast<T*>(b.get());
  }
  template <class T>
  T read_value(const T* p) {
    T v;
    be_.copy_to_host(&v, p, sizeof(T));
    return v;
  }
  // Keeps state whose buffers are observed alive until the outputs are read.
  template <class T>
  T& hold(T value) {
    auto p = std::make_shared<T>(std::move(value));
    held_.push_back(p);
    return *p;
  }

  // Every output as fp32, after checking that it was written, that its guard was not, and that it is finite.
  std::vector<Result> outputs() {
    std::vector<Result> out;
    for (const Output& o : outputs_) out.push_back({read(o), o.dtype});
    out.insert(out.end(), extra_.begin(), extra_.end());
    return out;
  }

 private:
  struct Output {
    void* ptr;
    DType dtype;
    int64_t n;
    bool sentinel;  // prefilled: every element must change and the guard must not
  };
  static constexpr int8_t kInt8Sentinel = -128;  // round_int8 never returns it

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
  Act sentinel_output(int64_t n, DType dtype) {
    const size_t total = size_t(n + kGuard);
    Buffer& b = keep(be_.alloc(total * dtype_size(dtype), "test"));
    std::vector<uint8_t> bytes(b.bytes());
    if (dtype == DType::I8) {
      std::memset(bytes.data(), uint8_t(kInt8Sentinel), bytes.size());
    } else {
      const std::vector<float> nan(total, std::numeric_limits<float>::quiet_NaN());
      convert_from_f32(dtype, nan.data(), bytes.data(), total);
    }
    be_.copy_to_device(b.get(), bytes.data(), bytes.size());
    outputs_.push_back({b.get(), dtype, n, true});
    return {b.get(), dtype};
  }
  std::vector<float> read(const Output& o) {
    const int64_t total = o.n + (o.sentinel ? kGuard : 0);
    std::vector<float> v(static_cast<size_t>(total));
    if (o.dtype == DType::I8 || o.dtype == DType::U32) {
      std::vector<uint8_t> raw(size_t(total) * dtype_size(o.dtype));
      be_.copy_to_host(raw.data(), o.ptr, raw.size());
      for (size_t i = 0; i < v.size(); ++i) {
        if (o.dtype == DType::I8) {
          v[i] = float(int8_t(raw[i]));
        } else {
          uint32_t u;
          std::memcpy(&u, &raw[i * 4], 4);
          v[i] = float(u);
        }
      }
    } else {
      v = be_.read_f32(CAct{o.ptr, o.dtype}, total);
    }
    if (o.sentinel) {
      auto untouched = [&](float x) { return o.dtype == DType::I8 ? x == float(kInt8Sentinel) : std::isnan(x); };
      for (int64_t i = 0; i < o.n; ++i) REQUIRE_FALSE(untouched(v[size_t(i)]));  // written
      for (int64_t i = o.n; i < total; ++i) REQUIRE(untouched(v[size_t(i)]));    // the guard untouched
    }
    v.resize(size_t(o.n));
    for (float x : v) REQUIRE(std::isfinite(x));
    return v;
  }

  Backend& be_;
  std::mt19937_64 rng_;
  std::vector<Buffer> buffers_;
  std::vector<Output> outputs_;
  std::vector<Result> extra_;
  std::vector<std::shared_ptr<void>> held_;
};

// Bounds on the max-norm relative error (test::max_rel_error) against the reference with the same storage.
struct Tolerance {
  double fp32 = 0;       // fp32 candidates, every output
  double bf16 = 0;       // bf16 candidates, outputs stored in bf16: one or two roundings where sums reorder
  double bf16_wide = 0;  // bf16 candidates, outputs stored in fp32 (or INT8) from the same bf16 inputs
};

struct OpCase {
  Op op;
  const char* what;
  Tolerance tol;
  std::function<void(OpBench&)> run;
};

std::vector<int32_t> ids(OpBench& b, int n, int bound) { return test::random_ids(size_t(n), bound, b.rng()); }

// Two rows of 45 tokens, 8 heads sharing 2 KV heads (GQA), row 1 packing documents [0, 20) and [20, 45).
struct AttentionShape {
  static constexpr int B = 2, T = 45, H = 8, KVH = 2, D = 32, N = B * T;
  static std::vector<int32_t> doc_start() {
    std::vector<int32_t> d(N, 0);
    for (int t = 20; t < T; ++t) d[size_t(T + t)] = 20;
    return d;
  }
  static DocumentSpans spans(OpBench& b) { return {b.ids_in({0, T, T + 20, N}), 3, T}; }  // the same documents
  // lse in the backend's own layout: scratch the backward reads, compared through the backward's outputs.
  static float* lse(OpBench& b, const DocumentSpans& docs) {
    Buffer& buf = b.hold(b.be().alloc(size_t(b.be().attention_stats_elems(B, T, H, docs)) * 4, "test"));
    return buf.f32();
  }
};

HybridMatrix random_hybrid(OpBench& b, int64_t rows, int64_t cols) {
  const std::vector<float> w = test::random_normal(size_t(rows * cols), b.rng(), 0.02f);
  return quantize_hybrid(b.be(), w.data(), rows, cols, 0.01);
}

// A GSE operand (rows, cols) in groups of 32, 8 bits, quantized on the backend from random values.
GseView gse_operand(OpBench& b, int64_t rows, int64_t cols, uint32_t stream) {
  Buffer& m = b.hold(b.be().alloc(size_t(rows * cols), "test"));
  Buffer& e = b.hold(b.be().alloc(size_t(rows * ((cols + 31) / 32)), "test"));
  const GseView v{static_cast<int8_t*>(m.get()), static_cast<int8_t*>(e.get()), rows, cols, {32, 8}};
  b.be().gse_quantize(v, b.act_in(rows * cols, 2.0f), {13, 0, stream, true}, 0);
  return v;
}

// Shapes follow what the GPU launchers must get right: rows longer than a thread block (C = 1000 > 256 lanes),
// odd GEMM shapes (unaligned rows), a partial last quantization block in every row, a vocabulary chunk.
constexpr int kRows = 37, kC = 1000, kV = 3001;
constexpr int kGemmN = 77, kGemmI = 130, kGemmO = 301;
constexpr int64_t kQRows = 33, kQCols = 700, kQBlock = 256;

const std::vector<OpCase>& op_cases() {
  using S = AttentionShape;
  static const std::vector<OpCase> cases = {
      {Op::convert, "fp32 -> activation storage", {0, 0, 0},
       [](OpBench& b) { b.be().convert(b.act_out(kRows * kC), b.f32_in(kRows * kC), kRows * kC); }},
      {Op::matmul_forward, "(77, 130) @ (301, 130)^T", {1e-5, 8e-3, 0},
       [](OpBench& b) {
         b.be().matmul_forward(b.act_out(kGemmN * kGemmO), b.act_in(kGemmN * kGemmI), b.act_in(kGemmO * kGemmI, 0.1f),
                               kGemmN, kGemmI, kGemmO);
       }},
      {Op::matmul_backward_input, "(77, 301) @ (301, 130), accumulating; columns 30-129 of the same weight", {1e-5, 8e-3, 0},
       [](OpBench& b) {
         const CAct dout = b.act_in(kGemmN * kGemmO), w = b.act_in(kGemmO * kGemmI, 0.1f);
         b.be().matmul_backward_input(b.act_inout(kGemmN * kGemmI), dout, w, kGemmN, kGemmI, kGemmO, true, kGemmI);
         b.be().matmul_backward_input(b.act_out(kGemmN * 100), dout, w + 30, kGemmN, 100, kGemmO, false, kGemmI);
       }},
      {Op::matmul_backward_weight,
       "(77, 301)^T @ (77, 130), fp32 out; rows 100-299 of the same, accumulating; into columns 30-129 of a gradient",
       {1e-5, 0, 1e-4},
       [](OpBench& b) {
         const CAct dout = b.act_in(kGemmN * kGemmO), inp = b.act_in(kGemmN * kGemmI);
         b.be().matmul_backward_weight(b.f32_out(kGemmO * kGemmI), dout, inp, kGemmN, kGemmI, kGemmO, false, kGemmO,
                                       kGemmI);
         b.be().matmul_backward_weight(b.f32_inout(200 * kGemmI), dout + 100, inp, kGemmN, kGemmI, 200, true, kGemmO,
                                       kGemmI);
         b.be().matmul_backward_weight(b.f32_inout(kGemmO * kGemmI) + 30, dout, b.act_in(kGemmN * 100), kGemmN, 100,
                                       kGemmO, false, kGemmO, kGemmI);
       }},
      {Op::embedding_forward, "37 tokens of a (3001, 1000) table", {0, 0, 0},
       [](OpBench& b) {
         b.be().embedding_forward(b.act_out(kRows * kC), b.ids_in(ids(b, kRows, kV)), b.act_in(int64_t(kV) * kC), kRows, kC);
       }},
      {Op::embedding_backward, "37 tokens into the vocabulary chunk [300, 1000)", {1e-6, 0, 1e-6},
       [](OpBench& b) {
         std::vector<int32_t> t = ids(b, kRows, kV);
         t[1] = t[0];  // a repeated token adds twice
         t[7] = 300;   // the chunk's edges
         t[9] = 999;
         const TokenGroups g = TokenGroups::of(t);
         TokenGroupsView v{b.ids_in(g.order), b.ids_in(g.start), b.ids_in(g.token), 0, 0};
         g.range(300, 700, v.first, v.count);
         b.be().embedding_backward(b.f32_inout(700 * kC), b.act_in(kRows * kC), v, kC, 300);
       }},
      {Op::rmsnorm_forward, "(37, 1000)", {1e-5, 8e-3, 1e-5},
       [](OpBench& b) {
         b.be().rmsnorm_forward(b.act_out(kRows * kC), b.f32_out(kRows), b.act_in(kRows * kC, 2.0f), b.f32_in(kC), kRows,
                                kC, 1e-6f);
       }},
      {Op::rmsnorm_backward, "(37, 1000): dx accumulating, dw", {1e-5, 8e-3, 1e-4},
       [](OpBench& b) {
         Backend& be = b.be();
         const CAct x = b.act_in(kRows * kC, 2.0f);
         const float* w = b.f32_in(kC);
         Buffer y = be.alloc_act(kRows * kC, "test"), rstd = be.alloc(kRows * 4, "test");
         be.rmsnorm_forward(y.act(), rstd.f32(), x, w, kRows, kC, 1e-6f);
         be.rmsnorm_backward(b.act_inout(kRows * kC), b.f32_out(kC), b.act_in(kRows * kC), x, w, rstd.f32(), kRows, kC,
                             true);
       }},
      {Op::rope, "37 tokens, 4 heads of 64: forward, and the inverse on another tensor", {1e-5, 8e-3, 0},
       [](OpBench& b) {
         const int H = 4, D = 64;
         std::vector<float> inv(D / 2);
         for (int i = 0; i < D / 2; ++i) inv[size_t(i)] = std::pow(10000.0f, -2.0f * float(i) / float(D));
         const float* inv_freq = b.upload(inv);
         const int32_t* pos = b.ids_in(ids(b, kRows, 4096));
         b.be().rope(b.act_inout(kRows * H * D), pos, inv_freq, kRows, H, D, false);
         b.be().rope(b.act_inout(kRows * H * D), pos, inv_freq, kRows, H, D, true);
       }},
      {Op::swiglu_forward, "37 x 1000 values", {1e-6, 8e-3, 0},
       [](OpBench& b) { b.be().swiglu_forward(b.act_out(kRows * kC), b.act_in(kRows * kC, 3.0f), b.act_in(kRows * kC), kRows * kC); }},
      {Op::swiglu_backward, "37 x 1000 values", {1e-6, 8e-3, 0},
       [](OpBench& b) {
         b.be().swiglu_backward(b.act_out(kRows * kC), b.act_out(kRows * kC), b.act_in(kRows * kC),
                                b.act_in(kRows * kC, 3.0f), b.act_in(kRows * kC), kRows * kC);
       }},
      {Op::residual_add, "37 x 1000 values", {0, 0, 0},
       [](OpBench& b) { b.be().residual_add(b.act_inout(kRows * kC), b.act_in(kRows * kC), kRows * kC); }},
      {Op::cross_entropy_forward, "(37, 3001), one ignored target", {1e-5, 0, 1e-5},
       [](OpBench& b) {
         std::vector<int32_t> t = ids(b, kRows, kV);
         t[5] = kIgnoreIndex;
         b.be().cross_entropy_forward(b.f32_out(kRows), b.f32_out(kRows), b.act_in(int64_t(kRows) * kV, 3.0f), b.ids_in(t),
                                      kRows, kV);
       }},
      // Each backend's forward sums a row's 3001 exponentials in its own order, and every probability inherits that
      // sum's relative rounding: about sqrt(3001) fp32 roundings (3e-6) in a typical row, 1.1e-5 seen in the tail.
      {Op::cross_entropy_backward, "(37, 3001) in two vocabulary tiles, one ignored target", {5e-5, 8e-3, 0},
       [](OpBench& b) {
         Backend& be = b.be();
         std::vector<int32_t> t = ids(b, kRows, kV);
         t[5] = kIgnoreIndex;
         const int32_t* targets = b.ids_in(t);
         const Act logits = b.act_in(int64_t(kRows) * kV, 3.0f);
         Buffer lse = be.alloc(kRows * 4, "test");
         Buffer loss = be.alloc(kRows * 4, "test");
         be.cross_entropy_forward(loss.f32(), lse.f32(), logits, targets, kRows, kV);
         be.cross_entropy_backward(b.observe(logits, int64_t(kRows) * kV), lse.f32(), targets, kRows, kV, 0, kV, 0.125f);
         be.cross_entropy_backward(b.act_inout(kRows * 1000, 3.0f), lse.f32(), targets, kRows, 1000, 2001, kV, 0.125f);
       }},
      {Op::attention_forward, "GQA, packed documents given as spans too (lse in the backend's layout)", {1e-5, 3e-2, 0},
       [](OpBench& b) {
         const DocumentSpans docs = S::spans(b);
         b.be().attention_forward({b.act_out(S::N * S::H * S::D), S::lse(b, docs), b.act_in(S::N * S::H * S::D),
                                   b.act_in(S::N * S::KVH * S::D), b.act_in(S::N * S::KVH * S::D),
                                   b.ids_in(S::doc_start()), docs, S::B, S::T, S::H, S::KVH, S::D});
       }},
      {Op::attention_forward, "GQA with 4 kv heads, packed documents, in blocks of 45 queries of one kv head",
       {1e-5, 3e-2, 1e-5},
       [](OpBench& b) {
         b.be().attention_scores_bytes = 1;  // the composed attention's smallest blocks: min(T, 64) rows, one head
         const int KVH = 4;
         b.be().attention_forward({b.act_out(S::N * S::H * S::D), b.f32_out(S::B * S::H * S::T),
                                   b.act_in(S::N * S::H * S::D), b.act_in(S::N * KVH * S::D), b.act_in(S::N * KVH * S::D),
                                   b.ids_in(S::doc_start()), {}, S::B, S::T, S::H, KVH, S::D});
       }},
      // A bf16 rounding of a probability moves a gradient by more than one rounding: looser than other ops.
      {Op::attention_backward, "GQA, packed documents given as spans too, after this backend's forward", {1e-5, 3e-2, 0},
       [](OpBench& b) {
         Backend& be = b.be();
         const CAct q = b.act_in(S::N * S::H * S::D), k = b.act_in(S::N * S::KVH * S::D), v = b.act_in(S::N * S::KVH * S::D);
         const int32_t* doc = b.ids_in(S::doc_start());
         const DocumentSpans docs = S::spans(b);
         float* lse = S::lse(b, docs);
         Buffer out = be.alloc_act(S::N * S::H * S::D, "test");
         be.attention_forward({out.act(), lse, q, k, v, doc, docs, S::B, S::T, S::H, S::KVH, S::D});
         be.attention_backward({b.act_out(S::N * S::H * S::D), b.act_out(S::N * S::KVH * S::D),
                                b.act_out(S::N * S::KVH * S::D), b.act_in(S::N * S::H * S::D), out.act(), lse, q, k, v, doc,
                                docs, S::B, S::T, S::H, S::KVH, S::D});
       }},
      {Op::attention_backward, "GQA with 4 kv heads, plain causal, in blocks of 45 queries of one kv head",
       {1e-5, 3e-2, 0},
       [](OpBench& b) {
         Backend& be = b.be();
         be.attention_scores_bytes = 1;
         const int KVH = 4;
         const CAct q = b.act_in(S::N * S::H * S::D), k = b.act_in(S::N * KVH * S::D), v = b.act_in(S::N * KVH * S::D);
         float* lse = S::lse(b, {});
         Buffer out = be.alloc_act(S::N * S::H * S::D, "test");
         be.attention_forward({out.act(), lse, q, k, v, nullptr, {}, S::B, S::T, S::H, KVH, S::D});
         be.attention_backward({b.act_out(S::N * S::H * S::D), b.act_out(S::N * KVH * S::D), b.act_out(S::N * KVH * S::D),
                                b.act_in(S::N * S::H * S::D), out.act(), lse, q, k, v, nullptr, {}, S::B, S::T, S::H, KVH,
                                S::D});
       }},
      {Op::attention_decode, "3 new queries after 20 cached positions, GQA", {1e-5, 8e-3, 0},
       [](OpBench& b) {
         const int n = 3, past = 20, max_t = 45;
         Buffer scores = b.be().alloc(size_t(n) * S::H * max_t * 4, "test");  // scratch, not an output
         b.be().attention_decode({b.act_out(n * S::H * S::D), scores.f32(), b.act_in(n * S::H * S::D),
                                  b.act_in(max_t * S::KVH * S::D), b.act_in(max_t * S::KVH * S::D), n, past, max_t, S::H,
                                  S::KVH, S::D});
       }},
      {Op::add_sum, "sums of squares and of values, 37 x 1000 and 1.1M values, into a running total", {1e-12, 0, 1e-12},
       [](OpBench& b) {
         double* total = b.upload_value(std::uniform_real_distribution<double>(1, 2)(b.rng()));
         b.be().add_sum(total, b.f32_in(kRows * kC), kRows * kC, SumOf::Squares);
         b.be().add_sum(total, b.f32_in(kRows * kC), kRows * kC, SumOf::Values);
         b.be().add_sum(total, b.f32_in(1100000), 1100000, SumOf::Values);  // three levels of partial sums
         b.add_result({float(b.read_value(total))});
       }},
      {Op::add_sum_f64, "1.1M doubles into a running total", {1e-12, 0, 1e-12},
       [](OpBench& b) {
         std::vector<double> x(1100000);
         std::normal_distribution<double> z(0.0, 3.0);
         for (double& v : x) v = z(b.rng());
         Buffer& in = b.hold(b.be().alloc(x.size() * 8, "test"));
         b.be().copy_to_device(in.get(), x.data(), x.size() * 8);
         double* total = b.upload_value(std::uniform_real_distribution<double>(1, 2)(b.rng()));
         b.be().add_sum_f64(total, static_cast<const double*>(in.get()), int64_t(x.size()));
         b.add_result({float(b.read_value(total))});
       }},
      {Op::row_sums, "sums of squares and of values of 37 rows of 1000, NaN-filled output with a guard", {1e-12, 0, 1e-12},
       [](OpBench& b) {
         for (SumOf what : {SumOf::Squares, SumOf::Values}) {
           const float* x = b.f32_in(kRows * kC);
           std::vector<double> out(kRows + 8, std::numeric_limits<double>::quiet_NaN());
           Buffer& dev = b.hold(b.be().alloc(out.size() * 8, "test"));
           b.be().copy_to_device(dev.get(), out.data(), out.size() * 8);
           b.be().row_sums(static_cast<double*>(dev.get()), x, kRows, kC, what);
           b.be().copy_to_host(out.data(), dev.get(), out.size() * 8);
           for (int64_t r = 0; r < kRows; ++r) REQUIRE(std::isfinite(out[size_t(r)]));
           for (size_t r = kRows; r < out.size(); ++r) REQUIRE(std::isnan(out[r]));
           b.add_result(std::vector<float>(out.begin(), out.begin() + kRows));
         }
       }},
      {Op::dequantize_hybrid, "(33, 700) with 1% outliers", {0, 0, 0},
       [](OpBench& b) {
         const HybridMatrix m = random_hybrid(b, kQRows, kQCols);
         b.be().dequantize_hybrid(b.act_out(kQRows * kQCols), m.view());
       }},
      {Op::quantize_blocks, "(33, 700) in blocks of 256, stochastic rounding", {0, 0, 0},
       [](OpBench& b) {
         const BlockView v{b.int8_out(kQRows * kQCols), b.f32_out(kQRows * 3), kQRows, kQCols, kQBlock};
         b.be().quantize_blocks(v, b.f32_in(kQRows * kQCols, 1e-3f), {7, 3, 1, true}, 11);
       }},
      {Op::accumulate_blocks, "(33, 700) in blocks of 256", {0, 0, 0},
       [](OpBench& b) {
         const BlockView v{b.int8_out(kQRows * kQCols), b.f32_out(kQRows * 3), kQRows, kQCols, kQBlock};
         b.be().quantize_blocks(v, b.f32_in(kQRows * kQCols, 1e-3f), {7, 3, 2, true}, 0);
         b.be().accumulate_blocks(v, b.f32_in(kQRows * kQCols, 1e-3f), {7, 4, 2, true}, 0);
       }},
      {Op::dequantize_blocks, "(33, 700) in blocks of 256", {0, 0, 0},
       [](OpBench& b) {
         const BlockMatrix m = BlockMatrix::zeros(b.be(), kQRows, kQCols, kQBlock, "test");
         b.be().quantize_blocks(m.view(), b.f32_in(kQRows * kQCols), {7, 3, 1, true}, 0);
         b.be().dequantize_blocks(b.f32_out(kQRows * kQCols), m.view());
       }},
      {Op::quantize_groups, "37 x 1000 - 1 values (a partial last group)", {0, 0, 0},
       [](OpBench& b) {
         const int64_t n = kRows * kC - 1;
         b.be().quantize_groups({b.int8_out(n), b.f32_out((n + kStackGroup - 1) / kStackGroup), n}, b.act_in(n, 3.0f));
       }},
      {Op::dequantize_groups, "37 x 1000 - 1 values", {0, 0, 0},
       [](OpBench& b) {
         const int64_t n = kRows * kC - 1;
         Buffer& q = b.hold(b.be().alloc(size_t(n), "test"));
         Buffer& scale = b.hold(b.be().alloc(PackedGroups::scale_bytes(n), "test"));
         const PackedGroups p{static_cast<int8_t*>(q.get()), scale.f32(), n};
         b.be().quantize_groups(p, b.act_in(n, 3.0f));
         b.be().dequantize_groups(b.act_out(n), p);
       }},
      // GSE integers: exact on every backend (the rounding is keyed, the products are integers, the group sums are
      // added in group order). Rows of 1000 in groups of 32 leave a partial last group.
      {Op::gse_quantize, "(37, 1000) in groups of 32: 8 bits stochastic, 4 bits nearest", {0, 0, 0},
       [](OpBench& b) {
         for (const auto& [bits, stochastic] : {std::pair{8, true}, std::pair{4, false}}) {
           const GseView v{b.int8_out(kRows * kC), b.int8_out(kRows * 32), kRows, kC, {32, bits}};
           b.be().gse_quantize(v, b.act_in(kRows * kC, 3.0f), {11, 2, 5, stochastic}, 7);
         }
       }},
      {Op::gse_dequantize, "(37, 1000) in groups of 32, 6 bits", {0, 0, 0},
       [](OpBench& b) {
         Buffer& m = b.hold(b.be().alloc(size_t(kRows * kC), "test"));
         Buffer& e = b.hold(b.be().alloc(size_t(kRows * 32), "test"));
         const GseView v{static_cast<int8_t*>(m.get()), static_cast<int8_t*>(e.get()), kRows, kC, {32, 6}};
         b.be().gse_quantize(v, b.act_in(kRows * kC, 3.0f), {11, 2, 6, true}, 0);
         b.be().gse_dequantize(b.act_out(kRows * kC), v);
       }},
      // 45 rows of B: no int8 kernel of cuBLASLt takes them (the GPU runs the functor); 48 and 64 it takes, with
      // 31 groups and a last of 8, and with one short group (K = 16, a LoRA rank).
      {Op::gse_matmul, "(37, 1000) @ (45, 1000)^T in groups of 32, 8 bits, and accumulated", {0, 0, 0},
       [](OpBench& b) {
         const GseView a = gse_operand(b, kRows, kC, 1), w = gse_operand(b, 45, kC, 2);
         b.be().gse_matmul(b.f32_out(kRows * 45), a, w, false);
         b.be().gse_matmul(b.f32_inout(kRows * 45), a, w, true);
       }},
      {Op::gse_matmul, "(37, 1000) @ (48, 1000)^T and (37, 16) @ (64, 16)^T in groups of 32, accumulated", {0, 0, 0},
       [](OpBench& b) {
         const GseView a = gse_operand(b, kRows, kC, 1), w = gse_operand(b, 48, kC, 2);
         b.be().gse_matmul(b.f32_out(kRows * 48), a, w, false);
         b.be().gse_matmul(b.f32_inout(kRows * 48), a, w, true);
         const GseView h = gse_operand(b, kRows, 16, 3), up = gse_operand(b, 64, 16, 4);
         b.be().gse_matmul(b.f32_inout(kRows * 64), h, up, true);
       }},
      {Op::scale, "37 x 1000 values by 0.37", {0, 0, 0},
       [](OpBench& b) { b.be().scale(b.act_inout(kRows * kC), 0.37f, kRows * kC); }},
      {Op::transpose, "(37, 1000) -> (1000, 37)", {0, 0, 0},
       [](OpBench& b) { b.be().transpose(b.act_out(kRows * kC), b.act_in(kRows * kC), kRows, kC); }},
      {Op::adamw_step, "37 x 1000 fp32 weights and moments, bias-corrected, decayed, clipped", {0, 0, 0},
       [](OpBench& b) {
         AdamwStep st{};
         st.p = {2e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 1.0f - 0.9f * 0.9f, 1.0f - 0.999f * 0.999f, 1e-3};
         st.totals = b.upload_value(StepTotals{3.0, 0.0225});
         st.g = b.f32_in(kRows * kC, 1e-3f);
         st.w = b.f32_inout(kRows * kC);
         st.m = b.f32_inout(kRows * kC);
         std::vector<float> v = test::random_normal(size_t(kRows * kC), b.rng(), 1e-3f);
         for (float& x : v) x *= x;  // a second moment: squares
         st.v = b.observe(b.upload(v), kRows * kC);
         b.be().adamw_step(st, kRows * kC);
       }},
      {Op::lion_step_rows, "weights and momentum (33, 700) in INT8 and INT8, INT8 and fp32, fp32 and INT8; fp32 both",
       {0, 0, 0},
       [](OpBench& b) {
         Backend& be = b.be();
         const HybridMatrix& w = b.hold(random_hybrid(b, kQRows, kQCols));
         const BlockMatrix& m = b.hold(BlockMatrix::zeros(be, kQRows, kQCols, kQBlock, "test"));
         be.quantize_blocks(m.view(), b.f32_in(kQRows * kQCols, 1e-3f), {5, 0, 1, true}, 0);
         LionRowStep st{};
         st.p = {2e-3f, 0.9f, 0.99f, 0.1f, 1e-3};  // clipped: the gradient's norm is about 0.15
         st.totals = b.upload_value(StepTotals{3.0, 0.0225});
         st.g = b.f32_in(kQRows * kQCols, 1e-3f);
         st.w = w.view();
         st.m = m.view();
         st.wkey = {9, 3, 10, true};
         st.mkey = {9, 3, 11, true};
         st.cols = kQCols;
         st.rescales = b.u32_out(kQRows);
         be.lion_step_rows(st, kQRows);
         b.observe(static_cast<int8_t*>(w.q.get()), kQRows * kQCols);
         b.observe(w.scale.f32(), kQRows);
         b.observe(w.val.f32(), w.nnz);
         b.observe(static_cast<int8_t*>(m.q.get()), kQRows * kQCols);
         b.observe(m.absmax.f32(), kQRows * 3);
         // The mixed storages, each a code path of its own: INT8 weights with fp32 momentum, and the reverse.
         const HybridMatrix& w2 = b.hold(random_hybrid(b, kQRows, kQCols));
         LionRowStep int8_fp32 = st;
         int8_fp32.w = w2.view();
         int8_fp32.m = {};
         int8_fp32.m32 = b.f32_inout(kQRows * kQCols, 1e-3f);
         int8_fp32.rescales = b.u32_out(kQRows);
         be.lion_step_rows(int8_fp32, kQRows);
         b.observe(static_cast<int8_t*>(w2.q.get()), kQRows * kQCols);
         b.observe(w2.scale.f32(), kQRows);
         b.observe(w2.val.f32(), w2.nnz);
         const BlockMatrix& m2 = b.hold(BlockMatrix::zeros(be, kQRows, kQCols, kQBlock, "test"));
         be.quantize_blocks(m2.view(), b.f32_in(kQRows * kQCols, 1e-3f), {5, 0, 2, true}, 0);
         LionRowStep fp32_int8 = st;
         fp32_int8.w = {};
         fp32_int8.w32 = b.f32_inout(kQRows * kQCols, 0.05f);
         fp32_int8.m = m2.view();
         fp32_int8.rescales = nullptr;
         be.lion_step_rows(fp32_int8, kQRows);
         b.observe(static_cast<int8_t*>(m2.q.get()), kQRows * kQCols);
         b.observe(m2.absmax.f32(), kQRows * 3);
         LionRowStep fp32 = test::fp32_lion_step(b.f32_inout(kRows * kC), b.f32_inout(kRows * kC, 0.1f),
                                                 b.f32_in(kRows * kC), kC, {1e-3f, 0.9f, 0.99f, 0.1f, 1.0});
         fp32.totals = b.upload_value(StepTotals{3.0, 4.0});
         be.lion_step_rows(fp32, kRows);
       }},
  };
  return cases;
}

// Runs one case on the reference with the candidate's storage and on the candidate, with the same inputs, and
// compares every output.
void check_case(const OpCase& c, Backend& candidate, uint64_t seed) {
  const DType storage = candidate.act_dtype();
  INFO(op_name(c.op) << " (" << c.what << ") on " << candidate.name() << " with " << dtype_name(storage)
                     << " activations, seed " << seed);
  CpuReference reference(storage);
  OpBench want(reference, seed), got(candidate, seed);
  c.run(want);
  c.run(got);
  const auto w = want.outputs(), g = got.outputs();
  REQUIRE(w.size() == g.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const bool narrow = storage == DType::BF16 && w[i].stored_as == DType::BF16;
    const double tol = storage == DType::F32 ? c.tol.fp32 : (narrow ? c.tol.bf16 : c.tol.bf16_wide);
    INFO("output " << i << " of " << w.size() << ", stored as " << dtype_name(w[i].stored_as) << "; bound " << tol);
    REQUIRE(g[i].values.size() == w[i].values.size());
    CHECK(test::max_rel_error(g[i].values, w[i].values) <= tol);
  }
}

enum class Coverage { ReplacedOps, AllOps };

// A candidate that runs the reference's own code on the same device is checked on the ops it replaces; one on
// another device, on every op.
int run_harness(Backend& candidate, Coverage coverage) {
  const uint64_t seed = test::fresh_seed();
  int ran = 0;
  for (const OpCase& c : op_cases()) {
    if (coverage == Coverage::ReplacedOps && !candidate.replaces(c.op)) continue;
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
    CHECK(cpu.replaces(op) == (op == Op::attention_forward || op == Op::attention_backward || op == Op::gse_matmul));
    CHECK(broken.replaces(op) == (op == Op::swiglu_forward));
  }
}

// The cases themselves, on every machine: each fills every output it declares, with finite values, and runs the
// same on two reference backends.
TEST_CASE("every harness case is well formed on the reference, fp32 and bf16 storage", "[ops]") {
  for (DType storage : {DType::F32, DType::BF16}) {
    CpuReference reference(storage);
    CHECK(run_harness(reference, Coverage::AllOps) == int(op_cases().size()));
  }
}

TEST_CASE("the CPU backend's replaced ops (tiled attention, the GSE integer GEMM) match the reference, fp32 and bf16 storage", "[ops]") {
  for (DType storage : {DType::F32, DType::BF16}) {
    CpuBackend cpu(storage);
    const auto replaced = std::count_if(op_cases().begin(), op_cases().end(),
                                        [&](const OpCase& c) { return cpu.replaces(c.op); });
    CHECK(replaced > 0);
    CHECK(run_harness(cpu, Coverage::ReplacedOps) == replaced);
  }
}

// The GPU's decomposition of every row op (lanes in groups, barriers, block and group reductions), on the CPU.
TEST_CASE("every op with its rows walked by 64 lanes in groups of 32, as on a GPU, matches the reference", "[ops]") {
  for (DType storage : {DType::F32, DType::BF16}) {
    test::LaneBackend lanes(storage);
    CHECK(run_harness(lanes, Coverage::AllOps) == int(op_cases().size()));
  }
}

TEST_CASE("a replaced op that writes nothing fails the harness", "[ops][!shouldfail]") {
  WritesNothing broken;
  run_harness(broken, Coverage::ReplacedOps);
}

TEST_CASE("cuda: every op matches the reference, fp32 and bf16 storage", "[cuda][ops]") {
  for (DType storage : {DType::F32, DType::BF16}) {
    auto gpu = test::gpu_or_skip(storage);
    if (!gpu) return;
    CHECK(run_harness(*gpu, Coverage::AllOps) == int(op_cases().size()));
  }
}
