#pragma once
// Owning INT8 tensors in backend memory: hybrid weight matrices, block-wise state and GSE matrices.
#include <cstdint>
#include <string>
#include <vector>

#include "ops/backend.h"
#include "ops/int8.h"

namespace qft {

// A GSE matrix (ops/gse.h): int8 mantissas (rows, cols) and one int8 exponent per group of each row.
struct GseMatrix {
  int64_t rows = 0, cols = 0;
  GseFormat format{};
  Buffer m, e;
  static GseMatrix allocate(Backend& be, int64_t rows, int64_t cols, GseFormat f, const char* tag);
  int64_t groups() const { return (cols + format.group - 1) / format.group; }
  // Rows [row0, row0 + rows) of it (all rows from row0 when rows < 0).
  GseView view(int64_t row0 = 0, int64_t n = -1) const {
    return {static_cast<int8_t*>(m.get()) + row0 * cols, static_cast<int8_t*>(e.get()) + row0 * groups(),
            n < 0 ? rows - row0 : n, cols, format};
  }
  size_t bytes() const { return m.bytes() + e.bytes(); }
};

struct HybridMatrix {
  int64_t rows = 0, cols = 0, nnz = 0;
  int col_bytes = 2;  // column indices as uint8 (cols <= 256), uint16 (cols <= 65536) or int32
  Buffer q, scale, row_ptr, col, val;
  HybridView view(int64_t row0 = 0) const;  // the rows from row0 on
  size_t bytes() const { return q.bytes() + scale.bytes() + row_ptr.bytes() + col.bytes() + val.bytes(); }
};

// Allocates a hybrid matrix with round(outlier_fraction * cols) outliers per row, contents undefined. Every
// hybrid matrix is sized here, so the memory planner and real runs allocate the same bytes.
HybridMatrix allocate_hybrid(Backend& be, int64_t rows, int64_t cols, double outlier_fraction,
                             const char* tag = "weights");
// Fills m from w (rows, cols) in host memory: the k entries of largest |w| per row stay fp32 outliers; the rest
// of the row becomes symmetric INT8 with scale = absmax / 127, rounded to nearest.
void quantize_hybrid_into(Backend& be, HybridMatrix& m, const float* w, double outlier_fraction);
// m's row pointers for the same number of outliers in every row (allocate_hybrid's layout): row r's start at
// r * nnz / rows. For rows assembled from parts (a gathered or a sharded matrix) whose columns and values are in place.
void set_uniform_row_ptr(Backend& be, HybridMatrix& m);
HybridMatrix quantize_hybrid(Backend& be, const float* w, int64_t rows, int64_t cols, double outlier_fraction);
int64_t outliers_per_row(int64_t cols, double outlier_fraction);

// Why a hybrid matrix read from a file (its parts in host memory, as HybridView lays them out) is unusable, or ""
// when it is sound: row pointers from 0, non-decreasing, ending at nnz; each row's columns in range, increasing and
// marked kOutlierSlot in q (and no other entry so marked); scales positive and finite; outliers finite. Kernels
// index memory with these, so a file must pass this before any of it reaches a backend.
std::string hybrid_problem(const HybridView& m, int64_t nnz);
// The same for block-wise INT8 state: absmax finite and non-negative.
std::string block_problem(const BlockView& m);

struct BlockMatrix {
  int64_t rows = 0, cols = 0, block = 0;
  Buffer q, absmax;
  static BlockMatrix zeros(Backend& be, int64_t rows, int64_t cols, int64_t block, const char* tag);
  BlockView view(int64_t row0 = 0) const;
  size_t bytes() const { return q.bytes() + absmax.bytes(); }
};

}  // namespace qft
