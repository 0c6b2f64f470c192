#pragma once
// The backward arithmetic of every op, written once for both backends (see ops/kernels.h).
#include "ops/kernels.h"

namespace qft {

// d silu(x) / dx = s (1 + x (1 - s)), s = sigmoid(x)
QFT_HD float silu_grad(float x) {
  float s = 1.0f / (1.0f + exp_hd(-x));
  return s * (1.0f + x * (1.0f - s));
}

// out = silu(gate) * up  =>  dgate = dout * up * silu'(gate), dup = dout * silu(gate). In place is allowed.
template <class T>
struct SwigluBackward {
  T* dgate;
  T* dup;
  const T* dout;
  const T* gate;
  const T* up;
  QFT_HD void operator()(int64_t i) const {
    float g = to_f32(gate[i]), u = to_f32(up[i]), d = to_f32(dout[i]);
    dgate[i] = from_f32<T>(d * u * silu_grad(g));
    dup[i] = from_f32<T>(d * silu(g));
  }
};

// dx (+)= rstd * (w*dy - xhat * mean(w*dy * xhat)), xhat = x * rstd. One row per call.
template <class T>
struct RmsNormBackwardInput {
  T* dx;
  const T* dy;
  const T* x;
  const float* w;
  const float* rstd;
  int64_t C;
  bool accumulate;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    const T* xr = x + r * C;
    const T* dyr = dy + r * C;
    T* dxr = dx + r * C;
    const float rs = rstd[r];
    float dot = 0.0f;
    for (int64_t i = row.lane(); i < C; i += row.width()) dot += w[i] * to_f32(dyr[i]) * to_f32(xr[i]) * rs;
    dot = row.sum(dot) / float(C);
    for (int64_t i = row.lane(); i < C; i += row.width()) {
      float g = rs * (w[i] * to_f32(dyr[i]) - to_f32(xr[i]) * rs * dot);
      dxr[i] = from_f32<T>(accumulate ? to_f32(dxr[i]) + g : g);
    }
  }
};

// dw[i] = sum_r dy[r, i] * x[r, i] * rstd[r], in two passes so that there is work for a whole GPU: partial
// sums over blocks of kRowBlock rows, one call per (block, column), then ColumnSum adds the blocks in order.
constexpr int64_t kRowBlock = 64;

template <class T>
struct RmsNormBackwardWeightPartial {
  float* partial;  // (ceil(N / kRowBlock), C)
  const T* dy;
  const T* x;
  const float* rstd;
  int64_t N, C;
  QFT_HD void operator()(int64_t i) const {
    const int64_t blk = i / C, c = i % C, end = (blk + 1) * kRowBlock < N ? (blk + 1) * kRowBlock : N;
    float s = 0.0f;
    for (int64_t r = blk * kRowBlock; r < end; ++r) s += to_f32(dy[r * C + c]) * to_f32(x[r * C + c]) * rstd[r];
    partial[i] = s;
  }
};

struct ColumnSum {  // out[c] = sum_b partial[b, c]
  float* out;
  const float* partial;  // (blocks, C)
  int64_t blocks, C;
  QFT_HD void operator()(int64_t c) const {
    float s = 0.0f;
    for (int64_t b = 0; b < blocks; ++b) s += partial[b * C + c];
    out[c] = s;
  }
};

// Gradient of the summed, scaled cross-entropy with respect to the logits, in place:
// logits[r] <- scale * (softmax(logits[r]) - onehot(target)), zero for ignored (negative) targets. lse[r] is logsumexp.
template <class T>
struct CrossEntropyBackward {
  T* logits;               // (rows, V): logits on entry, their gradient on exit
  const float* lse;        // (rows,)
  const int32_t* targets;  // (rows,)
  int64_t V;
  int64_t v0;              // first vocabulary column held in this tile (vocab-chunked passes)
  int64_t ld;              // columns in this tile
  float scale;
  QFT_HD void operator()(int64_t i) const {
    int64_t r = i / ld, c = i % ld;
    int32_t t = targets[r];
    float g = 0.0f;
    if (t >= 0) g = scale * (exp_hd(to_f32(logits[i]) - lse[r]) - (v0 + c == t ? 1.0f : 0.0f));
    logits[i] = from_f32<T>(g);
  }
};

// Table gradient rows from the gradient of the embedding output: one call per (token group, column), adding the
// token's positions in order, so every backend sums the same values in the same order.
template <class T>
struct EmbeddingBackward {
  float* dtable;           // (rows, C): row token - v0
  const T* dout;           // (N, C)
  const int32_t* order;    // TokenGroupsView
  const int32_t* start;
  const int32_t* token;
  int64_t first, C, v0;
  QFT_HD void operator()(int64_t i) const {
    const int64_t g = first + i / C, c = i % C;
    float* dst = dtable + (int64_t(token[g]) - v0) * C + c;
    float acc = *dst;
    for (int64_t k = start[g]; k < start[g + 1]; ++k) acc += to_f32(dout[int64_t(order[k]) * C + c]);
    *dst = acc;
  }
};

// out[i] (+)= the sum, in double and in index order, of in[j] (or in[j]^2) for j in [i * group, (i + 1) * group)
// and j < n. Sums of sums in this form add every value in an order fixed by n alone, the same on every backend.
template <class In>
struct OrderedGroupSum {
  double* out;
  const In* in;
  int64_t n, group;
  bool squares, accumulate;
  QFT_HD void operator()(int64_t i) const {
    const int64_t end = (i + 1) * group < n ? (i + 1) * group : n;
    double s = 0.0;
    for (int64_t j = i * group; j < end; ++j) {
      const double v = double(in[j]);
      s += squares ? v * v : v;
    }
    out[i] = accumulate ? out[i] + s : s;
  }
};

}  // namespace qft
