// LoRA adapters in the forward and backward passes (model/lora.h). With fp32 adapters the products are the
// backend's GEMMs in the activation dtype; with GSE adapters every operand of an adapter product is GSE along that
// product's reduction dimension and the product is an integer GEMM (gse_matmul), its sums in fp32. Activations and
// stored adapters are quantized to nearest (the recompute sees the forward's exact values); gradients
// stochastically, keyed by (step, micro-batch, layer, target, operand): a group shares its exponent with its largest
// value, and nearest rounding would flush a token's small gradient to zero beside a large one, biased; stochastic
// rounding keeps it in expectation.
#include "model/llama_internal.h"

namespace qft {

namespace {

constexpr RoundingKey kNearest{0, 0, 0, false};

// x (rows, cols) as GSE in groups along its rows.
GseMatrix to_gse(Backend& be, CAct x, int64_t rows, int64_t cols, GseFormat f, const RoundingKey& key = kNearest) {
  GseMatrix g = GseMatrix::allocate(be, rows, cols, f, "layer activations");
  be.gse_quantize(g.view(), x, key, 0);
  return g;
}

// x (rows, cols)^T as GSE in groups along its columns: the operand of a product that reduces over x's rows.
GseMatrix transposed_gse(Backend& be, CAct x, int64_t rows, int64_t cols, GseFormat f,
                         const RoundingKey& key = kNearest) {
  Buffer t = be.alloc(size_t(rows * cols) * act_size(x.dtype), "layer activations");  // (cols, rows)
  be.transpose(Act{t.get(), x.dtype}, x, rows, cols);
  return to_gse(be, CAct{t.get(), x.dtype}, cols, rows, f, key);
}

// A stored GSE adapter (rows, cols)^T, regrouped along its rows: exact values, rounded to nearest in new groups.
GseMatrix regrouped_gse(Backend& be, const GseMatrix& w) {
  Buffer x = be.alloc(size_t(w.rows * w.cols) * 4, "layer activations");  // (rows, cols)
  be.gse_dequantize(Act{x.get(), DType::F32}, w.view());
  return transposed_gse(be, CAct{x.get(), DType::F32}, w.rows, w.cols, w.format);
}

// c (fp32, n values) added into x (activation dtype).
void add_f32(Backend& be, Act x, const Buffer& c, int64_t n) {
  if (x.dtype == DType::F32) return be.residual_add(x, CAct{c.get(), DType::F32}, n);
  Buffer t = be.alloc_act(n, "layer activations");
  be.convert(t.act(), CAct{c.get(), DType::F32}, n);
  be.residual_add(x, t.act(), n);
}

// u (N, r) = s inp A^T: fp32 for GSE adapters (the integer product's sums), else in the activation dtype.
struct AdapterDown {
  Buffer buf;
  Act u;
};

AdapterDown adapter_down(Backend& be, const Param& A, float s, CAct inp, int N, int I, const DenseWeight& a) {
  const int r = int(A.rows);
  AdapterDown d;
  if (A.is_gse()) {
    d.buf = be.alloc(size_t(N) * r * 4, "layer activations");
    d.u = Act{d.buf.get(), DType::F32};
    const GseMatrix x = to_gse(be, inp, N, I, A.gse.format);
    be.gse_matmul(d.buf.f32(), x.view(), A.gse.view(), false);
  } else {
    d.buf = be.alloc_act(int64_t(N) * r, "layer activations");
    d.u = d.buf.act();
    be.matmul_forward(d.u, inp, a.get(), N, I, r);
  }
  be.scale(d.u, s, int64_t(N) * r);
  return d;
}

}  // namespace

void LlamaModel::adapter_forward(int layer, LoraTarget t, Act out, CAct inp, int N, int I, int O) {
  const auto [ia, ib] = adapter_of(layer, t);
  if (ia < 0) return;
  Backend& be = backend_;
  const Param &A = params_[size_t(ia)], &B = params_[size_t(ib)];
  const int r = int(A.rows);
  const AdapterDown d = adapter_down(be, A, storage_.lora.scaling(), inp, N, I, A.is_gse() ? DenseWeight{} : dense(ia));
  if (B.is_gse()) {
    const GseMatrix ug = to_gse(be, d.u, N, r, B.gse.format);
    Buffer y = be.alloc(size_t(N) * O * 4, "layer activations");  // (N, O)
    be.gse_matmul(y.f32(), ug.view(), B.gse.view(), false);
    add_f32(be, out, y, int64_t(N) * O);
  } else {
    Buffer y = be.alloc_act(int64_t(N) * O, "layer activations");  // (N, O)
    be.matmul_forward(y.act(), d.u, dense(ib).get(), N, r, O);
    be.residual_add(out, y.act(), int64_t(N) * O);
  }
}

void LlamaModel::adapter_backward(int layer, LoraTarget t, CAct dout, CAct inp, Act dinp, int N, int I, int O,
                                  GradSink& sink) {
  const auto [ia, ib] = adapter_of(layer, t);
  if (ia < 0) return;
  Backend& be = backend_;
  const Param &A = params_[size_t(ia)], &B = params_[size_t(ib)];
  const int r = int(A.rows);
  const float s = storage_.lora.scaling();
  Buffer dA = be.alloc(size_t(r) * I * 4, "weight-gradient chunk");  // (r, I)
  Buffer dB = be.alloc(size_t(O) * r * 4, "weight-gradient chunk");  // (O, r)
  // The sink may update a tensor in place once its gradient is delivered: B's goes after the last read of B, A's
  // after the last read of A.
  if (A.is_gse()) {
    const GseFormat f = A.gse.format;
    // the four gradient operands' keys (dout, dout^T, du^T, du), unique to this adapter and micro-batch
    auto key = [&](uint32_t operand) {
      return RoundingKey{storage_.lora.seed, gradient_rounding_step,
                         uint32_t(layer) * 64u + uint32_t(t) * 8u + operand, true};
    };
    const AdapterDown d = adapter_down(be, A, s, inp, N, I, {});
    Buffer du = be.alloc(size_t(N) * r * 4, "layer gradients");  // (N, r) = s dout B
    be.gse_matmul(du.f32(), to_gse(be, dout, N, O, f, key(0)).view(), regrouped_gse(be, B.gse).view(), false);
    be.scale(Act{du.get(), DType::F32}, s, int64_t(N) * r);
    const GseMatrix dout_t = transposed_gse(be, dout, N, O, f, key(1));                  // (O, N)
    be.gse_matmul(dB.f32(), dout_t.view(), transposed_gse(be, d.u, N, r, f).view(), false);  // dout^T u
    sink.consume(ib, 0, O, dB.f32());
    const CAct du_act{du.get(), DType::F32};
    be.gse_matmul(dA.f32(), transposed_gse(be, du_act, N, r, f, key(2)).view(), transposed_gse(be, inp, N, I, f).view(),
                  false);
    Buffer dx = be.alloc(size_t(N) * I * 4, "layer gradients");  // (N, I) = du A
    be.gse_matmul(dx.f32(), to_gse(be, du_act, N, r, f, key(3)).view(), regrouped_gse(be, A.gse).view(), false);
    add_f32(be, dinp, dx, int64_t(N) * I);
  } else {
    const DenseWeight a = dense(ia), b = dense(ib);
    const AdapterDown d = adapter_down(be, A, s, inp, N, I, a);
    Buffer du = be.alloc_act(int64_t(N) * r, "layer gradients");  // (N, r) = s dout B
    be.matmul_backward_input(du.act(), dout, b.get(), N, r, O, false, r);
    be.scale(du.act(), s, int64_t(N) * r);
    be.matmul_backward_weight(dB.f32(), dout, d.u, N, r, O, false, O, r);  // dout^T u
    sink.consume(ib, 0, O, dB.f32());
    be.matmul_backward_weight(dA.f32(), du.act(), inp, N, I, r, false, r, I);  // du^T inp
    be.matmul_backward_input(dinp, du.act(), a.get(), N, I, r, true, I);
  }
  sink.consume(ia, 0, r, dA.f32());
}

std::vector<float> LlamaModel::read_merged_weight(int param) const {
  std::vector<float> w = read_weight(param);
  const Param& p = params_[size_t(param)];
  for (const LayerParams& lp : layers_) {
    for (int t = 0; t < kLoraTargets; ++t) {
      if (lp.lora_a[size_t(t)] < 0 || lp.matrix(LoraTarget(t)) != param) continue;
      const std::vector<float> a = read_weight(lp.lora_a[size_t(t)]);  // (r, in)
      const std::vector<float> b = read_weight(lp.lora_b[size_t(t)]);  // (out, r)
      const int64_t r = params_[size_t(lp.lora_a[size_t(t)])].rows, in = p.cols;
      const float s = storage_.lora.scaling();
#pragma omp parallel for schedule(static)
      for (int64_t o = 0; o < p.rows; ++o) {
        for (int64_t k = 0; k < r; ++k) {
          const float sb = s * b[size_t(o * r + k)];
          for (int64_t c = 0; c < in; ++c) w[size_t(o * in + c)] += sb * a[size_t(k * in + c)];
        }
      }
    }
  }
  return w;
}

}  // namespace qft
