#pragma once
// The optimizer's typed settings, mapped from the run config once (RunConfig::optimizer_settings).
#include <cstdint>

namespace qft {

struct OptimizerSettings {
  float beta1 = 0.9f, beta2 = 0.99f;
  float weight_decay = 0.0f;
  bool decay_norms = false;     // weight decay on tensors whose role is exempt by default (norms, biases) too
  bool momentum_int8 = false;   // block-wise INT8 momentum for matrix-role tensors (the rest keep fp32)
  bool grad_int8 = false;       // block-wise INT8 gradient accumulators for matrix-role tensors
  int64_t block_size = 256;
  bool stochastic = true;       // stochastic rounding of every INT8 write; false: nearest
  uint64_t seed = 0;            // of the rounding
  bool adamw = false;           // AdamW (two fp32 moments, for LoRA adapters) instead of Lion
};

}  // namespace qft
