#include "cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace qft {

namespace {

// Row-major C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta C, split across the OpenMP threads by rows of C, or by
// columns when there are too few rows to share (decoding: M = 1). OpenBLAS runs single-threaded inside
// (cpu::use_one_blas_thread): one thread pool for BLAS and the loops, not two pools spinning against each other,
// which measured 3x slower on 2 cores. scripts/bench_gemm_split.cpp measured the split: by rows runs as fast as
// OpenBLAS's own threading from 256 rows up; at one row, only a split by columns uses the second core.
void sgemm(const GemmArgs& g, const float* A, const float* B, float* C) {
  constexpr int64_t kMinPerThread = 64;  // rows or columns per part, so that each part fills OpenBLAS's tiles
  const int64_t threads = omp_get_max_threads(), work = g.M * g.N * g.K;
  const bool by_rows = g.M >= kMinPerThread * threads || g.M >= g.N;
  const int64_t extent = by_rows ? g.M : g.N;
  const int64_t parts = work < (int64_t(1) << 18) ? 1 : std::clamp<int64_t>(extent / kMinPerThread, 1, threads);
  const CBLAS_TRANSPOSE ta = g.trans_a ? CblasTrans : CblasNoTrans, tb = g.trans_b ? CblasTrans : CblasNoTrans;
#pragma omp parallel for schedule(static) if (parts > 1)
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t i0 = extent * p / parts, i1 = extent * (p + 1) / parts;
    if (i1 == i0) continue;
    if (by_rows) {  // rows [i0, i1) of C and op(A)
      cblas_sgemm(CblasRowMajor, ta, tb, int(i1 - i0), int(g.N), int(g.K), 1.0f, g.trans_a ? A + i0 : A + i0 * g.lda,
                  int(g.lda), B, int(g.ldb), g.beta, C + i0 * g.ldc, int(g.ldc));
    } else {  // columns [i0, i1) of C and op(B)
      cblas_sgemm(CblasRowMajor, ta, tb, int(g.M), int(i1 - i0), int(g.K), 1.0f, A, int(g.lda),
                  g.trans_b ? B + i0 * g.ldb : B + i0, int(g.ldb), g.beta, C + i0, int(g.ldc));
    }
  }
}

// The elements a (rows, cols) matrix with leading dimension ld spans, widened to fp32 (bf16 operands).
std::vector<float> widen(CAct x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(size_t((rows - 1) * ld + cols));
  convert_to_f32(x.dtype, x.ptr, out.data(), out.size());
  return out;
}

}  // namespace

namespace cpu {

// OpenBLAS runs single-threaded inside sgemm above, see there.
void use_one_blas_thread() { openblas_set_num_threads(1); }

// bf16 operands are widened to fp32 and the fp32 result rounded back: the GPU's bf16 GEMMs also accumulate in fp32.
void run_gemm(const GemmArgs& g) {
  if (g.M == 0 || g.N == 0) return;
  for (int64_t i = 0; i < g.batch; ++i) {
    const CAct A = g.A + i * g.stride_a, B = g.B + i * g.stride_b;
    const Act C = g.C + i * g.stride_c;
    if (A.dtype == DType::F32 && C.dtype == DType::F32) {
      sgemm(g, A.as<float>(), B.as<float>(), C.as<float>());
      continue;
    }
    std::vector<float> a, b, c;
    const float* pa = A.as<float>();
    const float* pb = B.as<float>();
    if (A.dtype != DType::F32) {
      a = widen(A, g.trans_a ? g.K : g.M, g.trans_a ? g.M : g.K, g.lda);
      b = widen(B, g.trans_b ? g.N : g.K, g.trans_b ? g.K : g.N, g.ldb);
      pa = a.data();
      pb = b.data();
    }
    float* pc = C.as<float>();
    if (C.dtype != DType::F32) {
      c = g.beta != 0.0f ? widen(C, g.M, g.N, g.ldc) : std::vector<float>(size_t((g.M - 1) * g.ldc + g.N));
      pc = c.data();
    }
    sgemm(g, pa, pb, pc);
    if (C.dtype != DType::F32) {  // only the (M, N) elements: the gaps between rows belong to others
      for (int64_t r = 0; r < g.M; ++r) convert_from_f32(C.dtype, pc + r * g.ldc, (C + r * g.ldc).ptr, size_t(g.N));
    }
  }
}

void* alloc_aligned(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc needs a multiple of the alignment
  return std::aligned_alloc(64, rounded);
}

size_t available_bytes() {
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

}  // namespace cpu

}  // namespace qft
