#pragma once
// The arithmetic of every op, written once. The CPU backend runs these functors in OpenMP loops, the CUDA
// backend in kernels (cuda/launch.cuh). Row functors are written against a "row context": on the CPU it is
// one thread walking the whole row (SerialRow); on the GPU it is a thread block whose reductions are block
// reductions and whose groups are warps. Every thread of a row must call the row context's reductions, the same
// number of times, and every thread of a group its group's.
// Functors are templated on T, the storage type of activations (float or bf16): values are loaded with
// to_f32, computed in fp32 and stored with from_f32<T>. For T = float both are the identity.
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/hd.h"

namespace qft {

// A row context: `width()` lanes walk a row together; reductions and sync() span them all. The lanes also form
// groups() groups of group_width() lanes (a warp on the GPU) that can work on separate parts of a row, such as
// quantization blocks, with group reductions that need no row-wide barrier.
struct SerialRow {
  QFT_HD int lane() const { return 0; }
  QFT_HD int width() const { return 1; }
  QFT_HD float sum(float v) const { return v; }
  QFT_HD float max(float v) const { return v; }
  QFT_HD void sync() const {}
  QFT_HD int group() const { return 0; }
  QFT_HD int groups() const { return 1; }
  QFT_HD int group_lane() const { return 0; }
  QFT_HD int group_width() const { return 1; }
  QFT_HD float group_max(float v) const { return v; }
  QFT_HD void group_sync() const {}
};

QFT_HD float silu(float x) { return x / (1.0f + exp_hd(-x)); }

// ---- elementwise functors: f(i) for i in [0, n) -------------------------------------------------------

template <class TD, class TS>
struct Convert {  // dst = src, between storage types
  TD* dst;
  const TS* src;
  QFT_HD void operator()(int64_t i) const { dst[i] = from_f32<TD>(to_f32(src[i])); }
};

template <class T>
struct EmbeddingForward {  // out (N, C) = table[tokens] (V, C)
  T* out;
  const int32_t* tokens;
  const T* table;
  int64_t C;
  QFT_HD void operator()(int64_t i) const { out[i] = table[int64_t(tokens[i / C]) * C + i % C]; }
};

template <class T>
struct SwigluForward {  // out = silu(gate) * up, all (N, I)
  T* out;
  const T* gate;
  const T* up;
  QFT_HD void operator()(int64_t i) const { out[i] = from_f32<T>(silu(to_f32(gate[i])) * to_f32(up[i])); }
};

template <class T>
struct ResidualAdd {  // x += y
  T* x;
  const T* y;
  QFT_HD void operator()(int64_t i) const { x[i] = from_f32<T>(to_f32(x[i]) + to_f32(y[i])); }
};

template <class T>
struct Scale {  // x *= s
  T* x;
  float s;
  QFT_HD void operator()(int64_t i) const { x[i] = from_f32<T>(to_f32(x[i]) * s); }
};

template <class T>
struct Transpose {  // out (cols, rows) = in (rows, cols)^T; one call per output element
  T* out;
  const T* in;
  int64_t rows, cols;
  QFT_HD void operator()(int64_t i) const { out[i] = in[(i % rows) * cols + i / rows]; }
};

// Rotary embedding in the "rotate half" layout of HF LLaMA: pairs (d, d + D/2) of each head rotate by
// pos * inv_freq[d]. One call per (token, head, d < D/2); x is (N, H, D). The backward pass is the inverse
// rotation (direction = -1), since a rotation's transpose is its inverse.
template <class T>
struct Rope {
  T* x;
  const int32_t* pos;       // (N,)
  const float* inv_freq;    // (D/2,)
  int64_t H, D;
  float direction;          // +1 forward, -1 backward
  QFT_HD void operator()(int64_t i) const {
    int64_t half = D / 2;
    int64_t d = i % half;
    int64_t th = i / half;  // token * H + head
    float angle = float(pos[th / H]) * inv_freq[d];
    float c = cosf(angle), s = direction * sinf(angle);
    T* p = x + th * D;
    float x1 = to_f32(p[d]), x2 = to_f32(p[d + half]);
    p[d] = from_f32<T>(x1 * c - x2 * s);
    p[d + half] = from_f32<T>(x2 * c + x1 * s);
  }
};

// ---- row functors: f(row_ctx, r) for r in [0, rows) ---------------------------------------------------

// y = w * x / rms(x); also stores 1/rms for the backward pass when rstd is not null. x, y: (rows, C)
template <class T>
struct RmsNormForward {
  T* y;
  float* rstd;
  const T* x;
  const float* w;
  int64_t C;
  float eps;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    float ss = 0.0f;
    for (int64_t i = row.lane(); i < C; i += row.width()) ss += to_f32(xr[i]) * to_f32(xr[i]);
    ss = row.sum(ss);
    float inv = rsqrt_hd(ss / float(C) + eps);
    for (int64_t i = row.lane(); i < C; i += row.width()) yr[i] = from_f32<T>(w[i] * (to_f32(xr[i]) * inv));
    if (rstd && row.lane() == 0) rstd[r] = inv;
  }
};

// Cross-entropy of one row of logits against its target; an ignored (negative) target gives loss 0.
// loss[r] = logsumexp(logits) - logits[target]; lse[r] (optional) keeps logsumexp for the backward pass.
template <class T>
struct CrossEntropyForward {
  float* loss;             // (rows,)
  float* lse;              // (rows,) or null
  const T* logits;         // (rows, V)
  const int32_t* targets;  // (rows,)
  int64_t V;
  template <class Row>
  QFT_HD void operator()(const Row& row, int64_t r) const {
    int32_t target = targets[r];
    const T* z = logits + r * V;
    float m = -INFINITY;
    for (int64_t i = row.lane(); i < V; i += row.width()) m = max_hd(m, to_f32(z[i]));
    m = row.max(m);
    float sum = 0.0f;
    for (int64_t i = row.lane(); i < V; i += row.width()) sum += exp_hd(to_f32(z[i]) - m);
    sum = row.sum(sum);
    if (row.lane() == 0) {
      float l = m + log_hd(sum);
      loss[r] = target < 0 ? 0.0f : l - to_f32(z[target]);
      if (lse) lse[r] = l;
    }
  }
};

}  // namespace qft
