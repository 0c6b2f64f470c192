#pragma once
// cuBLASLt GEMMs for row-major matrices, strided-batched when asked: bf16 operands run on tensor cores with
// fp32 accumulation (CUBLAS_COMPUTE_32F), fp32 operands in exact fp32 (tests). The output may be fp32 or bf16.
// int8 operands with an int32 output run on the integer tensor cores (CUBLAS_COMPUTE_32I; beta 0 or 1), where
// cuBLASLt has a kernel for the layout: op(B)^T op(A)^T must be its "TN" case, with sizes and leading
// dimensions in multiples of 4. Descriptors and the heuristic's algorithm (or its absence) are cached per shape,
// storage types, strides and alignment.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "ops/gemm_args.h"

namespace qft::cuda {

class GemmEngine {
 public:
  // workspace: `workspace_bytes` of device memory that the caller owns and keeps while this lives
  GemmEngine(cudaStream_t stream, void* workspace, size_t workspace_bytes);
  ~GemmEngine();
  GemmEngine(const GemmEngine&) = delete;
  GemmEngine& operator=(const GemmEngine&) = delete;

  void run(const GemmArgs& g);  // throws DeviceError where cuBLASLt has no algorithm
  bool try_run(const GemmArgs& g);  // false, and nothing queued, where it has none
  size_t cached_plans() const { return plans_.size(); }

 private:
  // trans_a, trans_b, M, N, K, lda, ldb, ldc, beta != 0, alignment of A, B, C, operand and output dtypes,
  // batch, stride_a, stride_b, stride_c
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int, int, int, DType,
                         DType, int64_t, int64_t, int64_t, int64_t>;
  struct Plan {  // op null: cuBLASLt has no algorithm for the key
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  Plan* plan(const Key& k);
  static void destroy(Plan& p);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, Plan> plans_;
};

}  // namespace qft::cuda
