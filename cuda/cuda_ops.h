#pragma once
// Public CUDA launchers for the shared functors, callable from files that never include CUDA headers.
// Pointers are device memory; every call runs on the given stream (nullptr: the legacy default stream).
#include <cstddef>
#include <cstdint>

struct CUstream_st;

namespace qft::cuda {

using Stream = CUstream_st*;

void* device_malloc(size_t bytes);  // throws qft::Error
void device_free(void* p);
void copy_to_device(void* dst, const void* src, size_t bytes, Stream stream);
void copy_to_host(void* dst, const void* src, size_t bytes, Stream stream);
void synchronize(Stream stream);

// Elementwise: out = silu(gate) * up
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, Stream stream);
// Row-wise: y = w * x / rms(x); rstd may be null
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps, Stream stream);
// Row-wise: loss per row of (N, V) logits
void cross_entropy_forward(float* loss, const float* logits, const int32_t* targets, int N, int V, Stream stream);

}  // namespace qft::cuda
