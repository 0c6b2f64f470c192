#pragma once
// The input of every layer, kept by the forward pass for the backward pass's recompute (train.stack_dtype): as
// the activations are stored, or narrower, (layers) x tokens x hidden values either way. At long context it is
// the largest thing a step holds besides the model state, so it may also live in host memory
// (train.stack_offload, as Unsloth offloads its checkpoints): the device then holds one layer's worth.
#include <vector>

#include "model/weight_storage.h"
#include "ops/backend.h"

namespace qft {

class LayerInputStack {
 public:
  LayerInputStack(Backend& be, StackStorage storage, bool offload, int64_t values_per_layer);
  // Keeps x (n activations) as the input of the next layer and returns where that layer reads it. Kept as is on
  // the device, the buffer itself moves into the stack and x becomes a fresh one for the layer's output; else x
  // is copied and stays, so that the layer runs in place.
  CAct push(Buffer& x);
  // Layer l's input in the activation dtype: the kept buffer, or the stored copy brought back and widened into
  // `widened` (allocated on first use, reused for every layer).
  CAct input(int layer, Buffer& widened);
  void pop(int layer);  // frees layer l's entry once its backward is done

 private:
  struct Entry {
    Buffer values, scales;  // device memory, or host memory when offloaded
  };
  // Where narrowed values are written and widened from: an entry's own memory, or the device staging that
  // offloaded entries pass through.
  struct Narrow {
    void* values;
    float* scales;
  };
  Buffer keep(size_t bytes);
  Narrow staging();
  void narrow(const Narrow& to, CAct x);
  void widen(Act x, const Narrow& from);

  Backend& be_;
  StackStorage storage_;
  bool offload_;
  int64_t n_;
  bool as_is_;  // kept in the activation dtype itself
  size_t value_bytes_, scale_bytes_;
  Buffer staged_values_, staged_scales_;  // device side of offloaded entries, one layer's
  std::vector<Entry> entries_;
};

}  // namespace qft
