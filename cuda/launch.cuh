#pragma once
// Runs the shared functors of ops/kernels.h on the GPU: a grid-stride loop over elements, or one block per row.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/check.cuh"

namespace qft::cuda {

constexpr int kElementwiseThreads = 256;
constexpr int64_t kMaxElementwiseBlocks = int64_t(1) << 16;  // enough to fill any GPU; larger n loops
constexpr int kRowThreads = 256;  // a power of two, at least 32

// A thread block walking one row. Reductions are block-wide; they synchronize, so every thread calls them.
struct BlockRow {
  float* smem;  // kRowThreads / 32 floats
  __device__ int lane() const { return threadIdx.x; }
  __device__ int width() const { return blockDim.x; }
  template <class Op>
  __device__ float reduce(float v, Op op) const {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    __syncthreads();  // smem may still be read by a previous reduction
    if ((threadIdx.x & 31) == 0) smem[warp] = v;
    __syncthreads();
    v = smem[0];
    for (int w = 1; w < nwarps; ++w) v = op(v, smem[w]);
    return v;
  }
  __device__ float sum(float v) const { return reduce(v, [](float a, float b) { return a + b; }); }
  __device__ float max(float v) const { return reduce(v, [](float a, float b) { return a > b ? a : b; }); }
  __device__ void sync() const { __syncthreads(); }
  // Groups are warps: their reductions are shuffles, with no block-wide barrier.
  __device__ int group() const { return threadIdx.x / 32; }
  __device__ int groups() const { return blockDim.x / 32; }
  __device__ int group_lane() const { return threadIdx.x & 31; }
  __device__ int group_width() const { return 32; }
  __device__ float group_max(float v) const {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
  }
  __device__ void group_sync() const { __syncwarp(); }
};

template <class F>
static __global__ void elementwise_kernel(F f, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

template <class F>
static __global__ void rows_kernel(F f, int64_t rows) {
  __shared__ float smem[kRowThreads / 32];
  int64_t r = blockIdx.x;
  if (r < rows) f(BlockRow{smem}, r);
}

template <class F>
void launch_elementwise(const F& f, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t needed = (n + kElementwiseThreads - 1) / kElementwiseThreads;
  const int64_t blocks = needed < kMaxElementwiseBlocks ? needed : kMaxElementwiseBlocks;
  elementwise_kernel<<<unsigned(blocks), kElementwiseThreads, 0, stream>>>(f, n);
  QFT_CUDA_CHECK(cudaGetLastError());
}

template <class F>
void launch_rows(const F& f, int64_t rows, cudaStream_t stream) {
  if (rows <= 0) return;
  rows_kernel<<<unsigned(rows), kRowThreads, 0, stream>>>(f, rows);
  QFT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace qft::cuda
