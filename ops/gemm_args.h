#pragma once
// The one GEMM convention of every backend (OpenBLAS on the CPU, cuBLASLt on the GPU).
#include <cstdint>

namespace qft {

// C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta C, all row-major with leading dimensions lda, ldb, ldc;
// op(A) = A^T when trans_a (A stored (K, M)), likewise B.
struct GemmArgs {
  bool trans_a, trans_b;
  int64_t M, N, K;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
};

}  // namespace qft
