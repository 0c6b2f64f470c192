#pragma once
// Turns CUDA runtime errors into qft::Error with the call site.
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

namespace qft::cuda {

inline void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess) {
    throw Error(std::string("CUDA error in ") + what + " at " + file + ":" + std::to_string(line) + ": " +
                cudaGetErrorString(e));
  }
}

}  // namespace qft::cuda

#define QFT_CUDA_CHECK(call) ::qft::cuda::check((call), #call, __FILE__, __LINE__)
