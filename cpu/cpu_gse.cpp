// The integer product of two GSE operands (ops/gse.h) on the CPU, bit for bit the reference's (GseMatmul): each
// group's mantissa products are summed by OpenBLAS's sgemm on the mantissas as fp32. That is exact: a product is an
// integer below 2^14 and every partial sum of a group an integer below 2^24 (G <= 1040 at 8 bits), which fp32 holds
// whatever the order of the sums, so sgemm returns the int32 sums themselves. The groups are then scaled by their
// exponents and added in group order, as the reference adds them. sgemm runs the multiply-adds at the speed of the
// fp32 GEMMs, where the reference walks one output at a time.
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "cpu/parallel.h"
#include "ops/gemm_args.h"

namespace qft {

namespace {

// Rows of x's mantissas as fp32 by group: (groups, rows, G), the last group's tail zero (adding 0 changes no sum).
void unpack_groups(float* out, const GseView& x, int64_t row0, int64_t rows) {
  const int64_t G = x.f.group, groups = x.groups(), K = x.cols;
  parallel_for(groups * rows, [&](int64_t gi) {
    const int64_t g = gi / rows, r = gi % rows;
    const int8_t* m = x.m + (row0 + r) * K + g * G;
    float* dst = out + gi * G;
    const int64_t len = std::min(G, K - g * G);
    for (int64_t k = 0; k < len; ++k) dst[k] = float(m[k]);
    for (int64_t k = len; k < G; ++k) dst[k] = 0.0f;
  });
}

}  // namespace

void CpuBackend::gse_matmul(float* c, const GseView& a, const GseView& b, bool accumulate) {
  const OpScope scope(*this, "gse_matmul");
  if (const std::string problem = gse_matmul_problem(a, b); !problem.empty()) throw Error(problem);
  const int64_t M = a.rows, N = b.rows, G = a.f.group, groups = a.groups();
  if (M == 0 || N == 0) return;
  std::vector<float> bg(size_t(groups * N * G));  // (groups, N, G)
  unpack_groups(bg.data(), b, 0, N);
  // Rows of C in blocks whose per-group sums take at most 32 MiB.
  const int64_t block = std::clamp<int64_t>((int64_t(32) << 20) / (4 * groups * (N + G)), 1, M);
  std::vector<float> ag(size_t(groups * block * G)), sums(size_t(groups * block * N));  // (groups, rows, G | N)
  for (int64_t i0 = 0; i0 < M; i0 += block) {
    const int64_t n = std::min(block, M - i0);
    unpack_groups(ag.data(), a, i0, n);
    // per group g: sums[g] (n, N) = ag[g] (n, G) @ bg[g] (N, G)^T
    cpu::run_gemm({false, true, n, N, G, CAct{ag.data(), DType::F32}, G, CAct{bg.data(), DType::F32}, G, 0.0f,
                   Act{sums.data(), DType::F32}, N, groups, n * G, N * G, n * N});
    const GseAddGroups<float> add{c + i0 * N, sums.data(), a.e + i0 * groups, b.e, n, N, groups, accumulate};
    parallel_for(n * N, [&](int64_t i) { add(i); });
  }
}

}  // namespace qft
