#pragma once
// The Lion step (Chen et al. 2023), written once for both backends:
//   c = b1 m + (1 - b1) g;  theta -= lr (sign(c) + wd theta);  m = b2 m + (1 - b2) g
// sign(0) = 0, as in bitsandbytes. g is scaled by grad_scale first (gradient clipping).
#include "core/hd.h"

namespace qft {

struct LionParams {
  float lr = 1e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.99f;
  float weight_decay = 0.0f;
  float grad_scale = 1.0f;
};

QFT_HD float sign_hd(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

struct LionStepF32 {
  float* theta;
  float* m;
  const float* g;
  LionParams p;
  QFT_HD void operator()(int64_t i) const {
    float gi = g[i] * p.grad_scale;
    float c = p.beta1 * m[i] + (1.0f - p.beta1) * gi;
    theta[i] -= p.lr * (sign_hd(c) + p.weight_decay * theta[i]);
    m[i] = p.beta2 * m[i] + (1.0f - p.beta2) * gi;
  }
};

}  // namespace qft
