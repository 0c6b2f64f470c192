#pragma once
// cuBLASLt GEMMs for row-major fp32 matrices, with bf16 tensor-core math and fp32 accumulation
// (CUBLAS_COMPUTE_32F_FAST_16BF), or exact fp32 math for tests. Descriptors and the heuristic's algorithm are
// cached per shape, layout and pointer alignment.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "ops/gemm_args.h"

namespace qft::cuda {

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
