#pragma once
// cuBLASLt GEMMs for row-major fp32 matrices, with bf16 tensor-core math and fp32 accumulation
// (CUBLAS_COMPUTE_32F_FAST_16BF), or exact fp32 math for tests. Descriptors and the heuristic's algorithm are
// cached per shape, layout and pointer alignment.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

namespace qft::cuda {

// The CPU backend's convention: C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta C, all row-major with leading
// dimensions lda, ldb, ldc. op(A) = A^T when trans_a (A stored (K, M)).
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

class GemmEngine {
 public:
  GemmEngine(cudaStream_t stream, bool bf16_math);
  ~GemmEngine();
  GemmEngine(const GemmEngine&) = delete;
  GemmEngine& operator=(const GemmEngine&) = delete;

  void run(const GemmArgs& g);
  size_t cached_plans() const { return plans_.size(); }

 private:
  // trans_a, trans_b, M, N, K, lda, ldb, ldc, beta != 0, alignment of A, B, C
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int, int, int>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  Plan& plan(const Key& k);

  cudaStream_t stream_;
  bool bf16_math_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 32u << 20;  // cuBLAS's recommendation for Hopper
  std::map<Key, Plan> plans_;
};

}  // namespace qft::cuda
