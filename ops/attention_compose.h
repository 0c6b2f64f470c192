#pragma once
// Causal attention with GQA, composed per (batch, head) from row-major GEMMs and the shared softmax functors.
// The CPU and CUDA backends run this one composition with their own GEMM and row launcher, so they differ
// only in how a GEMM multiplies. Heads of a GQA group read the same k and v, and add into the same dk, dv.
#include <cmath>
#include <cstdint>

#include "ops/backend.h"
#include "ops/gemm_args.h"
#include "ops/kernels.h"
#include "ops/kernels_backward.h"

namespace qft {

// gemm(const GemmArgs&) runs one GEMM; rows(functor, n) runs a row functor over n rows.
template <class Gemm, class Rows>
void compose_attention_forward(const AttentionParams& p, Gemm&& gemm, Rows&& rows) {
  const int64_t T = p.T, D = p.D, group = p.H / p.KVH;
  const int64_t q_stride = int64_t(p.H) * D, kv_stride = int64_t(p.KVH) * D;
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.H; ++h) {
      const float* q = p.q + b * T * q_stride + h * D;
      const float* k = p.k + b * T * kv_stride + (h / group) * D;
      // scores (T, T) = q (T, D) @ k (T, D)^T
      gemm(GemmArgs{false, true, T, T, D, q, q_stride, k, kv_stride, 0.0f, p.scratch + (b * p.H + h) * T * T, T});
    }
  }
  rows(AttentionSoftmax{p.scratch, p.doc_start, p.T, p.H, 1.0f / std::sqrt(float(D))}, int64_t(p.B) * p.H * T);
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.H; ++h) {
      const float* v = p.v + b * T * kv_stride + (h / group) * D;
      // out (T, D) = probs (T, T) @ v (T, D)
      gemm(GemmArgs{false, false, T, D, T, p.scratch + (b * p.H + h) * T * T, T, v, kv_stride, 0.0f,
                    p.out + b * T * q_stride + h * D, q_stride});
    }
  }
}

template <class Gemm, class Rows>
void compose_attention_backward(Backend& be, const AttentionBackwardParams& p, Gemm&& gemm, Rows&& rows) {
  const int64_t T = p.T, D = p.D, group = p.H / p.KVH;
  const int64_t q_stride = int64_t(p.H) * D, kv_stride = int64_t(p.KVH) * D;
  const float scale = 1.0f / std::sqrt(float(D));
  be.zero(p.dk, size_t(p.B) * T * kv_stride * 4);
  be.zero(p.dv, size_t(p.B) * T * kv_stride * 4);
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.H; ++h) {
      const int64_t qo = b * T * q_stride + h * D, kvo = b * T * kv_stride + (h / group) * D;
      const float* probs = p.probs + (b * p.H + h) * T * T;
      float* ds = p.scratch;  // (T, T)
      // dP (T, T) = dout (T, D) @ v (T, D)^T
      gemm(GemmArgs{false, true, T, T, D, p.dout + qo, q_stride, p.v + kvo, kv_stride, 0.0f, ds, T});
      // dv (T, D) += P^T (T, T) @ dout (T, D)
      gemm(GemmArgs{true, false, T, D, T, probs, T, p.dout + qo, q_stride, 1.0f, p.dv + kvo, kv_stride});
      rows(AttentionSoftmaxBackward{ds, probs, p.T, scale}, T);  // dP -> dS in place
      // dq (T, D) = dS @ k;  dk (T, D) += dS^T @ q
      gemm(GemmArgs{false, false, T, D, T, ds, T, p.k + kvo, kv_stride, 0.0f, p.dq + qo, q_stride});
      gemm(GemmArgs{true, false, T, D, T, ds, T, p.q + qo, q_stride, 1.0f, p.dk + kvo, kv_stride});
    }
  }
}

}  // namespace qft
