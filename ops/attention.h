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
  // Element i of the block in memory order (the contiguous index innermost): its head, query row and key column.
  QFT_HD void locate(int64_t i, int64_t& h, int64_t& r, int64_t& c) const {
    const int64_t inner = keys_are_rows ? rows : cols, outer = keys_are_rows ? cols : rows;
    const int64_t a = i % inner, b = (i / inner) % outer;
    h = i / (rows * cols);
    r = keys_are_rows ? a : b;
    c = keys_are_rows ? b : a;
  }
  QFT_HD int64_t at(int64_t h, int64_t r, int64_t c) const {
    return keys_are_rows ? h * head_stride + c * row_stride + r * col_stride
                         : h * head_stride + r * row_stride + c * col_stride;
  }
  // Whether query row r sees key column c: keys from its document's start up to itself.
  QFT_HD bool visible(int64_t r, int64_t c) const {
    const int64_t t = t0 + r, key = c0 + c;
    return key <= t && key >= (doc_start ? int64_t(doc_start[t]) : 0);
  }
};

// Scaled, masked softmax of each query row of a block of raw fp32 scores (keys contiguous: col_stride 1, not
// keys_are_rows), into probabilities of storage type S, and the row's logsumexp of scaled scores into lse. Row r
// is query row r % rows of head r / rows. Probabilities may be the scores themselves (S = float, in place).
template <class S>
struct AttentionSoftmax {
  S* probs;
  const float* scores;
  float* lse;
  ScoreBlock blk;
  float scale;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    const int64_t h = r / blk.rows, q = r % blk.rows;
    const float* s = scores + blk.at(h, q, 0);
    S* p = probs + blk.at(h, q, 0);
    float m = -INFINITY;
    for (int64_t c = row.lane(); c < blk.cols; c += row.width()) {
      if (blk.visible(q, c)) m = max_hd(m, s[c] * scale);
    }
    m = row.max(m);
    float sum = 0.0f;
    for (int64_t c = row.lane(); c < blk.cols; c += row.width()) {
      if (blk.visible(q, c)) sum += exp_hd(s[c] * scale - m);
    }
    sum = row.sum(sum);  // also orders every lane's reads of s before the writes below (in place)
    const float l = m + log_hd(sum);
    for (int64_t c = row.lane(); c < blk.cols; c += row.width()) {
      p[c] = from_f32<S>(blk.visible(q, c) ? exp_hd(s[c] * scale - l) : 0.0f);
    }
    if (row.lane() == 0) lse[h * blk.stats_head_stride + blk.t0 + q] = l;
  }
};

// The backward of one block, per element: the probability recomputed from the raw score and the row's lse,
// P = exp(scale * s - lse), and the score gradient dS = scale * P * (dP - delta) with delta = sum_d dout * out of
// the query row (AttentionRowDot). Masked elements get 0. P and dS may overwrite s and dP (S = float).
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
  QFT_HD void operator()(int64_t i) const {
    int64_t h, r, c;
    blk.locate(i, h, r, c);
    const int64_t at = blk.at(h, r, c), stat = h * blk.stats_head_stride + blk.t0 + r;
    const float s = scores[at], dp = dprobs[at];
    const float p = blk.visible(r, c) ? exp_hd(s * scale - lse[stat]) : 0.0f;
    probs[at] = from_f32<S>(p);
    dscores[at] = from_f32<S>(scale * p * (dp - delta[stat]));
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
