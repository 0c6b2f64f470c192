#pragma once
// Runs the shared functors of ops/kernels.h on the host's cores.
#include <cstdint>

#include "ops/kernels.h"

namespace qft {

template <class F>
void parallel_for(int64_t n, const F& f) {
#pragma omp parallel for schedule(static) if (n > 4096)
  for (int64_t i = 0; i < n; ++i) f(i);
}

template <class F>
void parallel_rows(int64_t rows, const F& f) {
  const SerialRow row;
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) f(row, r);
}

}  // namespace qft
