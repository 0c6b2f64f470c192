#pragma once
// AdamW (Loshchilov & Hutter), element by element over fp32 weights and moments, in PyTorch's order:
//   theta *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   theta -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// The optimizer LoRA users expect (train.optimizer = adamw); its two fp32 moments suit small adapters, not the
// full model, which Lion's one INT8 momentum serves. With a step's totals, g is first scaled to clip the norm.
#include "core/hd.h"
#include "ops/lion.h"

namespace qft {

struct AdamwParams {
  float lr = 1e-4f;
  float beta1 = 0.9f, beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  float bias1 = 1.0f, bias2 = 1.0f;  // 1 - beta^t of this step (t from 1)
  double max_grad_norm = 0.0;        // as LionParams'
};

struct AdamwStep {
  AdamwParams p;
  const float* g;                   // (n,) gradient
  float* w;                         // (n,) weights
  float* m;                         // (n,) first moment
  float* v;                         // (n,) second moment
  const StepTotals* totals;         // backend memory: skip when not finite, clip; null: neither
  QFT_HD void operator()(int64_t i) const {
    float grad_scale = 1.0f;
    if (totals) {
      if (!totals->finite()) return;
      grad_scale = totals->clip_factor(p.max_grad_norm);
    }
    const float gi = g[i] * grad_scale;
    const float mi = p.beta1 * m[i] + (1.0f - p.beta1) * gi;
    const float vi = p.beta2 * v[i] + (1.0f - p.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float decayed = w[i] * (1.0f - p.lr * p.weight_decay);
    w[i] = decayed - p.lr * (mi / p.bias1) / (sqrtf(vi / p.bias2) + p.eps);
  }
};

}  // namespace qft
