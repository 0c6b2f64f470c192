#pragma once
// The CUDA backend, created without CUDA headers so that any file may ask for one.
#include <cstddef>
#include <memory>

#include "ops/backend.h"

namespace qft {

// The device memory a CUDA backend uses outside its tracked allocations: the context (~500 MiB on Hopper) and the
// libraries' code. An allowance until a GPU run measures it (scripts/gpu_check.sh prints it beside the measure).
constexpr size_t kCudaReservedBytes = size_t(568) << 20;
// The cuBLASLt workspace (cuBLAS's recommendation for Hopper): a tracked allocation, held from the backend's start.
constexpr size_t kCudaGemmWorkspaceBytes = size_t(32) << 20;

struct CudaOptions {
  int device = 0;
  bool debug_sync = false;  // synchronize after every op, so a fault names the op that caused it
  // Storage of activations and dequantized weights: BF16 (GEMMs on bf16 tensor cores with fp32 accumulation),
  // or F32 with exact fp32 GEMMs, which tests compare with the CPU reference.
  DType activations = DType::BF16;
  // Attention through cuDNN's fused SDPA where libcudnn loads and has a plan for the shape (bf16 activations);
  // qft's own otherwise, or with false.
  bool cudnn_attention = true;
};

// Throws UnsupportedError when qft was built without CUDA, DeviceError when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& options = {});

}  // namespace qft
