// How to share an fp32 GEMM between the cores on the CPU backend (cpu/cpu_backend.cpp): OpenBLAS single-threaded
// in OpenMP parts split by rows of C, or by columns, against OpenBLAS's own threads, on the GEMMs of a training
// step of the SmolLM2-135M shape (hidden 576, intermediate 1536, kv 192) at 1 (decoding) to 4096 token rows.
//   g++ -O2 -fopenmp -I/usr/include/x86_64-linux-gnu/openblas-pthread scripts/bench_gemm_split.cpp \
//       -o /tmp/bench_gemm_split -lopenblas && /tmp/bench_gemm_split
// Prints GFLOP/s per strategy, the best of 15 runs each.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

namespace {

enum class Split { Rows, Columns, BlasThreads };

struct Shape {
  const char* name;
  bool trans_a, trans_b;
  int M, N, K;
};

// C (M, N) = op(A) op(B), row-major, with the work shared as `split` says.
void gemm(Split split, const Shape& s, const float* A, const float* B, float* C) {
  const int lda = s.trans_a ? s.M : s.K, ldb = s.trans_b ? s.K : s.N;
  const CBLAS_TRANSPOSE ta = s.trans_a ? CblasTrans : CblasNoTrans, tb = s.trans_b ? CblasTrans : CblasNoTrans;
  const int parts = omp_get_max_threads();
  if (split == Split::BlasThreads) {
    openblas_set_num_threads(parts);
    cblas_sgemm(CblasRowMajor, ta, tb, s.M, s.N, s.K, 1.0f, A, lda, B, ldb, 0.0f, C, s.N);
    openblas_set_num_threads(1);
    return;
  }
  const int extent = split == Split::Rows ? s.M : s.N;
#pragma omp parallel for schedule(static)
  for (int p = 0; p < parts; ++p) {
    const int i0 = int(int64_t(extent) * p / parts), i1 = int(int64_t(extent) * (p + 1) / parts);
    if (i1 == i0) continue;
    if (split == Split::Rows) {
      cblas_sgemm(CblasRowMajor, ta, tb, i1 - i0, s.N, s.K, 1.0f, s.trans_a ? A + i0 : A + int64_t(i0) * lda, lda, B,
                  ldb, 0.0f, C + int64_t(i0) * s.N, s.N);
    } else {
      cblas_sgemm(CblasRowMajor, ta, tb, s.M, i1 - i0, s.K, 1.0f, A, lda, s.trans_b ? B + int64_t(i0) * ldb : B + i0,
                  ldb, 0.0f, C + i0, s.N);
    }
  }
}

}  // namespace

int main() {
  openblas_set_num_threads(1);
  std::vector<Shape> shapes;
  for (int rows : {1, 256, 1024, 4096}) {
    shapes.push_back({"forward C -> C", false, true, rows, 576, 576});
    shapes.push_back({"forward C -> kv", false, true, rows, 192, 576});
    shapes.push_back({"forward C -> I", false, true, rows, 1536, 576});
    shapes.push_back({"forward I -> C", false, true, rows, 576, 1536});
    if (rows == 1) {
      shapes.push_back({"forward LM head", false, true, 1, 49152, 576});
      continue;
    }
    shapes.push_back({"backward input C <- I", false, false, rows, 576, 1536});
    shapes.push_back({"backward weight (I, C)", true, false, 1536, 576, rows});
    shapes.push_back({"backward weight (kv, C)", true, false, 192, 576, rows});
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::printf("%d threads; GFLOP/s, best of 15\n%-24s %5s %5s %5s %8s %8s %8s\n", omp_get_max_threads(), "gemm", "M",
              "N", "K", "rows", "columns", "openblas");
  for (const Shape& s : shapes) {
    std::vector<float> A(size_t(s.M) * s.K), B(size_t(s.K) * s.N), C(size_t(s.M) * s.N);
    for (float& x : A) x = normal(rng);
    for (float& x : B) x = normal(rng);
    double gflops[3];
    for (Split split : {Split::Rows, Split::Columns, Split::BlasThreads}) {
      double best = 1e30;
      for (int run = 0; run < 15; ++run) {
        const auto t0 = std::chrono::steady_clock::now();
        gemm(split, s, A.data(), B.data(), C.data());
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      gflops[int(split)] = 2.0 * s.M * s.N * s.K / best / 1e9;
    }
    std::printf("%-24s %5d %5d %5d %8.1f %8.1f %8.1f\n", s.name, s.M, s.N, s.K, gflops[0], gflops[1], gflops[2]);
  }
}
