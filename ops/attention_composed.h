#pragma once
// Tier one's attention: strided-batched GEMMs around the shared functors of ops/attention.h, over blocks of query
// rows so that scores never take more than Backend::attention_scores_bytes, whatever T is. It is the reference
// every attention replacement is tested against, what the planner counts, and the GPU's attention where cuDNN is
// not available. Query head h = g * group + j reads kv head g: for each batch row b and each j, one batched GEMM
// covers a run of kv heads g, whose q columns lie group * D apart and whose k, v columns lie D apart.
#include <algorithm>
#include <cmath>

#include "ops/functor_backend.h"

namespace qft {

// Query rows per block and kv heads per batched GEMM for blocks of scores of elem_bytes per (query, key) pair
// within `budget`: all kv heads and all rows where that fits, else blocks of at least min(T, 64) rows with as
// many heads as fit (one at least).
struct AttentionBlocks {
  int64_t heads, rows;
};
inline AttentionBlocks attention_blocks(int64_t T, int64_t KVH, int64_t elem_bytes, size_t budget) {
  const int64_t pairs = std::max<int64_t>(1, int64_t(budget / size_t(elem_bytes)) / T);  // (head, query) rows
  const int64_t rows = std::clamp<int64_t>(pairs / KVH, std::min<int64_t>(T, 64), T);
  return {std::clamp<int64_t>(pairs / rows, 1, KVH), rows};
}

// One block of the walk: n kv heads (from g0) of query-group member j in batch row b, query rows [t0, t0 + rows)
// against keys [0, cols), the keys they can see. The scores of head i of the block lie at i * head_stride.
struct ComposedBlock {
  int64_t n, rows, cols, head_stride;
  int64_t q_offset;      // first element of the block in q, out, dout and dq
  int64_t kv_offset;     // first element of the block's kv heads in k, v, dk and dv
  int64_t stats_offset;  // first query statistic (lse, delta) of the block's first head
  ScoreBlock scores;
};

template <class F>
void for_each_attention_block(const AttentionBlocks& blocks, int64_t B, int64_t T, int64_t H, int64_t KVH, int64_t D,
                              const int32_t* doc_start, F&& fn) {
  const int64_t group = H / KVH, qs = H * D, kvs = KVH * D;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < group; ++j) {
      for (int64_t g0 = 0; g0 < KVH; g0 += blocks.heads) {
        for (int64_t t0 = 0; t0 < T; t0 += blocks.rows) {
          const int64_t n = std::min(blocks.heads, KVH - g0), rows = std::min(blocks.rows, T - t0);
          const int64_t cols = t0 + rows, head_stride = rows * cols;
          fn(ComposedBlock{n, rows, cols, head_stride, (b * T + t0) * qs + g0 * group * D + j * D, b * T * kvs + g0 * D,
                           (b * H + g0 * group + j) * T,
                           ScoreBlock{n, rows, cols, head_stride, cols, 1, t0, 0, group * T,
                                      doc_start ? doc_start + b * T : nullptr}});
        }
      }
    }
  }
}

template <class Self>
void FunctorBackend<Self>::attention_forward(const AttentionParams& p) {
  const OpScope scope(*this, "attention_forward");
  const int64_t T = p.T, D = p.D, H = p.H, KVH = p.KVH, group = H / KVH;
  const int64_t qs = H * D, kvs = KVH * D;  // row strides of q (and out), k and v
  const float scale = 1.0f / std::sqrt(float(D));
  // fp32 scores; with narrower activations the probabilities go to a second array of their storage type.
  const bool narrow = p.out.dtype != DType::F32;
  const AttentionBlocks blocks =
      attention_blocks(T, KVH, narrow ? 4 + int64_t(act_size(p.out.dtype)) : 4, attention_scores_bytes);
  const int64_t cap = blocks.heads * blocks.rows * T;
  Buffer scores = alloc(size_t(cap) * sizeof(float), "attention scores");  // (heads, rows, keys)
  Buffer narrow_probs;
  if (narrow) narrow_probs = alloc_act(cap, "attention scores");
  const Act probs = narrow ? narrow_probs.act() : Act{scores.f32()};
  for_each_attention_block(blocks, p.B, T, H, KVH, D, p.doc_start, [&](const ComposedBlock& c) {
    // scores (rows, cols) = q (rows, D) @ k (cols, D)^T, per kv head
    gemm({false, true, c.rows, c.cols, D, p.q + c.q_offset, qs, p.k + c.kv_offset, kvs, 0.0f, scores.f32(), c.cols, c.n,
          group * D, D, c.head_stride});
    with_act_type(p.out.dtype, [&](auto t) {
      using TY = decltype(t);
      rows(AttentionSoftmax<TY>{probs.as<TY>(), scores.f32(), p.lse + c.stats_offset, c.scores, scale}, c.n * c.rows);
    });
    // out (rows, D) = probs (rows, cols) @ v (cols, D)
    gemm({false, false, c.rows, D, c.cols, probs, c.cols, p.v + c.kv_offset, kvs, 0.0f, p.out + c.q_offset, qs, c.n,
          c.head_stride, D, group * D});
  });
}

template <class Self>
void FunctorBackend<Self>::attention_backward(const AttentionBackwardParams& p) {
  const OpScope scope(*this, "attention_backward");
  const int64_t T = p.T, D = p.D, H = p.H, KVH = p.KVH, group = H / KVH;
  const int64_t qs = H * D, kvs = KVH * D;
  const float scale = 1.0f / std::sqrt(float(D));
  const int64_t kv_elems = p.B * T * kvs;
  const DType st = p.dq.dtype;
  Buffer delta = alloc(size_t(p.B * H * T) * sizeof(float), "layer gradients");  // (B, H, T)
  with_act_type(common_dtype("attention_backward", {st, p.dk.dtype, p.dv.dtype, p.dout.dtype, p.out.dtype}),
                [&](auto t) {
                  using TY = decltype(t);
                  rows(AttentionRowDot<TY>{delta.f32(), p.dout.as<TY>(), p.out.as<TY>(), T, H, D}, p.B * T * H);
                });
  // dk, dv sum over the query blocks and the heads of a group: in fp32, stored once at the end when narrower.
  const bool narrow = st != DType::F32;
  Buffer dk32, dv32;
  if (narrow) {
    dk32 = alloc(size_t(kv_elems) * sizeof(float), "layer gradients");
    dv32 = alloc(size_t(kv_elems) * sizeof(float), "layer gradients");
  }
  const Act dk = narrow ? Act{dk32.f32()} : p.dk, dv = narrow ? Act{dv32.f32()} : p.dv;
  zero(dk.ptr, size_t(kv_elems) * sizeof(float));
  zero(dv.ptr, size_t(kv_elems) * sizeof(float));
  // fp32 scores and dP; P and dS overwrite them, or go to arrays of the activations' type when narrower.
  const AttentionBlocks blocks =
      attention_blocks(T, KVH, narrow ? 8 + 2 * int64_t(act_size(st)) : 8, attention_scores_bytes);
  const int64_t cap = blocks.heads * blocks.rows * T;
  Buffer scores = alloc(size_t(cap) * sizeof(float), "attention scores");
  Buffer dprobs = alloc(size_t(cap) * sizeof(float), "attention scores");
  Buffer narrow_probs, narrow_dscores;
  if (narrow) {
    narrow_probs = alloc_act(cap, "attention scores");
    narrow_dscores = alloc_act(cap, "attention scores");
  }
  const Act probs = narrow ? narrow_probs.act() : Act{scores.f32()};
  const Act dscores = narrow ? narrow_dscores.act() : Act{dprobs.f32()};
  for_each_attention_block(blocks, p.B, T, H, KVH, D, p.doc_start, [&](const ComposedBlock& c) {
    // scores = q @ k^T and dP (rows, cols) = dout (rows, D) @ v (cols, D)^T
    gemm({false, true, c.rows, c.cols, D, p.q + c.q_offset, qs, p.k + c.kv_offset, kvs, 0.0f, scores.f32(), c.cols, c.n,
          group * D, D, c.head_stride});
    gemm({false, true, c.rows, c.cols, D, p.dout + c.q_offset, qs, p.v + c.kv_offset, kvs, 0.0f, dprobs.f32(), c.cols,
          c.n, group * D, D, c.head_stride});
    with_act_type(st, [&](auto t) {
      using TY = decltype(t);
      const AttentionGrad<TY> grad{probs.as<TY>(), dscores.as<TY>(), scores.f32(), dprobs.f32(), p.lse + c.stats_offset,
                                   delta.f32() + c.stats_offset, c.scores, scale};
      rows(grad, grad.memory_rows());
    });
    // dv (cols, D) += P^T @ dout;  dq (rows, D) = dS @ k;  dk (cols, D) += dS^T @ q
    gemm({true, false, c.cols, D, c.rows, probs, c.cols, p.dout + c.q_offset, qs, 1.0f, dv + c.kv_offset, kvs, c.n,
          c.head_stride, group * D, D});
    gemm({false, false, c.rows, D, c.cols, dscores, c.cols, p.k + c.kv_offset, kvs, 0.0f, p.dq + c.q_offset, qs, c.n,
          c.head_stride, D, group * D});
    gemm({true, false, c.cols, D, c.rows, dscores, c.cols, p.q + c.q_offset, qs, 1.0f, dk + c.kv_offset, kvs, c.n,
          c.head_stride, group * D, D});
  });
  if (narrow) {
    convert(p.dk, dk, kv_elems);
    convert(p.dv, dv, kv_elems);
  }
}

}  // namespace qft
