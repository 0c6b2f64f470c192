#include "core/tensor.h"

namespace qft {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

HostTensor::HostTensor(DType t, Shape s)
    : dtype(t), shape(std::move(s)), bytes(size_t(shape_numel(shape)) * dtype_size(t), 0) {}

std::vector<float> HostTensor::to_f32() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  convert_to_f32(dtype, bytes.data(), out.data(), out.size());
  return out;
}

}  // namespace qft
