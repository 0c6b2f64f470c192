// Launchers for the forward ops. The arithmetic is in ops/kernels.h; this file only validates and launches.
#include "core/error.h"
#include "cuda/cuda_ops.h"
#include "cuda/launch.cuh"
#include "ops/kernels.h"

namespace qft::cuda {

void* device_malloc(size_t bytes) {
  void* p = nullptr;
  QFT_CUDA_CHECK(cudaMalloc(&p, bytes == 0 ? 1 : bytes));
  return p;
}

void device_free(void* p) { cudaFree(p); }

void copy_to_device(void* dst, const void* src, size_t bytes, Stream stream) {
  QFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
}

void copy_to_host(void* dst, const void* src, size_t bytes, Stream stream) {
  QFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  QFT_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void synchronize(Stream stream) { QFT_CUDA_CHECK(cudaStreamSynchronize(stream)); }

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, Stream stream) {
  launch_elementwise(SwigluForward{out, gate, up}, n, stream);
}

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps, Stream stream) {
  if (C <= 0) throw Error("rmsnorm_forward: C must be positive, got " + std::to_string(C));
  launch_rows(RmsNormForward{y, rstd, x, w, C, eps}, N, stream);
}

void cross_entropy_forward(float* loss, const float* logits, const int32_t* targets, int N, int V, Stream stream) {
  if (V <= 0) throw Error("cross_entropy_forward: V must be positive, got " + std::to_string(V));
  launch_rows(CrossEntropyForward{loss, nullptr, logits, targets, V}, N, stream);
}

}  // namespace qft::cuda
