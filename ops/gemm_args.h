#pragma once
// The one GEMM convention of every backend (OpenBLAS on the CPU, cuBLASLt on the GPU).
#include <cstdint>

#include "ops/backend.h"

namespace qft {

// C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta C, all row-major with leading dimensions lda, ldb, ldc;
// op(A) = A^T when trans_a (A stored (K, M)), likewise B. A and B share a storage type; C may differ (fp32
// weight gradients from bf16 activations). Accumulation is fp32. With batch > 1, item i reads A + i * stride_a,
// B + i * stride_b and writes C + i * stride_c (strides in elements). On the GPU, A and B may also be int8 with an
// int32 C: exact integer sums (the GSE products, cuda/gse_gemm.cu).
struct GemmArgs {
  bool trans_a, trans_b;
  int64_t M, N, K;
  CAct A;
  int64_t lda;
  CAct B;
  int64_t ldb;
  float beta;
  Act C;
  int64_t ldc;
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

}  // namespace qft
