#pragma once
// INT8 training state, written once for both backends:
//  - hybrid rows for weight matrices: dense symmetric INT8 with one fp32 scale per row, plus per-row CSR
//    outliers kept exactly in fp32 (QFT's dense-and-sparse quantizer). The dense slot of an outlier holds
//    kOutlierSlot, so no search is needed to skip it.
//  - row-aligned block-wise INT8 for Lion momentum and gradient accumulators: blocks of `block` elements that
//    never straddle rows, one fp32 absmax each (bitsandbytes' layout when cols is a multiple of the block).
#include <cstdint>

#include "core/dtype.h"
#include "core/hd.h"
#include "ops/rounding.h"

namespace qft {

constexpr int8_t kOutlierSlot = -128;

struct HybridView {
  int8_t* q;               // (rows, cols)
  float* scale;            // (rows,)
  const int32_t* row_ptr;  // (rows + 1,) absolute offsets into col / val
  const void* col_idx;     // column indices in the narrowest type that holds cols - 1: 1, 2 or 4 bytes
  int col_bytes;
  float* val;              // (nnz,)
  int64_t rows, cols;
  QFT_HD int64_t col(int64_t k) const {
    if (col_bytes == 1) return static_cast<const uint8_t*>(col_idx)[k];
    if (col_bytes == 2) return static_cast<const uint16_t*>(col_idx)[k];
    return static_cast<const int32_t*>(col_idx)[k];
  }
};

// The end of block blk of a row of `cols` elements in blocks of `block` (the row's last block may be partial).
QFT_HD int64_t block_end(int64_t blk, int64_t block, int64_t cols) {
  const int64_t end = (blk + 1) * block;
  return end < cols ? end : cols;
}

struct BlockView {
  int8_t* q;       // (rows, cols)
  float* absmax;   // (rows, blocks_per_row)
  int64_t rows, cols, block;
  QFT_HD int64_t blocks_per_row() const { return (cols + block - 1) / block; }
  QFT_HD float step(int64_t r, int64_t blk) const { return absmax[r * blocks_per_row() + blk] * (1.0f / 127.0f); }
  QFT_HD float get(int64_t r, int64_t i) const { return float(q[r * cols + i]) * step(r, i / block); }
};

// out (rows, cols) = dense q * scale, with the outliers scattered in.
template <class T>  // float, or bf16 for a bf16 backend's compute copy
struct HybridDequantRows {
  T* out;
  HybridView w;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    const float s = w.scale[r];
    const int8_t* q = w.q + r * w.cols;
    T* o = out + r * w.cols;
    // An outlier's slot gets a zero here (a product with a 0/1 mask, not a branch, so that g++ vectorizes).
    for (int64_t i = row.lane(); i < w.cols; i += row.width()) {
      o[i] = from_f32<T>(float(q[i]) * s * float(q[i] != kOutlierSlot));
    }
    row.sync();
    for (int64_t k = w.row_ptr[r] + row.lane(); k < w.row_ptr[r + 1]; k += row.width()) {
      o[w.col(k)] = from_f32<T>(w.val[k]);
    }
  }
};

struct BlockDequantRows {
  float* out;
  BlockView b;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    const int8_t* q = b.q + r * b.cols;
    float* o = out + r * b.cols;
    for (int64_t blk = row.group(); blk < b.blocks_per_row(); blk += row.groups()) {
      const int64_t i0 = blk * b.block, i1 = block_end(blk, b.block, b.cols);
      const float step = b.step(r, blk);
      for (int64_t i = i0 + row.group_lane(); i < i1; i += row.group_width()) o[i] = float(q[i]) * step;
    }
  }
};

// Requantizes block blk of row r from its new values v(i, blk), i in [i0, i1): absmax = max |v|,
// q = round(v * 127 / absmax). One group of the row's lanes (a warp on the GPU) does the block: the blocks of a
// row go to its groups in turn, with no row-wide barrier. Each lane reads the old values of the elements it later
// writes before the group's reduction, and the absmax is written after every lane of the group has read the old one.
template <class Row, class Value>
QFT_HD void requantize_block(const Row& row, BlockView b, int64_t r, int64_t blk, const RowRandom& random,
                             const Value& v) {
  const int64_t i0 = blk * b.block, i1 = block_end(blk, b.block, b.cols);
  int32_t top = 0;
  for (int64_t i = i0 + row.group_lane(); i < i1; i += row.group_width()) top = max_i32(top, magnitude_bits(v(i, blk)));
  const float mx = row.group_max(magnitude_of(top));
  const float inv = mx > 0.0f ? 127.0f / mx : 0.0f;
  int8_t* q = b.q + r * b.cols;
  for (int64_t i = i0 + row.group_lane(); i < i1; i += row.group_width()) {
    q[i] = random.round(v(i, blk) * inv, uint32_t(i));
  }
  row.group_sync();
  if (row.group_lane() == 0) b.absmax[r * b.blocks_per_row() + blk] = mx;
}

// Every block of row r through requantize_block, each by one group of lanes. row_base is the global index of
// row 0, so that the random numbers of a row do not depend on the chunk of rows a call covers.
template <class Row, class Value>
QFT_HD void requantize_row(const Row& row, BlockView b, int64_t r, const RoundingKey& key, int64_t row_base,
                           const Value& v) {
  const RowRandom random(key, uint64_t(row_base + r));
  for (int64_t blk = row.group(); blk < b.blocks_per_row(); blk += row.groups()) {
    requantize_block(row, b, r, blk, random, v);
  }
}

// x (rows, cols) -> block-wise INT8.
struct BlockQuantizeRows {
  BlockView b;
  const float* x;
  RoundingKey key;
  int64_t row_base;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    const float* xr = x + r * b.cols;
    requantize_row(row, b, r, key, row_base, [&](int64_t i, int64_t) { return xr[i]; });
  }
};

// acc (block INT8) += g, requantized with stochastic rounding (INT8 gradient accumulators).
struct BlockAccumulateRows {
  BlockView acc;
  const float* g;
  RoundingKey key;
  int64_t row_base;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    const float* gr = g + r * acc.cols;
    const int8_t* q = acc.q + r * acc.cols;
    const BlockView a = acc;
    requantize_row(row, acc, r, key, row_base,
                   [&](int64_t i, int64_t blk) { return float(q[i]) * a.step(r, blk) + gr[i]; });
  }
};

}  // namespace qft
