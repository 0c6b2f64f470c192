#include <algorithm>

#include "cuda/gse_gemm.cuh"
#include "cuda/launch.cuh"
#include "ops/gemm_args.h"

namespace qft::cuda {

bool gse_matmul_int8(Backend& be, GemmEngine& gemm, cudaStream_t stream, float* c, const GseView& a, const GseView& b,
                     bool accumulate) {
  const int64_t M = a.rows, N = b.rows, K = a.cols, G = a.f.group, groups = a.groups();
  const int64_t full = K / G, tail = K - full * G;  // groups of G values, then a shorter last group
  // cuBLASLt's m is our N and its k a group's length; both, and the leading dimensions (K, N), in multiples of 4.
  if (N % 4 != 0 || G % 4 != 0 || tail % 4 != 0) return false;
  if (M == 0 || N == 0) return true;
  // Rows of C in blocks whose group sums take at most 32 MiB, as on the CPU.
  const int64_t block = std::clamp<int64_t>((int64_t(32) << 20) / (4 * groups * N), 1, M);
  Buffer sums = be.alloc(size_t(groups * block * N) * 4, "GSE group sums");  // (groups, rows, N) int32
  for (int64_t i0 = 0; i0 < M; i0 += block) {
    const int64_t n = std::min(block, M - i0);
    const int8_t* rows = a.m + i0 * K;
    bool served = true;
    // per group g < full: sums[g] (n, N) = A[:, g G : (g + 1) G] @ B[:, g G : (g + 1) G]^T
    if (full > 0) {
      served = gemm.try_run({false, true, n, N, G, CAct{rows, DType::I8}, K, CAct{b.m, DType::I8}, K, 0.0f,
                             Act{sums.i32(), DType::I32}, N, full, G, G, n * N});
    }
    if (served && tail > 0) {
      served = gemm.try_run({false, true, n, N, tail, CAct{rows + full * G, DType::I8}, K,
                             CAct{b.m + full * G, DType::I8}, K, 0.0f, Act{sums.i32() + full * n * N, DType::I32}, N});
    }
    if (!served) {
      if (i0 == 0) return false;  // C untouched: the caller computes it another way
      throw DeviceError("cuBLASLt has an int8 GEMM for " + std::to_string(block) + " rows but not for " +
                        std::to_string(n) + " (GSE product of K=" + std::to_string(K) + ", N=" + std::to_string(N) + ")");
    }
    launch_elementwise(GseAddGroups<int32_t>{c + i0 * N, sums.i32(), a.e + i0 * groups, b.e, n, N, groups, accumulate},
                       n * N, stream);
  }
  return true;
}

}  // namespace qft::cuda
