#pragma once
// The input of every layer, kept by the forward pass for the backward pass's recompute (train.stack_dtype): as
// the activations are stored, or narrower, (layers) x tokens x hidden values either way. At long context it is
// the largest thing a step holds besides the model state.
#include <vector>

#include "model/weight_storage.h"
#include "ops/backend.h"

namespace qft {

class LayerInputStack {
 public:
  LayerInputStack(Backend& be, StackStorage storage, int64_t values_per_layer);
  // Keeps x (n activations) as the input of the next layer and returns where that layer reads it. Kept as is, the
  // buffer itself moves into the stack and x becomes a fresh one for the layer's output; kept narrower, x is
  // copied and stays, so that the layer runs in place.
  CAct push(Buffer& x);
  // Layer l's input in the activation dtype: the kept buffer, or the narrow copy widened into `widened` (allocated
  // on first use, reused for every layer).
  CAct input(int layer, Buffer& widened);
  void pop(int layer);  // frees layer l's entry once its backward is done

 private:
  struct Entry {
    Buffer values, scales;
  };
  Backend& be_;
  StackStorage storage_;
  int64_t n_;
  bool as_is_;  // kept in the activation dtype itself
  std::vector<Entry> entries_;
};

}  // namespace qft
