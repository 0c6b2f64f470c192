#pragma once
// Every CUDA runtime and cuBLASLt call goes through these: a failure becomes a DeviceError naming the call
// and its file:line.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

namespace qft::cuda {

inline void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess) {
    throw DeviceError(std::string("CUDA error in ") + what + " at " + file + ":" + std::to_string(line) + ": " +
                      cudaGetErrorString(e));
  }
}

inline void check(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw DeviceError(std::string("cuBLASLt error in ") + what + " at " + file + ":" + std::to_string(line) + ": " +
                      cublasLtGetStatusString(s));
  }
}

}  // namespace qft::cuda

#define QFT_CUDA_CHECK(call) ::qft::cuda::check((call), #call, __FILE__, __LINE__)
