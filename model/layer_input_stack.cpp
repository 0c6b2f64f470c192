#include "model/layer_input_stack.h"

namespace qft {

LayerInputStack::LayerInputStack(Backend& be, StackStorage storage, int64_t values_per_layer)
    : be_(be),
      storage_(storage),
      n_(values_per_layer),
      as_is_(storage == StackStorage::Activations || (storage == StackStorage::Bf16 && be.act_dtype() == DType::BF16)) {}

CAct LayerInputStack::push(Buffer& x) {
  Entry e;
  if (as_is_) {
    e.values = std::move(x);
    x = be_.alloc_act(n_, "layer-input stack");
    entries_.push_back(std::move(e));
    return entries_.back().values.act();
  }
  if (storage_ == StackStorage::Bf16) {
    e.values = be_.alloc(size_t(n_) * 2, "layer-input stack");
    be_.convert(Act{e.values.get(), DType::BF16}, x.act(), n_);
  } else {
    e.values = be_.alloc(size_t(n_), "layer-input stack");
    e.scales = be_.alloc(PackedGroups::scale_bytes(n_), "layer-input stack");
    be_.quantize_groups({static_cast<int8_t*>(e.values.get()), e.scales.f32(), n_}, x.act());
  }
  entries_.push_back(std::move(e));
  return x.act();
}

CAct LayerInputStack::input(int layer, Buffer& widened) {
  const Entry& e = entries_.at(size_t(layer));
  if (as_is_) return e.values.act();
  if (!widened.get()) widened = be_.alloc_act(n_, "layer-input stack");
  if (storage_ == StackStorage::Bf16) {
    be_.convert(widened.act(), CAct{e.values.get(), DType::BF16}, n_);
  } else {
    be_.dequantize_groups(widened.act(), {static_cast<int8_t*>(e.values.get()), e.scales.f32(), n_});
  }
  return widened.act();
}

void LayerInputStack::pop(int layer) { entries_.at(size_t(layer)) = Entry{}; }

}  // namespace qft
