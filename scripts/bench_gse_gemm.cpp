// The integer GEMM of GSE LoRA (gse_matmul, ops/gse.h) on the CPU backend (cpu/cpu_gse.cpp) and on the reference
// (one output per call, ops/gse.h), side by side with OpenBLAS's fp32 GEMM
// on the same shapes: the six adapter products of one SmolLM2-135M-shaped projection (in 576, out 1536, r 16) at
// 1024 tokens, and one base-sized product. Both run on every core (qft's OpenMP; OpenBLAS's own threads).
//   cmake --build build-cpu --target qft_bench_gse && build-cpu/qft_bench_gse
// Prints the best of 9 runs of each, GOP/s (2 M N K per product) and the CPU backend's ratio to fp32.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/cpu_backend.h"
#include "quant/quantized.h"

using namespace qft;

namespace {

struct Shape {
  const char* name;
  int64_t M, N, K;  // C (M, N) = A (M, K) @ B (N, K)^T
};

template <class F>
double best_seconds(F&& f) {
  double best = 1e30;
  for (int run = 0; run < 9; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main() {
  const Shape shapes[] = {
      {"forward x A^T      (1024,576)x(16,576)^T", 1024, 16, 576},
      {"forward u B^T      (1024,16)x(1536,16)^T", 1024, 1536, 16},
      {"backward dout B    (1024,1536)x(16,1536)^T", 1024, 16, 1536},
      {"backward dout^T u  (1536,1024)x(16,1024)^T", 1536, 16, 1024},
      {"backward du^T x    (16,1024)x(576,1024)^T", 16, 576, 1024},
      {"backward du A      (1024,16)x(576,16)^T", 1024, 576, 16},
      {"base-sized         (1024,576)x(1536,576)^T", 1024, 1536, 576},
  };
  CpuBackend be;
  CpuReference reference;
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  const GseFormat f{32, 8};
  openblas_set_num_threads(omp_get_max_threads());
  std::printf("%d threads; GSE groups of %d, %d bits\n", omp_get_max_threads(), f.group, f.bits);
  std::printf("%-46s %12s %12s %12s %8s\n", "product", "ref GOP/s", "GSE GOP/s", "fp32 GFLOP/s", "ratio");
  for (const Shape& s : shapes) {
    std::vector<float> a(size_t(s.M * s.K)), b(size_t(s.N * s.K)), c(size_t(s.M * s.N));
    for (float& x : a) x = normal(rng);
    for (float& x : b) x = normal(rng);
    Buffer da = be.alloc(a.size() * 4, "bench"), db = be.alloc(b.size() * 4, "bench");
    be.copy_to_device(da.get(), a.data(), a.size() * 4);
    be.copy_to_device(db.get(), b.data(), b.size() * 4);
    const GseMatrix ga = GseMatrix::allocate(be, s.M, s.K, f, "bench"), gb = GseMatrix::allocate(be, s.N, s.K, f, "bench");
    be.gse_quantize(ga.view(), CAct{da.get(), DType::F32}, {0, 0, 0, false}, 0);
    be.gse_quantize(gb.view(), CAct{db.get(), DType::F32}, {0, 0, 0, false}, 0);
    Buffer dc = be.alloc(c.size() * 4, "bench");
    const double t_gse = best_seconds([&] { be.gse_matmul(dc.f32(), ga.view(), gb.view(), false); });
    const double t_ref = best_seconds([&] { reference.gse_matmul(dc.f32(), ga.view(), gb.view(), false); });
    const double t_f32 = best_seconds([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(s.M), int(s.N), int(s.K), 1.0f, a.data(), int(s.K),
                  b.data(), int(s.K), 0.0f, c.data(), int(s.N));
    });
    const double ops = 2.0 * double(s.M) * double(s.N) * double(s.K) * 1e-9;
    std::printf("%-46s %12.1f %12.1f %12.1f %8.2f\n", s.name, ops / t_ref, ops / t_gse, ops / t_f32, t_f32 / t_gse);
  }
  return 0;
}
