#pragma once
// Tier one of the seam: every op of the Backend interface, written once as "which shared functor, over how many
// elements or rows, with which GEMMs". A concrete backend derives from FunctorBackend<Self> and supplies only how
// to run things:
//   template <class F> void launch_elementwise(const F& f, int64_t n);   // f(i), i in [0, n)
//   template <class F> void launch_rows(const F& f, int64_t rows);       // f(row_ctx, r)
//   void run_gemm(const GemmArgs& g);
//   void after_op(const char* op);                                       // e.g. --debug-sync, at every op's end
// plus memory. Tier two: Self may override any op with its own kernel or library call; replaces() then reports it
// by itself (it compares the op's member pointer with this class's), so the capability query cannot drift from
// the code, and test/test_backend_ops.cpp checks each replacement against the reference.
#include <algorithm>
#include <exception>
#include <type_traits>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/backend.h"
#include "ops/gemm_args.h"
#include "ops/kernels.h"
#include "ops/kernels_backward.h"
#include "ops/attention.h"

namespace qft {

// Calls f(float{}) or f(bf16{}) for an activation dtype: how a backend instantiates a functor for its storage.
template <class F>
void with_act_type(DType t, F&& f) {
  if (t == DType::BF16) {
    f(bf16{});
  } else {
    f(float{});
  }
}

// The storage type shared by an op's activation arguments; a mix is a caller bug.
inline DType common_dtype(const char* op, std::initializer_list<DType> types) {
  const DType t = *types.begin();
  for (DType u : types) {
    if (u != t) throw Error(std::string(op) + ": activation arguments of different storage types");
  }
  return t;
}

template <class Self>
class FunctorBackend : public Backend {
 public:
  using Backend::Backend;

  bool replaces(Op op) const override {
    switch (op) {
#define QFT_OP_OVERRIDDEN(name) \
  case Op::name:                \
    return !std::is_same_v<decltype(&Self::name), decltype(&FunctorBackend::name)>;
      QFT_BACKEND_OPS(QFT_OP_OVERRIDDEN)
#undef QFT_OP_OVERRIDDEN
    }
    return false;
  }

  void convert(Act dst, CAct src, int64_t n) override {
    const OpScope scope(*this, "convert");
    with_act_type(dst.dtype, [&](auto d) {
      with_act_type(src.dtype, [&](auto s) {
        using TD = decltype(d);
        using TS = decltype(s);
        each(Convert<TD, TS>{dst.as<TD>(), src.as<TS>()}, n);
      });
    });
  }

  // ---- forward ----
  void matmul_forward(Act out, CAct inp, CAct weight, int N, int I, int O) override {
    const OpScope scope(*this, "matmul_forward");
    gemm({false, true, N, O, I, inp, I, weight, I, 0.0f, out, O});  // (N, I) @ (O, I)^T -> (N, O)
  }
  void embedding_forward(Act out, const int32_t* tokens, CAct table, int N, int C) override {
    const OpScope scope(*this, "embedding_forward");
    with_act_type(common_dtype("embedding_forward", {out.dtype, table.dtype}), [&](auto t) {
      using T = decltype(t);
      each(EmbeddingForward<T>{out.as<T>(), tokens, table.as<T>(), C}, int64_t(N) * C);
    });
  }
  void rmsnorm_forward(Act y, float* rstd, CAct x, const float* w, int N, int C, float eps) override {
    const OpScope scope(*this, "rmsnorm_forward");
    with_act_type(common_dtype("rmsnorm_forward", {y.dtype, x.dtype}), [&](auto t) {
      using T = decltype(t);
      rows(RmsNormForward<T>{y.as<T>(), rstd, x.as<T>(), w, C, eps}, N);
    });
  }
  void rope(Act x, const int32_t* pos, const float* inv_freq, int N, int H, int D, bool backward) override {
    const OpScope scope(*this, "rope");
    with_act_type(x.dtype, [&](auto t) {
      using T = decltype(t);
      each(Rope<T>{x.as<T>(), pos, inv_freq, H, D, backward ? -1.0f : 1.0f}, int64_t(N) * H * (D / 2));
    });
  }
  void attention_forward(const AttentionParams& p) override;
  void attention_decode(const DecodeAttentionParams& p) override {
    const OpScope scope(*this, "attention_decode");
    with_act_type(common_dtype("attention_decode", {p.out.dtype, p.q.dtype, p.k.dtype, p.v.dtype}), [&](auto t) {
      using T = decltype(t);
      rows(DecodeAttention<T>{p.out.as<T>(), p.scores, p.q.as<T>(), p.k.as<T>(), p.v.as<T>(), p.past, p.H, p.KVH,
                              p.D, p.max_t, 1.0f / std::sqrt(float(p.D))},
           int64_t(p.n) * p.H);
    });
  }
  void swiglu_forward(Act out, CAct gate, CAct up, int64_t n) override {
    const OpScope scope(*this, "swiglu_forward");
    with_act_type(common_dtype("swiglu_forward", {out.dtype, gate.dtype, up.dtype}), [&](auto t) {
      using T = decltype(t);
      each(SwigluForward<T>{out.as<T>(), gate.as<T>(), up.as<T>()}, n);
    });
  }
  void residual_add(Act x, CAct y, int64_t n) override {
    const OpScope scope(*this, "residual_add");
    with_act_type(common_dtype("residual_add", {x.dtype, y.dtype}), [&](auto t) {
      using T = decltype(t);
      each(ResidualAdd<T>{x.as<T>(), y.as<T>()}, n);
    });
  }
  void cross_entropy_forward(float* loss, float* lse, CAct logits, const int32_t* targets, int N, int V) override {
    const OpScope scope(*this, "cross_entropy_forward");
    with_act_type(logits.dtype, [&](auto t) {
      using T = decltype(t);
      rows(CrossEntropyForward<T>{loss, lse, logits.as<T>(), targets, V}, N);
    });
  }

  // ---- backward ----
  void matmul_backward_input(Act dinp, CAct dout, CAct weight, int N, int I, int O, bool accumulate,
                             int ld_weight) override {
    const OpScope scope(*this, "matmul_backward_input");
    gemm({false, false, N, I, O, dout, O, weight, ld_weight, accumulate ? 1.0f : 0.0f, dinp, I});  // (N, O) @ (O, I)
  }
  void matmul_backward_weight(float* dweight, CAct dout, CAct inp, int N, int I, int O, bool accumulate, int ld_dout,
                              int ld_dweight) override {
    const OpScope scope(*this, "matmul_backward_weight");
    gemm({true, false, O, I, N, dout, ld_dout, inp, I, accumulate ? 1.0f : 0.0f, dweight, ld_dweight});  // (N, O)^T @ (N, I)
  }
  void rmsnorm_backward(Act dx, float* dw, CAct dy, CAct x, const float* w, const float* rstd, int N, int C,
                        bool accumulate_dx) override {
    const OpScope scope(*this, "rmsnorm_backward");
    with_act_type(common_dtype("rmsnorm_backward", {dx.dtype, dy.dtype, x.dtype}), [&](auto t) {
      using T = decltype(t);
      rows(RmsNormBackwardInput<T>{dx.as<T>(), dy.as<T>(), x.as<T>(), w, rstd, C, accumulate_dx}, N);
      if (!dw) return;
      const int64_t blocks = (N + kRowBlock - 1) / kRowBlock;
      Buffer partial = alloc(size_t(blocks * C) * 4, "layer gradients");  // (blocks, C)
      each(RmsNormBackwardWeightPartial<T>{partial.f32(), dy.as<T>(), x.as<T>(), rstd, N, C}, blocks * C);
      each(ColumnSum{dw, partial.f32(), blocks, C}, C);
    });
  }
  void attention_backward(const AttentionBackwardParams& p) override;
  void swiglu_backward(Act dgate, Act dup, CAct dout, CAct gate, CAct up, int64_t n) override {
    const OpScope scope(*this, "swiglu_backward");
    with_act_type(common_dtype("swiglu_backward", {dgate.dtype, dup.dtype, dout.dtype, gate.dtype, up.dtype}),
                  [&](auto t) {
                    using T = decltype(t);
                    each(SwigluBackward<T>{dgate.as<T>(), dup.as<T>(), dout.as<T>(), gate.as<T>(), up.as<T>()}, n);
                  });
  }
  void cross_entropy_backward(Act logits, const float* lse, const int32_t* targets, int N, int cols, int v0, int V,
                              float scale) override {
    const OpScope scope(*this, "cross_entropy_backward");
    with_act_type(logits.dtype, [&](auto t) {
      using T = decltype(t);
      each(CrossEntropyBackward<T>{logits.as<T>(), lse, targets, V, v0, cols, scale}, int64_t(N) * cols);
    });
  }
  void embedding_backward(float* dtable, CAct dout, const TokenGroupsView& g, int C, int v0) override {
    const OpScope scope(*this, "embedding_backward");
    with_act_type(dout.dtype, [&](auto t) {
      using T = decltype(t);
      each(EmbeddingBackward<T>{dtable, dout.as<T>(), g.order, g.start, g.token, g.first, C, v0}, int64_t(g.count) * C);
    });
  }

  // ---- reductions ----
  void add_sum(double* total, const float* x, int64_t n, SumOf what) override {
    const OpScope scope(*this, "add_sum");
    ordered_sum(total, x, n, what == SumOf::Squares);
  }
  void add_sum_f64(double* total, const double* x, int64_t n) override {
    const OpScope scope(*this, "add_sum_f64");
    ordered_sum(total, x, n, false);
  }
  void row_sums(double* out, const float* x, int64_t rows, int64_t cols, SumOf what) override {
    const OpScope scope(*this, "row_sums");
    if (rows > 0) each(OrderedGroupSum<float>{out, x, rows * cols, cols, what == SumOf::Squares, false}, rows);
  }

  // ---- INT8 state and the Lion step ----
  void dequantize_hybrid(Act out, const HybridView& w) override {
    const OpScope scope(*this, "dequantize_hybrid");
    with_act_type(out.dtype, [&](auto t) {
      using T = decltype(t);
      rows(HybridDequantRows<T>{out.as<T>(), w}, w.rows);
    });
  }
  void dequantize_blocks(float* out, const BlockView& b) override {
    const OpScope scope(*this, "dequantize_blocks");
    rows(BlockDequantRows{out, b}, b.rows);
  }
  void quantize_blocks(const BlockView& b, const float* x, const RoundingKey& key, int64_t row_base) override {
    const OpScope scope(*this, "quantize_blocks");
    rows(BlockQuantizeRows{b, x, key, row_base}, b.rows);
  }
  void accumulate_blocks(const BlockView& acc, const float* g, const RoundingKey& key, int64_t row_base) override {
    const OpScope scope(*this, "accumulate_blocks");
    rows(BlockAccumulateRows{acc, g, key, row_base}, acc.rows);
  }
  void lion_step_rows(const LionRowStep& step, int64_t rows_) override {
    const OpScope scope(*this, "lion_step_rows");
    rows(step, rows_);
  }

  // ---- the layer-input stack at low precision ----
  void quantize_groups(const PackedGroups& out, CAct x) override {
    const OpScope scope(*this, "quantize_groups");
    with_act_type(x.dtype, [&](auto t) {
      using T = decltype(t);
      each(QuantizeGroups<T>{out, x.as<T>()}, out.groups());
    });
  }
  void dequantize_groups(Act x, const PackedGroups& in) override {
    const OpScope scope(*this, "dequantize_groups");
    with_act_type(x.dtype, [&](auto t) {
      using T = decltype(t);
      each(DequantizeGroups<T>{x.as<T>(), in}, in.n);
    });
  }

  // ---- GSE integers ----
  void gse_quantize(const GseView& out, CAct x, const RoundingKey& key, int64_t row_base) override {
    const OpScope scope(*this, "gse_quantize");
    with_act_type(x.dtype, [&](auto t) {
      using T = decltype(t);
      each(GseQuantize<T>{out.m, out.e, x.as<T>(), out.cols, out.f, key, row_base}, out.rows * out.groups());
    });
  }
  void gse_dequantize(Act out, const GseView& in) override {
    const OpScope scope(*this, "gse_dequantize");
    with_act_type(out.dtype, [&](auto t) {
      using T = decltype(t);
      each(GseDequantize<T>{out.as<T>(), in.m, in.e, in.cols, in.f.group}, in.rows * in.cols);
    });
  }
  void gse_matmul(float* c, const GseView& a, const GseView& b, bool accumulate) override {
    const OpScope scope(*this, "gse_matmul");
    if (const std::string problem = gse_matmul_problem(a, b); !problem.empty()) throw Error(problem);
    each(GseMatmul{c, a.m, a.e, b.m, b.e, b.rows, a.cols, a.f.group, accumulate}, a.rows * b.rows);
  }

  // ---- LoRA adapters ----
  void scale(Act x, float s, int64_t n) override {
    const OpScope scope(*this, "scale");
    with_act_type(x.dtype, [&](auto t) {
      using T = decltype(t);
      each(Scale<T>{x.as<T>(), s}, n);
    });
  }
  void transpose(Act out, CAct in, int64_t rows_, int64_t cols) override {
    const OpScope scope(*this, "transpose");
    with_act_type(common_dtype("transpose", {out.dtype, in.dtype}), [&](auto t) {
      using T = decltype(t);
      each(Transpose<T>{out.as<T>(), in.as<T>(), rows_, cols}, rows_ * cols);
    });
  }
  void adamw_step(const AdamwStep& step, int64_t n) override {
    const OpScope scope(*this, "adamw_step");
    each(step, n);
  }

 protected:
  // For replacements in Self: run a shared functor as the reference does.
  template <class F>
  void each(const F& f, int64_t n) { self().launch_elementwise(f, n); }
  template <class F>
  void rows(const F& f, int64_t n) { self().launch_rows(f, n); }
  // Brackets one op: Self::after_op at its end (unless the op threw) and, when profiling, its time.
  class OpScope {
   public:
    OpScope(FunctorBackend& be, const char* op)
        : be_(be),
          op_(op),
          exceptions_(std::uncaught_exceptions()),
          timer_(be.op_depth_++ == 0 ? be.profile_ : nullptr) {}
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;
    ~OpScope() noexcept(false) {  // after_op may report a device fault (CUDA --debug-sync)
      be_.op_depth_ -= 1;
      if (std::uncaught_exceptions() != exceptions_) return;
      be_.self().after_op(op_);
      timer_.stop(op_, be_);
    }

   private:
    FunctorBackend& be_;
    const char* op_;
    int exceptions_;
    OpTimer timer_;
  };

 private:
  Self& self() { return static_cast<Self&>(*this); }
  // *total += sum of x (n,) or of its squares: sums of 1024 values, then sums of 1024 of those, and so on, each in
  // order: one order on every backend.
  template <class In>
  void ordered_sum(double* total, const In* x, int64_t n, bool squares) {
    constexpr int64_t kGroup = 1024;
    if (n <= kGroup) {
      each(OrderedGroupSum<In>{total, x, n, kGroup, squares, true}, 1);
      return;
    }
    int64_t parts = (n + kGroup - 1) / kGroup;
    Buffer partial = this->alloc(size_t(parts) * sizeof(double), "reduction scratch");
    each(OrderedGroupSum<In>{static_cast<double*>(partial.get()), x, n, kGroup, squares, false}, parts);
    while (parts > kGroup) {
      const int64_t next = (parts + kGroup - 1) / kGroup;
      Buffer coarser = this->alloc(size_t(next) * sizeof(double), "reduction scratch");
      each(OrderedGroupSum<double>{static_cast<double*>(coarser.get()), static_cast<const double*>(partial.get()), parts,
                                   kGroup, false, false},
           next);
      partial = std::move(coarser);
      parts = next;
    }
    each(OrderedGroupSum<double>{total, static_cast<const double*>(partial.get()), parts, kGroup, false, true}, 1);
  }
  void gemm(const GemmArgs& g) {
    if (g.A.dtype != g.B.dtype) throw Error("GEMM operands A and B must share a storage type");
    self().run_gemm(g);
  }
};

}  // namespace qft

#include "ops/attention_composed.h"  // FunctorBackend's attention_forward and attention_backward
