#pragma once
// QFT_HD marks arithmetic that both g++ and nvcc compile: the single source of every kernel's math.
#ifdef __CUDACC__
#define QFT_HD __host__ __device__ __forceinline__
#else
#define QFT_HD inline
#endif

// Pointers a loop's stores cannot alias (int8 stores alias everything in C++, which keeps loops scalar).
#define QFT_RESTRICT __restrict__

#include <cmath>
#include <cstdint>

namespace qft {

QFT_HD float rsqrt_hd(float x) {
#ifdef __CUDA_ARCH__
  return rsqrtf(x);
#else
  return 1.0f / std::sqrt(x);
#endif
}

QFT_HD float exp_hd(float x) {
#ifdef __CUDA_ARCH__
  return expf(x);
#else
  return std::exp(x);
#endif
}

// Reinterprets the bits of a 32-bit value: a register move where memcpy would stop g++'s vectorizer.
template <class To, class From>
QFT_HD To bits_as(From v) {
#ifdef __CUDACC__  // nvcc's passes: the portable spelling
  To out;
  __builtin_memcpy(&out, &v, sizeof out);
  return out;
#else
  return __builtin_bit_cast(To, v);
#endif
}

// e^x without branches, floor or conversions, so that g++ vectorizes the loops that call it (attention's
// exponentials; floor and float-to-int conversions stop its vectorizer without -ffast-math): 2^n * e^f with
// n = round(x / ln 2) taken from the bits of x / ln 2 + 1.5 * 2^23, f = x - n ln 2 in two parts (Cody-Waite), e^f by
// its Taylor series to f^7 (|f| <= 0.347: truncation 5e-9 relative, under fp32's 6e-8). x is clamped to [-87, 88];
// below, e^-87 = 1.6e-38 stands for 0. On the GPU, expf.
QFT_HD float exp_fast(float x) {
#ifdef __CUDA_ARCH__
  return expf(x);
#else
  x = x < 88.0f ? x : 88.0f;
  x = x > -87.0f ? x : -87.0f;
  const float shifted = x * 1.44269504f + 12582912.0f;  // the integer nearest x / ln 2, in the low mantissa bits
  const float n = shifted - 12582912.0f;
  const float f = (x - n * 0.693145751953125f) - n * 1.42860677e-06f;
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const int32_t exponent = bits_as<int32_t>(shifted) - 0x4B400000 + 127;  // n + 127, within [1, 254]
  return p * bits_as<float>(int32_t(uint32_t(exponent) << 23));
#endif
}

QFT_HD float log_hd(float x) {
#ifdef __CUDA_ARCH__
  return logf(x);
#else
  return std::log(x);
#endif
}

QFT_HD double sqrt_hd(double x) {
#ifdef __CUDA_ARCH__
  return sqrt(x);
#else
  return std::sqrt(x);
#endif
}

QFT_HD bool finite_hd(double x) {
#ifdef __CUDA_ARCH__
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

QFT_HD float max_hd(float a, float b) { return a > b ? a : b; }

}  // namespace qft
