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
