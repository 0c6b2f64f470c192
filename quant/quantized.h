#pragma once
// Owning INT8 tensors in backend memory: hybrid weight matrices and block-wise state.
#include <cstdint>
#include <vector>

#include "ops/backend.h"
#include "ops/int8.h"

namespace qft {

struct HybridMatrix {
  int64_t rows = 0, cols = 0, nnz = 0;
  int col_bytes = 2;  // column indices as uint8 (cols <= 256), uint16 (cols <= 65536) or int32
  Buffer q, scale, row_ptr, col, val;
  HybridView view(int64_t row0 = 0) const;  // the rows from row0 on
  size_t bytes() const { return q.bytes() + scale.bytes() + row_ptr.bytes() + col.bytes() + val.bytes(); }
};

// Allocates a hybrid matrix with round(outlier_fraction * cols) outliers per row, contents undefined. Every
// hybrid matrix is sized here, so the memory planner and real runs allocate the same bytes.
HybridMatrix allocate_hybrid(Backend& be, int64_t rows, int64_t cols, double outlier_fraction);
// Fills m from w (rows, cols) in host memory: the k entries of largest |w| per row stay fp32 outliers; the rest
// of the row becomes symmetric INT8 with scale = absmax / 127, rounded to nearest.
void quantize_hybrid_into(Backend& be, HybridMatrix& m, const float* w, double outlier_fraction);
HybridMatrix quantize_hybrid(Backend& be, const float* w, int64_t rows, int64_t cols, double outlier_fraction);
int64_t outliers_per_row(int64_t cols, double outlier_fraction);

struct BlockMatrix {
  int64_t rows = 0, cols = 0, block = 0;
  Buffer q, absmax;
  static BlockMatrix zeros(Backend& be, int64_t rows, int64_t cols, int64_t block, const char* tag);
  BlockView view(int64_t row0 = 0) const;
  size_t bytes() const { return q.bytes() + absmax.bytes(); }
};

}  // namespace qft
