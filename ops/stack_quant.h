#pragma once
// The layer-input stack in INT8 (train.stack_dtype), written once for both backends. Values go in groups
// of kStackGroup consecutive elements, each with one fp32 scale, absmax / qmax: a token's hidden row splits into
// groups of its own when the hidden size is a multiple of the group (every LLaMA's is), so one outlier channel
// costs precision only to the 63 values beside it, not to the whole token. Rounding is to nearest: the stack is
// read once, by the recompute, and no update accumulates its error.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/hd.h"

namespace qft {

constexpr int64_t kStackGroup = 64;

// n values as INT8, one scale per group.
struct PackedGroups {
  int8_t* q;
  float* scale;
  int64_t n;
  QFT_HD static int64_t groups_of(int64_t n) { return (n + kStackGroup - 1) / kStackGroup; }
  QFT_HD int64_t groups() const { return groups_of(n); }
  static size_t scale_bytes(int64_t n) { return size_t(groups_of(n)) * sizeof(float); }
};

// One group per call: its absmax, its scale, its values rounded to nearest.
template <class T>
struct QuantizeGroups {
  PackedGroups p;
  const T* x;
  QFT_HD void operator()(int64_t g) const {
    const int64_t i0 = g * kStackGroup, i1 = i0 + kStackGroup < p.n ? i0 + kStackGroup : p.n;
    float absmax = 0.0f;
    for (int64_t i = i0; i < i1; ++i) absmax = max_hd(absmax, fabsf(to_f32(x[i])));
    const float qmax = 127.0f, inv = absmax > 0.0f ? qmax / absmax : 0.0f;
    p.scale[g] = absmax / qmax;
    for (int64_t i = i0; i < i1; ++i) {
      float v = to_f32(x[i]) * inv;
      v = v < qmax ? v : qmax;  // NaN becomes qmax: no undefined conversion
      v = v > -qmax ? v : -qmax;
      p.q[i] = int8_t(v >= 0.0f ? int(v + 0.5f) : -int(0.5f - v));
    }
  }
};

// x[i] = q[i] * scale of its group.
template <class T>
struct DequantizeGroups {
  T* x;
  PackedGroups p;
  QFT_HD void operator()(int64_t i) const { x[i] = from_f32<T>(float(p.q[i]) * p.scale[i / kStackGroup]); }
};

}  // namespace qft
