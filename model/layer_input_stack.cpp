#include "model/layer_input_stack.h"

namespace qft {

LayerInputStack::LayerInputStack(Backend& be, StackStorage storage, bool offload, int64_t values_per_layer)
    : be_(be),
      storage_(storage),
      offload_(offload),
      n_(values_per_layer),
      as_is_(storage == StackStorage::Activations || (storage == StackStorage::Bf16 && be.act_dtype() == DType::BF16)) {
  value_bytes_ = as_is_ ? be.act_bytes(n_) : storage == StackStorage::Bf16 ? size_t(n_) * 2 : size_t(n_);
  scale_bytes_ = !as_is_ && storage == StackStorage::Int8 ? PackedGroups::scale_bytes(n_) : 0;
}

Buffer LayerInputStack::keep(size_t bytes) {
  return offload_ ? be_.alloc_host(bytes, "layer-input stack") : be_.alloc(bytes, "layer-input stack");
}

LayerInputStack::Narrow LayerInputStack::staging() {
  if (!staged_values_.get()) {
    staged_values_ = be_.alloc(value_bytes_, "layer-input stack");
    if (scale_bytes_) staged_scales_ = be_.alloc(scale_bytes_, "layer-input stack");
  }
  return {staged_values_.get(), staged_scales_.f32()};
}

void LayerInputStack::narrow(const Narrow& to, CAct x) {
  if (storage_ == StackStorage::Int8) {
    be_.quantize_groups({static_cast<int8_t*>(to.values), to.scales, n_}, x);
  } else {
    be_.convert(Act{to.values, DType::BF16}, x, n_);
  }
}

void LayerInputStack::widen(Act x, const Narrow& from) {
  if (storage_ == StackStorage::Int8) {
    be_.dequantize_groups(x, {static_cast<int8_t*>(from.values), from.scales, n_});
  } else {
    be_.convert(x, CAct{from.values, DType::BF16}, n_);
  }
}

CAct LayerInputStack::push(Buffer& x) {
  Entry e;
  if (as_is_ && !offload_) {
    e.values = std::move(x);
    x = be_.alloc_act(n_, "layer-input stack");
    entries_.push_back(std::move(e));
    return entries_.back().values.act();
  }
  e.values = keep(value_bytes_);
  if (scale_bytes_) e.scales = keep(scale_bytes_);
  if (as_is_) {
    be_.offload(e.values.get(), x.get(), value_bytes_);
  } else if (!offload_) {
    narrow({e.values.get(), e.scales.f32()}, x.act());
  } else {
    // The staging is rewritten by the next push only after this offload: both are queued in order.
    const Narrow staged = staging();
    narrow(staged, x.act());
    be_.offload(e.values.get(), staged.values, value_bytes_);
    if (scale_bytes_) be_.offload(e.scales.get(), staged.scales, scale_bytes_);
  }
  entries_.push_back(std::move(e));
  return x.act();
}

CAct LayerInputStack::input(int layer, Buffer& widened) {
  const Entry& e = entries_.at(size_t(layer));
  if (as_is_ && !offload_) return e.values.act();
  if (!widened.get()) widened = be_.alloc_act(n_, "layer-input stack");
  if (as_is_) {
    be_.reload(widened.get(), e.values.get(), value_bytes_);
  } else if (!offload_) {
    widen(widened.act(), {e.values.get(), e.scales.f32()});
  } else {
    const Narrow staged = staging();
    be_.reload(staged.values, e.values.get(), value_bytes_);
    if (scale_bytes_) be_.reload(staged.scales, e.scales.get(), scale_bytes_);
    widen(widened.act(), staged);
  }
  return widened.act();
}

void LayerInputStack::pop(int layer) { entries_.at(size_t(layer)) = Entry{}; }

}  // namespace qft
