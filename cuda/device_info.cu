#include <cublasLt.h>
#include <cuda_runtime.h>

#include "cuda/device_info.h"

namespace qft {

DeviceInfo probe_cuda() {
  DeviceInfo info;
  info.compiled = true;
  cudaRuntimeGetVersion(&info.runtime_version);
  info.cublaslt_version = int(cublasLtGetVersion());
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    info.error = cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error so a later probe starts clean
    return info;
  }
  info.device_count = n;
  if (n == 0) {
    info.error = "no CUDA device";
    return info;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) info.device_name = prop.name;
  return info;
}

}  // namespace qft
