#pragma once
// Element types and the float conversions used by the loaders and the kernels.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/hd.h"

namespace qft {

enum class DType : uint8_t { F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL, U16, U32 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // safetensors spelling: "F32", "BF16", ...
bool dtype_from_name(std::string_view name, DType* out);

QFT_HD float bits_to_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

QFT_HD uint32_t f32_to_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

QFT_HD float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }

// Round to nearest even, as torch does; NaN stays a quiet NaN.
QFT_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// bf16 as stored in backend memory: activations and dequantized weights on the GPU (layout-identical to
// __nv_bfloat16, so cuBLASLt reads it directly). Kernels load it to fp32, compute in fp32 and store with RNE.
struct bf16 {
  uint16_t bits;
};

QFT_HD float to_f32(float x) { return x; }
QFT_HD float to_f32(bf16 x) { return bf16_to_f32(x.bits); }
template <class T>
QFT_HD T from_f32(float x);
template <>
QFT_HD float from_f32<float>(float x) { return x; }
template <>
QFT_HD bf16 from_f32<bf16>(float x) { return bf16{f32_to_bf16(x)}; }

QFT_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_f32(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp == 0) {
    if (man == 0) return bits_to_f32(sign);
    float v = float(man) * (1.0f / 16777216.0f);  // subnormal: man * 2^-24
    return sign ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

// Round to nearest even with overflow to inf and gradual underflow.
QFT_HD uint16_t f32_to_f16(float f) {
  uint32_t u = f32_to_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (a < 0x38800000u) {                                    // below 2^-14: subnormal or zero
    if (a < 0x33000000u) return uint16_t(sign);             // below 2^-25 rounds to zero
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - int(a >> 23);  // 14..24
    uint32_t half = 1u << (shift - 1);
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t r = man >> shift;
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = ((a >> 13) - (112u << 10));
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return uint16_t(sign | r);
}

// Converts n elements of a floating dtype (F32, F16, BF16, F64) to fp32.
void convert_to_f32(DType src_type, const void* src, float* dst, size_t n);
// Converts n fp32 values to a floating dtype.
void convert_from_f32(DType dst_type, const float* src, void* dst, size_t n);

}  // namespace qft
