// Attention on the host: the shared functors of ops/attention.h over tiles, one tile per OpenMP task with
// single-threaded OpenBLAS GEMMs inside (the tasks are the parallelism). A task holds kTile rows of scores against
// the keys its rows can see, so memory grows linearly with T. The forward and dq walk query tiles; dk and dv walk
// key tiles in a second pass (each task then owns the rows it writes, with no atomics and one summation order).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "cpu/cpu_backend.h"

namespace qft {

namespace {

constexpr int64_t kTile = 64;  // query rows (forward, dq) or keys (dk, dv) per task

// C (M, N) = A (M, K) @ op(B) + beta C, row-major, on the calling thread; op(B) = B^T (B stored (N, K)) when trans_b.
void tile_gemm(bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(M), int(N), int(K), 1.0f, A,
              int(lda), B, int(ldb), beta, C, int(ldc));
}

// The geometry of one attention call in fp32 host memory.
struct Geometry {
  int64_t B, T, H, KVH, D, group, qs, kvs, tiles;
  float scale;
  explicit Geometry(int b, int t, int h, int kvh, int d)
      : B(b), T(t), H(h), KVH(kvh), D(d), group(h / kvh), qs(int64_t(h) * d), kvs(int64_t(kvh) * d),
        tiles((t + kTile - 1) / kTile), scale(1.0f / std::sqrt(float(d))) {}
  // Offset of token t's head h in a (B, T, heads, D) tensor with row stride `stride`.
  int64_t at(int64_t b, int64_t t, int64_t h, int64_t stride) const { return (b * T + t) * stride + h * D; }
};

// The query tile of a task of the forward and the dq pass: head h of batch row b, query rows [t0, t0 + rows)
// against keys [0, cols), the keys they can see. Tasks go longest tile first.
struct QueryTile {
  int64_t b, h, kvh, t0, rows, cols;
  ScoreBlock scores;  // (rows, cols), one head
  QueryTile(const Geometry& g, int64_t task, const int32_t* doc_start) {
    const int64_t tile = g.tiles - 1 - task % g.tiles;
    b = task / g.tiles / g.H;
    h = task / g.tiles % g.H;
    kvh = h / g.group;
    t0 = tile * kTile;
    rows = std::min(kTile, g.T - t0);
    cols = t0 + rows;
    scores = {1, rows, cols, 0, cols, 1, t0, 0, 0, doc_start ? doc_start + b * g.T : nullptr};
  }
};

}  // namespace

void CpuBackend::attention_forward(const AttentionParams& p) {
  if (p.out.dtype != DType::F32) return HostBackend::attention_forward(p);
  const OpScope scope(*this, "attention_forward");
  const Geometry g(p.B, p.T, p.H, p.KVH, p.D);
  const int64_t per_thread = kTile * g.T;  // (kTile, T) scores
  Buffer scratch = alloc(size_t(omp_get_max_threads() * per_thread) * sizeof(float), "attention scores");
  const float *q = p.q.as<float>(), *k = p.k.as<float>(), *v = p.v.as<float>();
  float* out = p.out.as<float>();
  const int64_t tasks = g.B * g.H * g.tiles;
#pragma omp parallel for schedule(dynamic)
  for (int64_t task = 0; task < tasks; ++task) {
    const QueryTile t(g, task, p.doc_start);
    float* s = scratch.f32() + omp_get_thread_num() * per_thread;  // (rows, cols)
    tile_gemm(true, t.rows, t.cols, g.D, q + g.at(t.b, t.t0, t.h, g.qs), g.qs, k + g.at(t.b, 0, t.kvh, g.kvs), g.kvs,
              0.0f, s, t.cols);
    const AttentionSoftmax<float> softmax{s, s, p.lse + (t.b * g.H + t.h) * g.T, t.scores, g.scale};
    for (int64_t r = 0; r < t.rows; ++r) softmax(SerialRow{}, r);
    tile_gemm(false, t.rows, g.D, t.cols, s, t.cols, v + g.at(t.b, 0, t.kvh, g.kvs), g.kvs, 0.0f,
              out + g.at(t.b, t.t0, t.h, g.qs), g.qs);
  }
}

void CpuBackend::attention_backward(const AttentionBackwardParams& p) {
  if (p.dq.dtype != DType::F32) return HostBackend::attention_backward(p);
  const OpScope scope(*this, "attention_backward");
  const Geometry g(p.B, p.T, p.H, p.KVH, p.D);
  const float *q = p.q.as<float>(), *k = p.k.as<float>(), *v = p.v.as<float>(), *dout = p.dout.as<float>();
  float *dq = p.dq.as<float>(), *dk = p.dk.as<float>(), *dv = p.dv.as<float>();
  Buffer delta = alloc(size_t(g.B * g.H * g.T) * sizeof(float), "layer gradients");  // (B, H, T)
  rows(AttentionRowDot<float>{delta.f32(), dout, p.out.as<float>(), g.T, g.H, g.D}, g.B * g.T * g.H);
  const int64_t per_thread = 2 * kTile * g.T;  // scores and dP of one tile
  Buffer scratch = alloc(size_t(omp_get_max_threads() * per_thread) * sizeof(float), "attention scores");

  // dq, by query tiles: dS (rows, cols) from scores and dP, then dq = dS @ k.
  const int64_t query_tasks = g.B * g.H * g.tiles;
#pragma omp parallel for schedule(dynamic)
  for (int64_t task = 0; task < query_tasks; ++task) {
    const QueryTile t(g, task, p.doc_start);
    float* s = scratch.f32() + omp_get_thread_num() * per_thread;
    float* dp = s + kTile * g.T;
    const float* kb = k + g.at(t.b, 0, t.kvh, g.kvs);
    tile_gemm(true, t.rows, t.cols, g.D, q + g.at(t.b, t.t0, t.h, g.qs), g.qs, kb, g.kvs, 0.0f, s, t.cols);
    tile_gemm(true, t.rows, t.cols, g.D, dout + g.at(t.b, t.t0, t.h, g.qs), g.qs, v + g.at(t.b, 0, t.kvh, g.kvs), g.kvs,
              0.0f, dp, t.cols);
    const int64_t stats = (t.b * g.H + t.h) * g.T;
    const AttentionGrad<float> grad{s, dp, s, dp, p.lse + stats, delta.f32() + stats, t.scores, g.scale};
    for (int64_t r = 0; r < grad.memory_rows(); ++r) grad(SerialRow{}, r);
    tile_gemm(false, t.rows, g.D, t.cols, dp, t.cols, kb, g.kvs, 0.0f, dq + g.at(t.b, t.t0, t.h, g.qs), g.qs);
  }

  // dk, dv, by key tiles: each kv head's keys [k0, k0 + kTile) against the queries that can see them, [k0, T), of
  // every query head of its group; the scores are held transposed, a key per row.
  const int64_t key_tasks = g.B * g.KVH * g.tiles;
#pragma omp parallel for schedule(dynamic)
  for (int64_t task = 0; task < key_tasks; ++task) {
    const int64_t tile = task % g.tiles, b = task / g.tiles / g.KVH, kvh = task / g.tiles % g.KVH;  // longest first
    const int64_t k0 = tile * kTile, keys = std::min(kTile, g.T - k0), queries = g.T - k0;
    float* s = scratch.f32() + omp_get_thread_num() * per_thread;  // (keys, queries)
    float* dp = s + kTile * g.T;
    const ScoreBlock blk{1, queries, keys, 0, queries, 1, k0, k0, 0, p.doc_start ? p.doc_start + b * g.T : nullptr, true};
    for (int64_t j = 0; j < g.group; ++j) {
      const int64_t h = kvh * g.group + j, stats = (b * g.H + h) * g.T;
      const float *qb = q + g.at(b, k0, h, g.qs), *db = dout + g.at(b, k0, h, g.qs);
      tile_gemm(true, keys, queries, g.D, k + g.at(b, k0, kvh, g.kvs), g.kvs, qb, g.qs, 0.0f, s, queries);
      tile_gemm(true, keys, queries, g.D, v + g.at(b, k0, kvh, g.kvs), g.kvs, db, g.qs, 0.0f, dp, queries);
      const AttentionGrad<float> grad{s, dp, s, dp, p.lse + stats, delta.f32() + stats, blk, g.scale};
      for (int64_t r = 0; r < grad.memory_rows(); ++r) grad(SerialRow{}, r);
      const float beta = j == 0 ? 0.0f : 1.0f;  // the group's heads add up
      tile_gemm(false, keys, g.D, queries, s, queries, db, g.qs, beta, dv + g.at(b, k0, kvh, g.kvs), g.kvs);
      tile_gemm(false, keys, g.D, queries, dp, queries, qb, g.qs, beta, dk + g.at(b, k0, kvh, g.kvs), g.kvs);
    }
  }
}

}  // namespace qft
