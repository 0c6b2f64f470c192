#pragma once
// Owning INT8 tensors in backend memory: hybrid weight matrices and block-wise state.
#include <cstdint>
#include <vector>

#include "ops/backend.h"
#include "quant/int8.h"

namespace qft {

struct HybridMatrix {
  int64_t rows = 0, cols = 0, nnz = 0;
  bool col16 = true;  // column indices as uint16 (cols <= 65536) or int32
  Buffer q, scale, row_ptr, col, val;
  HybridView view(int64_t row0 = 0) const;  // the rows from row0 on
  size_t bytes() const { return q.bytes() + scale.bytes() + row_ptr.bytes() + col.bytes() + val.bytes(); }
};

// Keeps round(outlier_fraction * cols) entries of largest |w| per row in fp32; the rest of the row becomes
// symmetric INT8 with scale = absmax / 127, rounded to nearest. w is (rows, cols) in host memory.
HybridMatrix quantize_hybrid(Backend& be, const float* w, int64_t rows, int64_t cols, double outlier_fraction);
int64_t outliers_per_row(int64_t cols, double outlier_fraction);

struct BlockMatrix {
  int64_t rows = 0, cols = 0, block = 0;
  Buffer q, absmax;
  static BlockMatrix zeros(Backend& be, int64_t rows, int64_t cols, int64_t block);
  BlockView view(int64_t row0 = 0) const;
  size_t bytes() const { return q.bytes() + absmax.bytes(); }
};

}  // namespace qft
