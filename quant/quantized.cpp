#include "quant/quantized.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <functional>

#include "core/error.h"

namespace qft {

namespace {

// The k-th largest of |w| (cols,), 0 < k <= cols: a min-heap of the k largest so far. With k about 1% of a row,
// almost every value loses one comparison with the heap's top, far cheaper than a selection over the whole row.
float kth_largest_magnitude(const float* w, int64_t cols, int64_t k, std::vector<float>& heap) {
  heap.resize(size_t(k));
  for (int64_t i = 0; i < k; ++i) heap[size_t(i)] = std::fabs(w[i]);
  std::make_heap(heap.begin(), heap.end(), std::greater<float>());
  for (int64_t i = k; i < cols; ++i) {
    const float a = std::fabs(w[i]);
    if (a <= heap.front()) continue;
    std::pop_heap(heap.begin(), heap.end(), std::greater<float>());
    heap.back() = a;
    std::push_heap(heap.begin(), heap.end(), std::greater<float>());
  }
  return heap.front();
}

// One row (cols,): the k entries of largest |w| become fp32 outliers (col, val) in column order, ties going to the
// lower column; the rest become symmetric INT8 q with scale = absmax / 127, rounded to nearest. heap is scratch.
// Selecting by the k-th largest magnitude keeps the comparisons on plain floats (no index indirection).
void quantize_row(const float* w, int64_t cols, int64_t k, std::vector<float>& heap, int8_t* q, float* scale,
                  int32_t* col, float* val) {
  float threshold = INFINITY;  // the k-th largest |w|; every |w| above it is an outlier
  int64_t ties = 0;            // how many entries equal to the threshold are outliers too, lowest columns first
  if (k > 0) {
    threshold = kth_largest_magnitude(w, cols, k, heap);
    int64_t above = 0;
    for (int64_t i = 0; i < cols; ++i) above += std::fabs(w[i]) > threshold;
    ties = k - above;
  }
  float absmax = 0.0f;
  int64_t n = 0;
  for (int64_t i = 0; i < cols; ++i) {
    const float a = std::fabs(w[i]);
    const bool outlier = a > threshold || (a == threshold && ties > 0);
    if (outlier) {
      ties -= a == threshold;
      col[n] = int32_t(i);
      val[n] = w[i];
      ++n;
    } else {
      absmax = std::max(absmax, a);
    }
  }
  const float s = std::max(absmax / 127.0f, FLT_MIN);
  *scale = s;
  for (int64_t i = 0; i < cols; ++i) q[i] = int8_t(std::rint(std::clamp(w[i] / s, -127.0f, 127.0f)));  // to nearest even
  for (int64_t j = 0; j < k; ++j) q[col[j]] = kOutlierSlot;
}

}  // namespace

int64_t outliers_per_row(int64_t cols, double outlier_fraction) {
  return std::min<int64_t>(cols, int64_t(std::llround(outlier_fraction * double(cols))));
}

HybridView HybridMatrix::view(int64_t row0) const {
  auto* q8 = static_cast<int8_t*>(q.get());
  return {q8 + row0 * cols,
          scale.f32() + row0,
          row_ptr.i32() + row0,
          col.get(),
          col_bytes,
          val.f32(),
          rows - row0,
          cols};
}

void set_uniform_row_ptr(Backend& be, HybridMatrix& m) {
  const int64_t k = m.rows > 0 ? m.nnz / m.rows : 0;
  std::vector<int32_t> row_ptr(static_cast<size_t>(m.rows) + 1);
  for (size_t r = 0; r < row_ptr.size(); ++r) row_ptr[r] = int32_t(int64_t(r) * k);
  be.copy_to_device(m.row_ptr.get(), row_ptr.data(), row_ptr.size() * 4);
}

GseMatrix GseMatrix::allocate(Backend& be, int64_t rows, int64_t cols, GseFormat f, const char* tag) {
  GseMatrix g;
  g.rows = rows;
  g.cols = cols;
  g.format = f;
  g.m = be.alloc(size_t(rows * cols), tag);
  g.e = be.alloc(size_t(rows * g.groups()), tag);
  return g;
}

HybridMatrix allocate_hybrid(Backend& be, int64_t rows, int64_t cols, double outlier_fraction, const char* tag) {
  if (outlier_fraction < 0 || outlier_fraction > 0.5) throw Error("quant.outlier_fraction must lie in [0, 0.5]");
  HybridMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.nnz = rows * outliers_per_row(cols, outlier_fraction);
  m.col_bytes = cols <= 256 ? 1 : (cols <= 65536 ? 2 : 4);
  m.q = be.alloc(size_t(rows * cols), tag);
  m.scale = be.alloc(size_t(rows) * 4, tag);
  m.row_ptr = be.alloc(size_t(rows + 1) * 4, tag);
  m.col = be.alloc(size_t(m.nnz) * size_t(m.col_bytes), tag);
  m.val = be.alloc(size_t(m.nnz) * 4, tag);
  return m;
}

void quantize_hybrid_into(Backend& be, HybridMatrix& m, const float* w, double outlier_fraction) {
  const int64_t rows = m.rows, cols = m.cols, k = outliers_per_row(cols, outlier_fraction);
  if (m.nnz != rows * k) throw Error("quantize_hybrid_into: matrix allocated for another outlier fraction");
  std::vector<int8_t> q(static_cast<size_t>(rows * cols));
  std::vector<float> scale(static_cast<size_t>(rows)), val(static_cast<size_t>(m.nnz));
  std::vector<int32_t> row_ptr(static_cast<size_t>(rows) + 1), col32(static_cast<size_t>(m.nnz));
  for (int64_t r = 0; r <= rows; ++r) row_ptr[size_t(r)] = int32_t(r * k);
  // Rows are independent and each is a pure function of its values: how threads split them changes nothing.
#pragma omp parallel
  {
    std::vector<float> heap;  // one per thread
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      quantize_row(w + r * cols, cols, k, heap, q.data() + r * cols, &scale[size_t(r)], col32.data() + r * k,
                   val.data() + r * k);
    }
  }
  be.copy_to_device(m.q.get(), q.data(), q.size());
  be.copy_to_device(m.scale.get(), scale.data(), scale.size() * 4);
  be.copy_to_device(m.row_ptr.get(), row_ptr.data(), row_ptr.size() * 4);
  be.copy_to_device(m.val.get(), val.data(), val.size() * 4);
  if (m.col_bytes == 1) {
    const std::vector<uint8_t> c8(col32.begin(), col32.end());
    be.copy_to_device(m.col.get(), c8.data(), c8.size());
  } else if (m.col_bytes == 2) {
    const std::vector<uint16_t> c16(col32.begin(), col32.end());
    be.copy_to_device(m.col.get(), c16.data(), c16.size() * 2);
  } else {
    be.copy_to_device(m.col.get(), col32.data(), col32.size() * 4);
  }
}

HybridMatrix quantize_hybrid(Backend& be, const float* w, int64_t rows, int64_t cols, double outlier_fraction) {
  HybridMatrix m = allocate_hybrid(be, rows, cols, outlier_fraction);
  quantize_hybrid_into(be, m, w, outlier_fraction);
  return m;
}

BlockMatrix BlockMatrix::zeros(Backend& be, int64_t rows, int64_t cols, int64_t block, const char* tag) {
  if (block <= 0) throw Error("quant.block_size must be positive");
  BlockMatrix b;
  b.rows = rows;
  b.cols = cols;
  b.block = block;
  b.q = be.alloc(size_t(rows * cols), tag);
  be.zero(b.q.get(), b.q.bytes());
  b.absmax = be.alloc(size_t(rows * ((cols + block - 1) / block)) * 4, tag);
  be.zero(b.absmax.get(), b.absmax.bytes());
  return b;
}

BlockView BlockMatrix::view(int64_t row0) const {
  const int64_t bpr = (cols + block - 1) / block;
  return {static_cast<int8_t*>(q.get()) + row0 * cols, absmax.f32() + row0 * bpr, rows - row0, cols, block};
}

}  // namespace qft

namespace qft {

std::string hybrid_problem(const HybridView& m, int64_t nnz) {
  if (m.row_ptr[0] != 0) return "row_ptr[0] is " + std::to_string(m.row_ptr[0]) + ", not 0";
  for (int64_t r = 0; r < m.rows; ++r) {
    const int64_t k0 = m.row_ptr[r], k1 = m.row_ptr[r + 1];
    if (k1 < k0 || k1 > nnz) {
      return "row_ptr[" + std::to_string(r + 1) + "] = " + std::to_string(k1) + " is outside [" + std::to_string(k0) +
             ", " + std::to_string(nnz) + "]";
    }
    if (!(m.scale[r] > 0.0f) || !std::isfinite(m.scale[r])) return "scale of row " + std::to_string(r) + " is not positive and finite";
    int64_t marked = 0;
    for (int64_t i = 0; i < m.cols; ++i) marked += m.q[r * m.cols + i] == kOutlierSlot;
    if (marked != k1 - k0) return "row " + std::to_string(r) + " marks " + std::to_string(marked) + " outlier slots but lists " + std::to_string(k1 - k0);
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t c = m.col(k);
      if (c < 0 || c >= m.cols || (k > k0 && c <= m.col(k - 1)) || m.q[r * m.cols + c] != kOutlierSlot) {
        return "outlier column " + std::to_string(c) + " of row " + std::to_string(r) + " is out of range, repeated or unmarked";
      }
      if (!std::isfinite(m.val[k])) return "outlier value of row " + std::to_string(r) + " is not finite";
    }
  }
  if (m.row_ptr[m.rows] != nnz) return "row_ptr ends at " + std::to_string(m.row_ptr[m.rows]) + ", not at the " + std::to_string(nnz) + " outliers stored";
  return "";
}

std::string block_problem(const BlockView& m) {
  const int64_t n = m.rows * m.blocks_per_row();
  for (int64_t i = 0; i < n; ++i) {
    if (!(m.absmax[i] >= 0.0f) || !std::isfinite(m.absmax[i])) return "absmax " + std::to_string(i) + " is not finite and non-negative";
  }
  return "";
}

}  // namespace qft
