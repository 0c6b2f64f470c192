#pragma once
// The arithmetic of causal attention with GQA and packed documents, written once for every backend (see
// ops/kernels.h for row functors and storage types). Training attention never holds (T, T): the forward keeps
// the output and each query row's logsumexp (lse), and the backward recomputes the probabilities of one block of
// scores at a time from q, k and lse (the FlashAttention-2 algorithm). The functors here work on such a block; the
// GEMMs around them belong to whoever composes them (ops/attention_composed.h, cpu/cpu_attention.cpp).
#include <cstdint>

#include "ops/kernels.h"

namespace qft {

// A block of scores: `heads` heads of query rows [t0, t0 + rows) against keys [c0, c0 + cols) of one batch row.
// Element (head h, query row r, key c) lies at h * head_stride + r * row_stride + c * col_stride of every array of
// the block; with keys_are_rows the array holds the transpose, element (r, c) at h * head_stride + c * row_stride +
// r * col_stride, a key per row (blocks walked by key). Per-query statistics (lse, delta) of head h lie at
// stats + h * stats_head_stride + t for query t.
struct ScoreBlock {
  int64_t heads, rows, cols;
  int64_t head_stride, row_stride, col_stride;
  int64_t t0, c0;
  int64_t stats_head_stride;
  const int32_t* doc_start;  // (T,) first visible key of each query of this batch row, or null for plain causal
  bool keys_are_rows = false;
  QFT_HD int64_t at(int64_t h, int64_t r, int64_t c) const {
    return keys_are_rows ? h * head_stride + c * row_stride + r * col_stride
                         : h * head_stride + r * row_stride + c * col_stride;
  }
};

// Scaled, masked softmax of each query row of a block of raw fp32 scores (keys contiguous: col_stride 1, not
// keys_are_rows), into probabilities of storage type S, and the row's logsumexp of scaled scores into lse. Row r
// is query row r % rows of head r / rows. The exponentials go through the scores (each computed once, in loops
// g++ vectorizes); the probabilities may be the scores themselves (S = float, in place).
template <class S>
struct AttentionSoftmax {
  S* probs;
  float* scores;
  float* lse;
  ScoreBlock blk;
  float scale;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    const int64_t h = r / blk.rows, q = r % blk.rows;
    float* s = scores + blk.at(h, q, 0);
    S* p = probs + blk.at(h, q, 0);
    // Visible keys: columns [lo, hi] (the query's document start up to itself). Members are read into locals: the
    // stores through s could alias them, which would stop vectorization.
    const int64_t t = blk.t0 + q, lo = (blk.doc_start ? int64_t(blk.doc_start[t]) : 0) - blk.c0, hi = t - blk.c0;
    const int64_t cols = blk.cols;
    const float sc = scale;
    float m = -INFINITY;
    for (int64_t c = row.lane(); c < cols; c += row.width()) {
      if (c >= lo && c <= hi) m = max_hd(m, s[c] * sc);
    }
    m = row.max(m);
    for (int64_t c = row.lane(); c < cols; c += row.width()) {  // masked: a product with 0, not a branch (vectorizes)
      s[c] = exp_fast(s[c] * sc - m) * (c >= lo && c <= hi ? 1.0f : 0.0f);
    }
    float sum = 0.0f;
    for (int64_t c = row.lane(); c < cols; c += row.width()) sum += s[c];
    sum = row.sum(sum);  // also orders every lane's writes of s before the reads below
    const float inv = 1.0f / sum;
    for (int64_t c = row.lane(); c < cols; c += row.width()) p[c] = from_f32<S>(s[c] * inv);
    if (row.lane() == 0) lse[h * blk.stats_head_stride + t] = m + log_hd(sum);
  }
};

// The backward of one block, per element: the probability recomputed from the raw score and the row's lse,
// P = exp(scale * s - lse), and the score gradient dS = scale * P * (dP - delta) with delta = sum_d dout * out of
// the query row (AttentionRowDot). Masked elements get 0. P and dS may overwrite s and dP (S = float). Row r is
// row r % (rows of memory) of head r / (rows of memory): a query row, or with keys_are_rows a key row, whose
// contiguous elements the lanes walk.
template <class S>
struct AttentionGrad {
  S* probs;
  S* dscores;
  const float* scores;
  const float* dprobs;
  const float* lse;
  const float* delta;
  ScoreBlock blk;
  float scale;
  QFT_HD int64_t memory_rows() const { return blk.heads * (blk.keys_are_rows ? blk.cols : blk.rows); }
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    // Members into locals first: the stores through probs and dscores could alias them (see AttentionSoftmax).
    const ScoreBlock b = blk;
    const float sc = scale;
    const float *s = scores, *dp = dprobs;
    S *p = probs, *ds = dscores;
    const int64_t outer = b.keys_are_rows ? b.cols : b.rows;
    const int64_t h = r / outer, o = r % outer;
    const float* l = lse + h * b.stats_head_stride + b.t0;  // by query row
    const float* dl = delta + h * b.stats_head_stride + b.t0;
    if (b.keys_are_rows) {  // key row o against query rows q (contiguous)
      const int64_t key = b.c0 + o, base = b.at(h, 0, o), rows = b.rows;
      const int32_t* first = b.doc_start ? b.doc_start + b.t0 : nullptr;  // by query row
      for (int64_t q = row.lane(); q < rows; q += row.width()) {
        const bool visible = key <= b.t0 + q && (!first || key >= first[q]);
        const float pq = exp_fast(s[base + q] * sc - l[q]) * (visible ? 1.0f : 0.0f);
        const float dq = sc * pq * (dp[base + q] - dl[q]);
        p[base + q] = from_f32<S>(pq);
        ds[base + q] = from_f32<S>(dq);
      }
    } else {  // query row o against key columns c (contiguous)
      const int64_t t = b.t0 + o, lo = (b.doc_start ? int64_t(b.doc_start[t]) : 0) - b.c0, hi = t - b.c0;
      const int64_t base = b.at(h, o, 0), cols = b.cols;
      const float lo_stat = l[o], delta_o = dl[o];
      for (int64_t c = row.lane(); c < cols; c += row.width()) {
        const float pc = exp_fast(s[base + c] * sc - lo_stat) * (c >= lo && c <= hi ? 1.0f : 0.0f);
        const float dc = sc * pc * (dp[base + c] - delta_o);
        p[base + c] = from_f32<S>(pc);
        ds[base + c] = from_f32<S>(dc);
      }
    }
  }
};

// delta (B, H, T) = sum over d of dout * out for each query row: the softmax backward's row term, from the output
// instead of the (T, T) probabilities. Row r is token r / H (of B * T), head r % H.
template <class T>
struct AttentionRowDot {
  float* delta;     // (B, H, T)
  const T* dout;    // (B, T, H, D)
  const T* out;     // (B, T, H, D)
  int64_t T_, H, D;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    float dot = 0.0f;
    for (int64_t d = row.lane(); d < D; d += row.width()) dot += to_f32(dout[r * D + d]) * to_f32(out[r * D + d]);
    dot = row.sum(dot);
    const int64_t token = r / H, h = r % H, b = token / T_, t = token % T_;
    if (row.lane() == 0) delta[(b * H + h) * T_ + t] = dot;
  }
};

// Attention of new queries against a KV cache, for generation: row r is query i = r / H, head h = r % H, at
// position past + i; it sees cached keys [0, past + i]. Scores, softmax and the weighted sum of values in one
// pass per row (the training path's GEMMs are not worth it for a handful of queries).
template <class T>
struct DecodeAttention {
  T* out;              // (n, H, D)
  float* scores;       // (n * H, max_t) scratch
  const T* q;          // (n, H, D), after RoPE
  const T* k;          // (max_t, KVH, D) cache, rows [0, past + n) filled, after RoPE
  const T* v;          // (max_t, KVH, D)
  int64_t past, H, KVH, D, max_t;
  float scale;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    const int64_t i = r / H, h = r % H, kvh = h / (H / KVH), len = past + i + 1;
    const T* qr = q + (i * H + h) * D;
    float* s = scores + r * max_t;
    float m = -INFINITY;
    for (int64_t j = row.lane(); j < len; j += row.width()) {
      const T* kr = k + (j * KVH + kvh) * D;
      float dot = 0.0f;
      for (int64_t d = 0; d < D; ++d) dot += to_f32(qr[d]) * to_f32(kr[d]);
      s[j] = dot * scale;
      m = max_hd(m, s[j]);
    }
    m = row.max(m);
    float sum = 0.0f;
    for (int64_t j = row.lane(); j < len; j += row.width()) {
      s[j] = exp_hd(s[j] - m);
      sum += s[j];
    }
    sum = row.sum(sum);  // also orders every lane's writes to s before the reads below
    const float inv = 1.0f / sum;
    for (int64_t d = row.lane(); d < D; d += row.width()) {
      float acc = 0.0f;
      for (int64_t j = 0; j < len; ++j) acc += s[j] * to_f32(v[(j * KVH + kvh) * D + d]);
      out[(i * H + h) * D + d] = from_f32<T>(acc * inv);
    }
  }
};

}  // namespace qft
