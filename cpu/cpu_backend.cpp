#include "cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <vector>

#include "cpu/parallel.h"
#include "ops/attention_compose.h"
#include "ops/kernels_backward.h"

namespace qft {

namespace {

// Row-major C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta C, with the M rows split across the OpenMP threads.
// OpenBLAS runs single-threaded inside (see CpuBackend()): one thread pool for BLAS and the loops, not two
// pools spinning against each other, which measured 3x slower on 2 cores.
void gemm(const GemmArgs& g) {
  const int64_t work = g.M * g.N * g.K;
  const int64_t parts = work < (int64_t(1) << 18) ? 1 : std::min<int64_t>(g.M, omp_get_max_threads());
#pragma omp parallel for schedule(static) if (parts > 1)
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t m0 = g.M * p / parts, m1 = g.M * (p + 1) / parts;
    if (m1 == m0) continue;
    cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
                int(m1 - m0), int(g.N), int(g.K), 1.0f, g.trans_a ? g.A + m0 : g.A + m0 * g.lda, int(g.lda), g.B,
                int(g.ldb), g.beta, g.C + m0 * g.ldc, int(g.ldc));
  }
}

// The CPU's row launcher for the shared attention composition.
const auto cpu_rows = [](const auto& f, int64_t rows) { parallel_rows(rows, f); };

}  // namespace

CpuBackend::CpuBackend() { openblas_set_num_threads(1); }

void* CpuBackend::raw_alloc(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc needs a multiple of the alignment
  return std::aligned_alloc(64, rounded);
}

void CpuBackend::raw_free(void* p) { std::free(p); }

size_t CpuBackend::available_bytes() const {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return SIZE_MAX;  // no way to tell: do not refuse
  char key[64];
  unsigned long long kb = 0;
  size_t out = SIZE_MAX;
  while (std::fscanf(f, "%63s %llu kB\n", key, &kb) == 2) {
    if (std::strcmp(key, "MemAvailable:") == 0) {
      out = size_t(kb) * 1024;
      break;
    }
  }
  std::fclose(f);
  return out;
}

// Empty copies are allowed (an empty vector's data() may be null, and memcpy(nullptr, ...) is undefined).
void CpuBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuBackend::zero(void* dst, size_t bytes) {
  if (bytes) std::memset(dst, 0, bytes);
}

void CpuBackend::matmul_forward(float* out, const float* inp, const float* weight, int N, int I, int O) {
  // (N, I) @ (O, I)^T -> (N, O)
  gemm({false, true, N, O, I, inp, I, weight, I, 0.0f, out, O});
}

void CpuBackend::embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C) {
  parallel_for(int64_t(N) * C, EmbeddingForward{out, tokens, table, C});
}

void CpuBackend::rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps) {
  parallel_rows(N, RmsNormForward{y, rstd, x, w, C, eps});
}

void CpuBackend::rope(float* x, const int32_t* pos, const float* inv_freq, int N, int H, int D, bool backward) {
  parallel_for(int64_t(N) * H * (D / 2), Rope{x, pos, inv_freq, H, D, backward ? -1.0f : 1.0f});
}

void CpuBackend::attention_forward(const AttentionParams& p) { compose_attention_forward(p, gemm, cpu_rows); }

void CpuBackend::attention_decode(const DecodeAttentionParams& p) {
  parallel_rows(int64_t(p.n) * p.H, DecodeAttention{p.out, p.scratch, p.q, p.k, p.v, p.past, p.H, p.KVH, p.D, p.max_t,
                                                    1.0f / std::sqrt(float(p.D))});
}

void CpuBackend::swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  parallel_for(n, SwigluForward{out, gate, up});
}

void CpuBackend::residual_add(float* x, const float* y, int64_t n) { parallel_for(n, ResidualAdd{x, y}); }

void CpuBackend::cross_entropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int N,
                                       int V) {
  parallel_rows(N, CrossEntropyForward{loss, lse, logits, targets, V});
}

// ---- backward ----

void CpuBackend::matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int I, int O,
                                       bool accumulate) {
  // (N, O) @ (O, I) -> (N, I)
  gemm({false, false, N, I, O, dout, O, weight, I, accumulate ? 1.0f : 0.0f, dinp, I});
}

void CpuBackend::matmul_backward_weight(float* dweight, const float* dout, const float* inp, int N, int I, int O,
                                        bool accumulate) {
  // (N, O)^T @ (N, I) -> (O, I)
  gemm({true, false, O, I, N, dout, O, inp, I, accumulate ? 1.0f : 0.0f, dweight, I});
}

void CpuBackend::rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w,
                                  const float* rstd, int N, int C, bool accumulate_dx) {
  parallel_rows(N, RmsNormBackwardInput{dx, dy, x, w, rstd, C, accumulate_dx});
  if (dw) parallel_for(C, RmsNormBackwardWeight{dw, dy, x, rstd, N, C});
}

void CpuBackend::attention_backward(const AttentionBackwardParams& p) {
  compose_attention_backward(*this, p, gemm, cpu_rows);
}

void CpuBackend::swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                 int64_t n) {
  parallel_for(n, SwigluBackward{dgate, dup, dout, gate, up});
}

void CpuBackend::cross_entropy_backward(float* logits, const float* lse, const int32_t* targets, int N, int cols,
                                        int v0, int V, float scale) {
  parallel_for(int64_t(N) * cols, CrossEntropyBackward{logits, lse, targets, V, v0, cols, scale});
}

void CpuBackend::embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int N, int C, int v0,
                                    int rows) {
  parallel_for(C, EmbeddingBackward{dtable, dout, tokens, N, C, v0, rows});
}

void CpuBackend::lion_step(float* theta, float* m, const float* g, int64_t n, const LionParams& p) {
  parallel_for(n, LionStepF32{theta, m, g, p});
}

double CpuBackend::sum_squares(const float* x, int64_t n) {
  std::vector<float> partial(size_t((n + 1023) / 1024));
  parallel_for(int64_t(partial.size()), SquaredNormPartial{partial.data(), x, n});
  double s = 0;
  for (float v : partial) s += v;
  return s;
}

// ---- INT8 state ----

void CpuBackend::dequantize_hybrid(float* out, const HybridView& w) { parallel_rows(w.rows, HybridDequantRows{out, w}); }

void CpuBackend::dequantize_blocks(float* out, const BlockView& b) { parallel_rows(b.rows, BlockDequantRows{out, b}); }

void CpuBackend::quantize_blocks(const BlockView& b, const float* x, const RoundingKey& key, int64_t row_base) {
  parallel_rows(b.rows, BlockQuantizeRows{b, x, key, row_base});
}

void CpuBackend::accumulate_blocks(const BlockView& acc, const float* g, const RoundingKey& key, int64_t row_base) {
  parallel_rows(acc.rows, BlockAccumulateRows{acc, g, key, row_base});
}

void CpuBackend::lion_step_rows(const LionRowStep& step, int64_t rows) { parallel_rows(rows, step); }

}  // namespace qft
