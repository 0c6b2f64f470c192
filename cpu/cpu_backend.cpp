#include "cpu/cpu_backend.h"

#include <cblas.h>

#include <cstdlib>
#include <cstring>

#include "cpu/parallel.h"

namespace qft {

void* CpuBackend::raw_alloc(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc needs a multiple of the alignment
  return std::aligned_alloc(64, rounded);
}

void CpuBackend::raw_free(void* p) { std::free(p); }

void CpuBackend::copy_to_device(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

void CpuBackend::matmul_forward(float* out, const float* inp, const float* weight, int N, int I, int O) {
  // (N, I) @ (O, I)^T -> (N, O)
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, I, 1.0f, inp, I, weight, I, 0.0f, out, O);
}

void CpuBackend::embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C) {
  parallel_for(int64_t(N) * C, EmbeddingForward{out, tokens, table, C});
}

void CpuBackend::rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps) {
  parallel_rows(N, RmsNormForward{y, rstd, x, w, C, eps});
}

void CpuBackend::rope_forward(float* x, const int32_t* pos, const float* inv_freq, int N, int H, int D) {
  parallel_for(int64_t(N) * H * (D / 2), RopeForward{x, pos, inv_freq, H, D});
}

void CpuBackend::attention_forward(const AttentionParams& p) {
  const int64_t T = p.T, D = p.D, group = p.H / p.KVH;
  const int64_t q_stride = int64_t(p.H) * D, kv_stride = int64_t(p.KVH) * D;
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.H; ++h) {
      const float* q = p.q + b * T * q_stride + h * D;
      const float* k = p.k + b * T * kv_stride + (h / group) * D;
      float* s = p.scratch + (b * p.H + h) * T * T;
      // scores (T, T) = q (T, D) @ k (T, D)^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, q, q_stride, k, kv_stride, 0.0f, s, T);
    }
  }
  const float scale = 1.0f / std::sqrt(float(D));
  parallel_rows(int64_t(p.B) * p.H * T, AttentionSoftmax{p.scratch, p.doc_start, T, p.H, scale});
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.H; ++h) {
      const float* v = p.v + b * T * kv_stride + (h / group) * D;
      const float* s = p.scratch + (b * p.H + h) * T * T;
      float* o = p.out + b * T * q_stride + h * D;
      // out (T, D) = probs (T, T) @ v (T, D)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, s, T, v, kv_stride, 0.0f, o, q_stride);
    }
  }
}

void CpuBackend::swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  parallel_for(n, SwigluForward{out, gate, up});
}

void CpuBackend::residual_add(float* x, const float* y, int64_t n) { parallel_for(n, ResidualAdd{x, y}); }

void CpuBackend::cross_entropy_forward(float* loss, const float* logits, const int32_t* targets, int N, int V) {
  parallel_rows(N, CrossEntropyForward{loss, logits, targets, V});
}

}  // namespace qft
