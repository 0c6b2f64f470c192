#pragma once
// How a model stores its weights (the parameter roles, model/params.h, say which tensors this applies to), the
// LoRA adapters it carries, and the layer inputs its backward pass keeps.
#include "model/lora.h"

namespace qft {

// The layer-input stack (train.stack_dtype): as the activations are stored, bf16 whatever they are, or INT8 values
// in groups sharing one scale (ops/stack_quant.h). 4 bits were measured and moved gradients by 55-62% (README).
enum class StackStorage { Activations, Bf16, Int8 };

struct WeightStorage {
  bool int8 = false;               // hybrid INT8 (dense INT8 + sparse fp32 outliers) for every matrix-role tensor
  double outlier_fraction = 0.01;  // per row, kept in fp32
  LoraSettings lora;               // adapters on a frozen base (train.method = lora); none by default
  bool operator==(const WeightStorage& o) const {
    return int8 == o.int8 && (!int8 || outlier_fraction == o.outlier_fraction) && lora == o.lora;
  }
};

}  // namespace qft
