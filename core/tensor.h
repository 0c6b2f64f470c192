#pragma once
// Shapes and host tensors. Device memory lives in backend Buffers (ops/backend.h).
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace qft {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[4096, 11008]"

// A tensor in host memory that owns its bytes: loading, golden data, export.
struct HostTensor {
  DType dtype = DType::F32;
  Shape shape;
  std::vector<uint8_t> bytes;

  HostTensor() = default;
  HostTensor(DType t, Shape s);  // zero-filled

  int64_t numel() const { return shape_numel(shape); }
  template <class T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <class T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
  std::vector<float> to_f32() const;  // floating dtypes only
};

}  // namespace qft
