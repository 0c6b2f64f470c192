#pragma once
// Which rows of each parameter a rank owns when the optimizer state is sharded across ranks: contiguous, balanced
// ranges in rank order, [rows * r / N, rows * (r + 1) / N). The owner alone keeps those rows' momentum and
// gradient accumulators and updates them; a tensor of one row (a norm weight) belongs to the last rank.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qft {

struct RowRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool contains(int64_t row0, int64_t rows) const { return row0 >= begin && row0 + rows <= end; }
  // The part of [row0, row0 + rows) inside this range (empty at its clamp point when they do not meet).
  RowRange clip(int64_t row0, int64_t rows) const {
    const int64_t b = row0 > begin ? row0 : begin, e = row0 + rows < end ? row0 + rows : end;
    return b < e ? RowRange{b, e} : RowRange{b, b};
  }
};

struct RowShards {
  int rank = 0, world_size = 1;
  RowRange of(int64_t rows, int r) const { return {rows * r / world_size, rows * (r + 1) / world_size}; }
  RowRange mine(int64_t rows) const { return of(rows, rank); }
  // Each rank's part of rows [row0, row0 + n) of a tensor of `rows` rows, in bytes of data with bytes_per_row: the
  // block sizes of a collective over those rows, in rank order (the parts tile the range).
  std::vector<size_t> piece_bytes(int64_t rows, int64_t row0, int64_t n, int64_t bytes_per_row) const {
    std::vector<size_t> bytes(static_cast<size_t>(world_size));
    for (int r = 0; r < world_size; ++r) bytes[size_t(r)] = size_t(of(rows, r).clip(row0, n).size() * bytes_per_row);
    return bytes;
  }
  bool sharded() const { return world_size > 1; }
};

}  // namespace qft
