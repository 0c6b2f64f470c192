#pragma once
// The integer product of two GSE operands (ops/gse.h) on the integer tensor cores: cuBLASLt's int8 GEMM with int32
// accumulation sums each group's mantissa products (one strided batch over the groups), and GseAddGroups scales
// the sums by their exponents and adds them in group order: bit for bit the reference's GseMatmul.
#include <cuda_runtime.h>

#include "cuda/gemm.cuh"
#include "ops/backend.h"

namespace qft::cuda {

// C (M, N) = A (M, K) @ B (N, K)^T, or C += with accumulate. False, with nothing queued and C untouched, where
// cuBLASLt has no int8 kernel for the shapes (its sizes and leading dimensions come in multiples of 4).
bool gse_matmul_int8(Backend& be, GemmEngine& gemm, cudaStream_t stream, float* c, const GseView& a, const GseView& b,
                     bool accumulate);

}  // namespace qft::cuda
