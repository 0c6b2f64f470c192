#include "cuda/check.cuh"
#include "cuda/gemm.cuh"

namespace qft::cuda {

namespace {

// The largest power of two (at most 256) that divides the address of every batch item: what cuBLASLt's
// heuristic may assume.
int alignment(const void* p, int64_t stride_bytes, int64_t batch) {
  auto a = reinterpret_cast<uintptr_t>(p);
  if (batch > 1) a |= uintptr_t(stride_bytes);
  int al = 256;
  while (al > 2 && a % uintptr_t(al) != 0) al /= 2;
  return al;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::BF16: return CUDA_R_16BF;
    case DType::I8: return CUDA_R_8I;
    case DType::I32: return CUDA_R_32I;
    default: return CUDA_R_32F;
  }
}

cublasLtMatrixLayout_t layout(DType t, int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  QFT_CUDA_CHECK(cublasLtMatrixLayoutCreate(&l, cuda_type(t), uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    const int32_t count = int32_t(batch);
    QFT_CUDA_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
    QFT_CUDA_CHECK(
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  return l;
}

}  // namespace

GemmEngine::GemmEngine(cudaStream_t stream, void* workspace, size_t workspace_bytes)
    : stream_(stream), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  QFT_CUDA_CHECK(cublasLtCreate(&handle_));
}

GemmEngine::~GemmEngine() {
  for (auto& [k, p] : plans_) destroy(p);
  cublasLtDestroy(handle_);
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt gets B as its first operand.
GemmEngine::Plan* GemmEngine::plan(const Key& k) {
  auto it = plans_.find(k);
  if (it != plans_.end()) return it->second.op ? &it->second : nullptr;
  const auto [ta, tb, M, N, K, lda, ldb, ldc, accumulate, al_a, al_b, al_c, in_type, out_type, batch, sa, sb, sc] = k;
  Plan p;
  const bool integer = in_type == DType::I8;  // int32 accumulation and int32 alpha, beta
  QFT_CUDA_CHECK(cublasLtMatmulDescCreate(&p.op, integer ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F,
                                          integer ? CUDA_R_32I : CUDA_R_32F));
  const cublasOperation_t op_first = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  QFT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
  QFT_CUDA_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
  // Column-major shapes of what is stored: B^T is (N, K) untransposed, A^T is (K, M).
  p.a = tb ? layout(in_type, K, N, ldb, batch, sb) : layout(in_type, N, K, ldb, batch, sb);
  p.b = ta ? layout(in_type, M, K, lda, batch, sa) : layout(in_type, K, M, lda, batch, sa);
  p.c = layout(out_type, N, M, ldc, batch, sc);
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
  // cuBLAS reports a shape it has no kernel for either way, as no result or as unsupported.
  if (s != CUBLAS_STATUS_NOT_SUPPORTED) QFT_CUDA_CHECK(s);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || found == 0) {
    destroy(p);
    plans_.emplace(k, Plan{});  // remembered: the heuristic is not asked again
    return nullptr;
  }
  p.algo = result.algo;
  return &plans_.emplace(k, p).first->second;
}

void GemmEngine::destroy(Plan& p) {
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  if (p.op) cublasLtMatmulDescDestroy(p.op);
  p = Plan{};
}

void GemmEngine::run(const GemmArgs& g) {
  if (try_run(g)) return;
  throw DeviceError("cuBLASLt has no algorithm for a GEMM of M=" + std::to_string(g.M) + " N=" + std::to_string(g.N) +
                    " K=" + std::to_string(g.K) + " batch=" + std::to_string(g.batch) + " " + dtype_name(g.A.dtype) +
                    "->" + dtype_name(g.C.dtype) + (g.beta != 0.f ? " (accumulating)" : ""));
}

bool GemmEngine::try_run(const GemmArgs& g) {
  if (g.M == 0 || g.N == 0) return true;
  const int64_t in = int64_t(dtype_size(g.A.dtype)), out = int64_t(dtype_size(g.C.dtype));
  const Key k{g.trans_a,
              g.trans_b,
              g.M,
              g.N,
              g.K,
              g.lda,
              g.ldb,
              g.ldc,
              g.beta != 0.f,
              alignment(g.A.ptr, g.stride_a * in, g.batch),
              alignment(g.B.ptr, g.stride_b * in, g.batch),
              alignment(g.C.ptr, g.stride_c * out, g.batch),
              g.A.dtype,
              g.C.dtype,
              g.batch,
              g.stride_a,
              g.stride_b,
              g.stride_c};
  const Plan* p = plan(k);
  if (!p) return false;
  const float alpha = 1.0f;
  const int32_t alpha_int = 1, beta_int = int32_t(g.beta);
  const bool integer = g.A.dtype == DType::I8;
  QFT_CUDA_CHECK(cublasLtMatmul(handle_, p->op, integer ? static_cast<const void*>(&alpha_int) : &alpha, g.B.ptr, p->a,
                                g.A.ptr, p->b, integer ? static_cast<const void*>(&beta_int) : &g.beta, g.C.ptr, p->c,
                                g.C.ptr, p->c, &p->algo, workspace_, workspace_bytes_, stream_));
  return true;
}

}  // namespace qft::cuda
