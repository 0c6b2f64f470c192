#pragma once
// LoRA adapters (Hu et al., arXiv 2106.09685) on a frozen base: a targeted projection y = x W^T becomes
//   y = x W^T + s (x A^T) B^T,   A (r, in), B (out, r), s = alpha / r,
// with B = 0 at the start, so training begins at the base model. The adapters are the only trainable tensors.
// In the GSE format (GSQ-Tuning, arXiv 2502.12913; ops/gse.h) A and B are stored as GSE integers, and the
// activations and gradients entering each adapter product are quantized to GSE along that product's reduction
// dimension (activations to nearest, gradients stochastically: model/llama_lora.cpp), so that every adapter
// product is an integer GEMM.
#include <array>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/gse.h"

namespace qft {

// The projections an adapter may sit on, in PEFT's target_modules names.
enum class LoraTarget { Q, K, V, O, Gate, Up, Down };
constexpr int kLoraTargets = 7;
const char* lora_target_name(LoraTarget t);         // "q_proj", ...: PEFT's target_modules names
const char* lora_target_short_name(LoraTarget t);   // "q", ...: lora.targets' names
const char* lora_target_module(LoraTarget t);       // "self_attn.q_proj", ...: the module path in a layer

struct LoraSettings {
  int rank = 0;  // 0: no adapters (full fine-tuning)
  float alpha = 16.0f;
  std::array<bool, kLoraTargets> targets{};
  bool gse = true;     // GSE adapters and integer products; false: fp32 adapters, float products
  GseFormat format{};  // with gse
  uint64_t seed = 0;   // of A's initialisation
  bool enabled() const { return rank > 0; }
  float scaling() const { return alpha / float(rank); }
  bool operator==(const LoraSettings& o) const {
    return rank == o.rank && (rank == 0 || (alpha == o.alpha && targets == o.targets && gse == o.gse &&
                                            (!gse || (format.group == o.format.group && format.bits == o.format.bits))));
  }
};

// The name PEFT gives a layer's adapter tensor, A (r, in) or B (out, r), without its "base_model.model." prefix:
// model.layers.L.self_attn.q_proj.lora_A.weight.
std::string lora_tensor_name(int layer, LoraTarget t, bool is_b);

}  // namespace qft
