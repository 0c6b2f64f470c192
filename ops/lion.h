#pragma once
// The Lion step (Chen et al. 2023), written once for every backend and every storage of weights and momentum:
//   c = b1 m + (1 - b1) g;  theta -= lr (sign(c) + wd theta);  m = b2 m + (1 - b2) g
// sign(0) = 0, as in bitsandbytes. With a step's totals, g is first scaled to clip the step's gradient norm.
#include "core/hd.h"
#include "ops/int8.h"

namespace qft {

// sign(0) = 0, and NaN too. Written without branches: selects here and in the clamps of rounding let g++ thread
// jumps through the loop, which then no longer vectorizes.
QFT_HD float sign_hd(float x) { return float(x > 0.0f) - float(x < 0.0f); }

struct LionParams {
  float lr = 1e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.99f;
  float weight_decay = 0.0f;
  double max_grad_norm = 0.0;  // clip the step's gradient norm (StepTotals::grad_sum_squares) to this; 0: never

  // sign(c), the new weight and the new momentum, from the old momentum mv and the gradient gv
  QFT_HD float direction(float mv, float gv) const { return sign_hd(beta1 * mv + (1.0f - beta1) * gv); }
  QFT_HD float new_weight(float wv, float dir) const { return wv - lr * (dir + weight_decay * wv); }
  QFT_HD float new_mom(float mv, float gv) const { return beta2 * mv + (1.0f - beta2) * gv; }
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

// The fused Lion step over rows of one matrix, for any mix of fp32 / INT8 weights and momentum:
// dequantize -> Lion -> requantize, with no fp32 copy of the matrix. Weights keep their row scale while the
// new values fit and grow it (counting the growth in `rescales`) only when a value would overflow ±127·scale.
// A row's largest value sits at ±127 after quantization, so a scale grown to exactly fit would overflow
// again on the next outward step and re-round the whole row every other step; growing by `growth`
// (> 1) leaves headroom so that rescaling stays rare.
//
// A row takes two passes, each computing every new value once from the old state, block by momentum block
// (each block's scale loaded once): pass 1 finds the largest new weight (INT8 weights only: it decides the row
// scale); pass 2 finds each block's largest new momentum, then writes the block's weights and momentum. Between
// them the row's data stays in L1, so the second pass costs arithmetic, not memory traffic. The element loops
// are plain loops over contiguous elements on the CPU, which g++ vectorizes, and warp-strided on the GPU.
struct LionRowStep {
  LionParams p;
  const float* g;      // (rows, cols) gradient
  float* w32;          // fp32 weights, or null for hybrid INT8 weights `w`
  HybridView w;
  float* m32;          // fp32 momentum, or null for block INT8 momentum `m`
  BlockView m;
  RoundingKey wkey, mkey;
  int64_t cols;
  int64_t row_base;    // global index of row 0: the rounding streams follow the global row
  uint32_t* rescales;  // (rows,) incremented where the row's scale grew; may be null
  const StepTotals* totals;  // backend memory: skip when not finite, clip; null: neither
  float growth = 1.0625f;  // new scale = growth * max|w| / 127 when a value overflows
  float grad_scale = 1.0f;  // set from totals when the step runs

  static constexpr int64_t kF32Block = 256;  // the blocks pass 2 walks when the momentum is fp32

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
      if (m32) return step_row<false, false>(row, r);
      return step_row<false, true>(row, r);
    }
    if (m32) return step_row<true, false>(row, r);
    step_row<true, true>(row, r);
  }

 private:
  // Row r with hybrid INT8 (kHybrid) or fp32 weights and block INT8 (kBlocks) or fp32 momentum.
  template <bool kHybrid, bool kBlocks, class Row>
  QFT_HD void step_row(const Row& row, int64_t r) const {
    // Locals, and restrict: the INT8 stores may alias anything as far as the compiler knows, which would make it
    // reload every parameter after each store and keep the loops scalar.
    const LionParams lp = p;
    const float gs = grad_scale;
    const float* QFT_RESTRICT gr = g + r * cols;
    int8_t* QFT_RESTRICT mq = kBlocks ? m.q + r * cols : nullptr;
    float* QFT_RESTRICT mr = kBlocks ? nullptr : m32 + r * cols;
    const int64_t block = kBlocks ? m.block : kF32Block, blocks = (cols + block - 1) / block;
    const float s = kHybrid ? w.scale[r] : 0.0f;
    int8_t* QFT_RESTRICT wq = kHybrid ? w.q + r * cols : nullptr;
    float* QFT_RESTRICT wr = kHybrid ? nullptr : w32 + r * cols;

    float s_new = s;
    if constexpr (kHybrid) {  // pass 1: the largest new dense weight, nothing written
      int32_t top = 0;
      for (int64_t blk = row.group(); blk < blocks; blk += row.groups()) {
        const int64_t i0 = blk * block, i1 = block_end(blk, block, cols);
        const float ms = kBlocks ? m.step(r, blk) : 0.0f;
        for (int64_t i = i0 + row.group_lane(); i < i1; i += row.group_width()) {
          const float mv = kBlocks ? float(mq[i]) * ms : mr[i];
          const int32_t mag = magnitude_bits(lp.new_weight(float(wq[i]) * s, lp.direction(mv, gr[i] * gs)));
          top = max_i32(top, mag & -int32_t(wq[i] != kOutlierSlot));  // outlier slots count 0
        }
      }
      const float mx = row.max(magnitude_of(top));
      s_new = mx > 127.0f * s ? growth * mx / 127.0f : s;
      for (int64_t k = w.row_ptr[r] + row.lane(); k < w.row_ptr[r + 1]; k += row.width()) {
        const int64_t i = w.col(k);  // outliers: exact fp32, few, so their momentum is read one by one
        const float mv = kBlocks ? m.get(r, i) : mr[i];
        w.val[k] = lp.new_weight(w.val[k], lp.direction(mv, gr[i] * gs));
      }
      row.sync();  // pass 1 and the outliers read the old momentum and block scales: only now may they change
    }

    const RowRandom wrandom(wkey, uint64_t(row_base + r)), mrandom(mkey, uint64_t(row_base + r));
    const float inv_s = kHybrid ? 1.0f / s_new : 0.0f;
    for (int64_t blk = row.group(); blk < blocks; blk += row.groups()) {  // pass 2
      const int64_t i0 = blk * block, i1 = block_end(blk, block, cols);
      const float ms = kBlocks ? m.step(r, blk) : 0.0f;
      float mmax = 0.0f, inv_m = 0.0f;
      if constexpr (kBlocks) {
        int32_t top = 0;
        for (int64_t i = i0 + row.group_lane(); i < i1; i += row.group_width()) {
          top = max_i32(top, magnitude_bits(lp.new_mom(float(mq[i]) * ms, gr[i] * gs)));
        }
        mmax = row.group_max(magnitude_of(top));
        inv_m = mmax > 0.0f ? 127.0f / mmax : 0.0f;
      }
      for (int64_t i = i0 + row.group_lane(); i < i1; i += row.group_width()) {
        const float mv = kBlocks ? float(mq[i]) * ms : mr[i], gv = gr[i] * gs, dir = lp.direction(mv, gv);
        if constexpr (kHybrid) {
          const int32_t q = wrandom.round(lp.new_weight(float(wq[i]) * s, dir) * inv_s, uint32_t(i));
          const int32_t outlier = -int32_t(wq[i] == kOutlierSlot);  // all ones at an outlier's slot, which stays
          wq[i] = int8_t((q & ~outlier) | (kOutlierSlot & outlier));
        } else {
          wr[i] = lp.new_weight(wr[i], dir);
        }
        if constexpr (kBlocks) {
          mq[i] = mrandom.round(lp.new_mom(mv, gv) * inv_m, uint32_t(i));
        } else {
          mr[i] = lp.new_mom(mv, gv);
        }
      }
      if constexpr (kBlocks) {
        row.group_sync();  // every lane of the group has read the old block scale
        if (row.group_lane() == 0) m.absmax[r * m.blocks_per_row() + blk] = mmax;
      }
    }
    if constexpr (kHybrid) {
      row.sync();
      if (row.lane() == 0) {
        w.scale[r] = s_new;
        if (rescales && s_new != s) rescales[r] += 1;
      }
    }
  }
};

}  // namespace qft
