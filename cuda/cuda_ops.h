#pragma once
// Public CUDA launchers for the shared functors, callable from files that never include CUDA headers.
// Pointers are device memory; every call runs on the given stream (nullptr: the legacy default stream).
#include <cstddef>
#include <cstdint>

#include "quant/int8.h"

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

// INT8 state (quant/int8.h): row-wise, one block per row
void dequantize_hybrid(float* out, const HybridView& w, Stream stream);
void quantize_blocks(const BlockView& b, const float* x, const RoundingKey& key, int64_t row_base, Stream stream);
void lion_step_rows(const LionRowStep& step, int64_t rows, Stream stream);

}  // namespace qft::cuda
