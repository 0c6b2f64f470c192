#pragma once
// The Lion step (Chen et al. 2023), written once for every backend and every storage of weights and momentum:
//   c = b1 m + (1 - b1) g;  theta -= lr (sign(c) + wd theta);  m = b2 m + (1 - b2) g
// sign(0) = 0, as in bitsandbytes. With a step's totals, g is first scaled to clip the step's gradient norm.
#include "core/hd.h"
#include "ops/int8.h"

namespace qft {

struct LionParams {
  float lr = 1e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.99f;
  float weight_decay = 0.0f;
  double max_grad_norm = 0.0;  // clip the step's gradient norm (StepTotals::grad_sum_squares) to this; 0: never
};

// What a training step sums in backend memory and reads on the host once, at its end. The update reads it too,
// so that no step waits on the host between ops: a step whose loss or gradient norm is not finite leaves every
// weight and momentum as it was, and clipping scales the gradient on the device.
struct StepTotals {
  double loss_sum = 0;          // per-token cross-entropy over the step's target tokens
  double grad_sum_squares = 0;  // of the step's whole gradient, when clipping measured it
  QFT_HD bool finite() const { return finite_hd(loss_sum) && finite_hd(grad_sum_squares); }
  QFT_HD float clip_factor(double max_norm) const {
    if (max_norm <= 0.0) return 1.0f;
    const double norm = sqrt_hd(grad_sum_squares);
    return norm > max_norm ? float(max_norm / (norm + 1e-6)) : 1.0f;
  }
};

QFT_HD float sign_hd(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

// The fused Lion step over rows of one matrix, for any mix of fp32 / INT8 weights and momentum:
// dequantize -> Lion -> requantize, with no fp32 copy of the matrix. Weights keep their row scale while the
// new values fit and grow it (counting the growth in `rescales`) only when a value would overflow ±127·scale.
// A row's largest value sits at ±127 after quantization, so a scale grown to exactly fit would overflow
// again on the next outward step and re-round the whole row every other step; growing by `growth`
// (> 1) leaves headroom so that rescaling stays rare.
struct LionRowStep {
  LionParams p;
  const float* g;      // (rows, cols) gradient
  float* w32;          // fp32 weights, or null for hybrid INT8 weights `w`
  HybridView w;
  float* m32;          // fp32 momentum, or null for block INT8 momentum `m`
  BlockView m;
  RoundingKey wkey, mkey;
  int64_t cols;
  int64_t row_base;
  uint32_t* rescales;  // (rows,) incremented where the row's scale grew; may be null
  const StepTotals* totals;  // backend memory: skip when not finite, clip; null: neither
  float growth = 1.0625f;  // new scale = growth * max|w| / 127 when a value overflows
  float grad_scale = 1.0f;  // set from totals when the step runs

  QFT_HD float mom(int64_t r, int64_t i) const { return m32 ? m32[r * cols + i] : m.get(r, i); }
  QFT_HD float grad(int64_t r, int64_t i) const { return g[r * cols + i] * grad_scale; }
  QFT_HD float new_weight(float wv, int64_t r, int64_t i) const {
    const float c = p.beta1 * mom(r, i) + (1.0f - p.beta1) * grad(r, i);
    return wv - p.lr * (sign_hd(c) + p.weight_decay * wv);
  }
  QFT_HD float new_mom(int64_t r, int64_t i) const { return p.beta2 * mom(r, i) + (1.0f - p.beta2) * grad(r, i); }

  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    if (!totals) return update_row(row, r);
    if (!totals->finite()) return;  // every lane reads the same totals: the whole row returns
    LionRowStep clipped = *this;
    clipped.grad_scale = totals->clip_factor(p.max_grad_norm);
    clipped.update_row(row, r);
  }

  template <class Row>
  QFT_HD void update_row(const Row& row, int64_t r) const {
    if (w32) {
      for (int64_t i = row.lane(); i < cols; i += row.width()) w32[r * cols + i] = new_weight(w32[r * cols + i], r, i);
    } else {
      update_hybrid_row(row, r);
    }
    row.sync();  // the weight update read the old momentum; only now may it change
    if (m32) {
      for (int64_t i = row.lane(); i < cols; i += row.width()) m32[r * cols + i] = new_mom(r, i);
    } else {
      requantize_row(row, m, r, mkey, row_base, [&](int64_t i) { return new_mom(r, i); });
    }
  }

  template <class Row>
  QFT_HD void update_hybrid_row(const Row& row, int64_t r) const {
    const float s = w.scale[r];
    int8_t* q = w.q + r * cols;
    float mx = 0.0f;  // pass 1: the largest new dense value, with nothing written
    for (int64_t i = row.lane(); i < cols; i += row.width()) {
      if (q[i] != kOutlierSlot) mx = max_hd(mx, fabsf(new_weight(float(q[i]) * s, r, i)));
    }
    mx = row.max(mx);
    const float s_new = mx > 127.0f * s ? growth * mx / 127.0f : s;
    for (int64_t k = w.row_ptr[r] + row.lane(); k < w.row_ptr[r + 1]; k += row.width()) {
      w.val[k] = new_weight(w.val[k], r, w.col(k));  // outliers: exact fp32
    }
    const float inv = 1.0f / s_new;  // pass 2: recompute and requantize, each lane its own elements
    for (int64_t i = row.lane(); i < cols; i += row.width()) {
      if (q[i] == kOutlierSlot) continue;
      q[i] = round_int8(new_weight(float(q[i]) * s, r, i) * inv, wkey, uint64_t(row_base + r) * uint64_t(cols) + uint64_t(i));
    }
    row.sync();
    if (row.lane() == 0) {
      w.scale[r] = s_new;
      if (rescales && s_new != s) rescales[r] += 1;
    }
  }
};

}  // namespace qft
