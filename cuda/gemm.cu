#include "cuda/check.cuh"
#include "cuda/gemm.cuh"

namespace qft::cuda {

namespace {

// The largest power of two (at most 256) that divides the address: what cuBLASLt's heuristic must assume.
int alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 4 && a % uintptr_t(al) != 0) al /= 2;
  return al;
}

cublasLtMatrixLayout_t layout(int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  QFT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, uint64_t(rows), uint64_t(cols), ld));
  return l;
}

}  // namespace

GemmEngine::GemmEngine(cudaStream_t stream, bool bf16_math) : stream_(stream), bf16_math_(bf16_math) {
  QFT_CUDA_CHECK(cublasLtCreate(&handle_));
  QFT_CUDA_CHECK(cudaMallocAsync(&workspace_, workspace_bytes_, stream_));
}

GemmEngine::~GemmEngine() {
  for (auto& [k, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
  }
  cudaFreeAsync(workspace_, stream_);
  cublasLtDestroy(handle_);
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt gets B as its first operand.
GemmEngine::Plan& GemmEngine::plan(const Key& k) {
  auto it = plans_.find(k);
  if (it != plans_.end()) return it->second;
  const auto [ta, tb, M, N, K, lda, ldb, ldc, accumulate, al_a, al_b, al_c] = k;
  Plan p;
  QFT_CUDA_CHECK(cublasLtMatmulDescCreate(
      &p.op, bf16_math_ ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_first = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  QFT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
  QFT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
  // Column-major shapes of what is stored: B^T is (N, K) untransposed, A^T is (K, M).
  p.a = tb ? layout(K, N, ldb) : layout(N, K, ldb);
  p.b = ta ? layout(M, K, lda) : layout(K, M, lda);
  p.c = layout(N, M, ldc);
  cublasLtMatmulPreference_t pref = nullptr;
  QFT_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint32_t al_first = uint32_t(al_b), al_second = uint32_t(al_a), al_out = uint32_t(al_c);
  QFT_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_,
                                                      sizeof workspace_bytes_));
  QFT_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_first, 4));
  QFT_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_second, 4));
  QFT_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_out, 4));
  QFT_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_out, 4));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  QFT_CUDA_CHECK(s);
  if (found == 0) {
    throw DeviceError("cuBLASLt has no algorithm for a GEMM of M=" + std::to_string(M) + " N=" + std::to_string(N) +
                      " K=" + std::to_string(K) + (accumulate ? " (accumulating)" : ""));
  }
  p.algo = result.algo;
  return plans_.emplace(k, p).first->second;
}

void GemmEngine::run(const GemmArgs& g) {
  if (g.M == 0 || g.N == 0) return;
  const Key k{g.trans_a, g.trans_b, g.M,          g.N,          g.K,          g.lda,
              g.ldb,     g.ldc,     g.beta != 0.f, alignment(g.A), alignment(g.B), alignment(g.C)};
  Plan& p = plan(k);
  const float alpha = 1.0f;
  QFT_CUDA_CHECK(cublasLtMatmul(handle_, p.op, &alpha, g.B, p.a, g.A, p.b, &g.beta, g.C, p.c, g.C, p.c, &p.algo,
                                workspace_, workspace_bytes_, stream_));
}

}  // namespace qft::cuda
