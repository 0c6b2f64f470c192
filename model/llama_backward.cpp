// The backward pass with per-layer recompute. Forward keeps only the stack of layer inputs; backward pops one
// layer, recomputes its forward, and hands each weight's gradient to the sink as soon as it is final, after
// the last read of that weight. The LM head and the embedding deliver their gradients by vocabulary chunks.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/layer_input_stack.h"
#include "model/llama_internal.h"

namespace qft {

void LlamaModel::backward(const Batch& batch, float loss_scale, GradSink& sink, double* loss_sum) {
  Backend& be = backend_;
  const DeviceBatch db = upload(batch, true);
  const int N = db.N, C = config_.hidden_size, V = config_.vocab_size, L = config_.num_hidden_layers;
  const int64_t NC = int64_t(N) * C;

  // Forward, keeping each layer's input; x ends as the last layer's output.
  LayerInputStack stack(be, stack_storage, stack_offload, NC);
  Buffer x = be.alloc_act(NC, "layer-input stack");  // (N, C) residual stream
  be.embedding_forward(x.act(), db.tokens.i32(), dense(embedding_param()).get(), N, C);
  for (int l = 0; l < L; ++l) {
    const CAct in = stack.push(x);
    layer_forward(l, in, x.act(), db);
  }
  const float* final_norm = norm_weight(final_norm_param());

  // Final norm and LM head, by token chunks: loss, logsumexp, and d hidden (dh) with the head's weights.
  Buffer hidden = be.alloc_act(NC, "head activations");  // (N, C)
  Buffer rstd = be.alloc(size_t(N) * 4, "head activations");
  be.rmsnorm_forward(hidden.act(), rstd.f32(), x.act(), final_norm, N, C, float(config_.rms_norm_eps));
  Buffer loss = be.alloc(size_t(N) * 4, "head activations"), lse = be.alloc(size_t(N) * 4, "head activations");
  Buffer dh = be.alloc_act(NC, "head activations");  // (N, C)
  DenseWeight head = dense(head_param());
  lm_head(hidden.act(), head.get(), N, [&](int r0, int rows, Act logits) {
    be.cross_entropy_forward(loss.f32() + r0, lse.f32() + r0, logits, db.targets.i32() + r0, rows, V);
    be.cross_entropy_backward(logits, lse.f32() + r0, db.targets.i32() + r0, rows, V, 0, V, loss_scale);
    be.matmul_backward_input(dh.act() + int64_t(r0) * C, logits, head.get(), rows, C, V, false, C);
  });
  // Summed on the device, where the update reads it: a NaN or inf loss makes the step's update skip itself.
  if (loss_sum) be.add_sum(loss_sum, loss.f32(), N, SumOf::Values);  // ignored targets hold 0
  loss.reset();

  Buffer dx = be.alloc_act(NC, "head activations");  // (N, C) gradient of the residual stream
  {
    Buffer dw = norm_gradient(final_norm_param());
    be.rmsnorm_backward(dx.act(), dw.f32(), dh.act(), x.act(), final_norm, rstd.f32(), N, C, false);
    if (dw.get()) sink.consume(final_norm_param(), 0, 1, dw.f32());
  }
  dh.reset();
  x.reset();
  const bool head_frozen = params_[size_t(head_param())].frozen;  // LoRA: embedding and head too
  if (!config_.tie_word_embeddings && !head_frozen) {
    head_weight_backward(head.get(), hidden.act(), lse.f32(), nullptr, db, loss_scale, sink);
  }
  if (!config_.tie_word_embeddings || head_frozen) {
    hidden.reset();  // only a tied head's gradient reads them again, after the layers
    lse.reset();
  }
  rstd.reset();
  head = DenseWeight{};  // a tied head is dequantized again at the end rather than held through every layer

  Buffer widened;  // a narrow stack's layer input, widened for the recompute
  for (int l = L - 1; l >= 0; --l) {
    layer_backward(l, stack.input(l, widened), dx.act(), db, sink);
    stack.pop(l);
  }
  widened.reset();
  // A tied matrix is both LM head and embedding: its gradient is complete only now.
  if (head_frozen) return;
  if (config_.tie_word_embeddings) {
    head_weight_backward(dense(embedding_param()).get(), hidden.act(), lse.f32(), dx.act(), db, loss_scale, sink);
  } else {
    embedding_weight_backward(dx.act(), db, sink);
  }
}

void LlamaModel::layer_backward(int layer, CAct x_in, Act dx, const DeviceBatch& db, GradSink& sink) {
  Backend& be = backend_;
  const LlamaConfig& c = config_;
  const int N = db.N, C = c.hidden_size, I = c.intermediate_size, H = c.num_attention_heads,
            KVH = c.num_key_value_heads, D = c.head_dim, QD = c.q_dim(), KVD = c.kv_dim();
  const LayerParams& P = layer_params(layer);
  // The recompute's dequantized matrices are kept for the backward GEMMs when keep_layer_weights is set, each
  // dropped after its last read; else every matrix is dequantized again where a GEMM needs it.
  LayerWeights kept;
  LayerActs a = layer_forward(layer, x_in, nullptr, db, nullptr, keep_layer_weights ? &kept : nullptr);
  DenseWeight dropped;
  auto matrix = [&](int param, DenseWeight LayerWeights::*slot) {
    const DenseWeight& d = kept.*slot;
    return d.get().ptr ? d.get() : dense_into(dropped, param);
  };
  auto release = [&](std::initializer_list<DenseWeight LayerWeights::*> slots) {
    for (auto slot : slots) kept.*slot = DenseWeight{};
    dropped = DenseWeight{};
  };

  // ---- MLP: x_out = x_mid + act @ w_down^T, act = silu(gate) * up ----
  const int mlp_cols = mlp_backward_columns(layer, N);
  if (mlp_cols < I) {
    mlp_backward_by_columns(layer, a, dx, N, mlp_cols, sink);
  } else {
    Buffer dact = be.alloc_act(int64_t(N) * I, "layer gradients");  // (N, I)
    be.matmul_backward_input(dact.act(), dx, matrix(P.down, &LayerWeights::down), N, I, C, false, I);
    release({&LayerWeights::down});
    {
      Buffer act = be.alloc_act(int64_t(N) * I, "layer activations");  // (N, I) silu(gate) * up, recomputed here
      be.swiglu_forward(act.act(), a.gate.act(), a.up.act(), int64_t(N) * I);
      weight_gradient(P.down, dx, act.act(), N, I, C, sink);
      adapter_backward(layer, LoraTarget::Down, dx, act.act(), dact.act(), N, I, C, sink);
    }
    // -> dgate, dup in place
    be.swiglu_backward(a.gate.act(), a.up.act(), dact.act(), a.gate.act(), a.up.act(), int64_t(N) * I);
    dact.reset();
    Buffer dxn = be.alloc_act(int64_t(N) * C, "layer gradients");  // (N, C)
    be.matmul_backward_input(dxn.act(), a.gate.act(), matrix(P.gate, &LayerWeights::gate), N, C, I, false, C);
    be.matmul_backward_input(dxn.act(), a.up.act(), matrix(P.up, &LayerWeights::up), N, C, I, true, C);
    release({&LayerWeights::gate, &LayerWeights::up});
    Buffer xn2 = normalized(a.x_mid.act(), P.mlp_norm, N);
    weight_gradient(P.gate, a.gate.act(), xn2.act(), N, C, I, sink);
    weight_gradient(P.up, a.up.act(), xn2.act(), N, C, I, sink);
    adapter_backward(layer, LoraTarget::Gate, a.gate.act(), xn2.act(), dxn.act(), N, C, I, sink);
    adapter_backward(layer, LoraTarget::Up, a.up.act(), xn2.act(), dxn.act(), N, C, I, sink);
    norm_backward(P.mlp_norm, dx, dxn.act(), a.x_mid.act(), a.rstd2.f32(), N, sink);
  }
  for (Buffer* b : {&a.gate, &a.up, &a.x_mid, &a.xn2, &a.rstd2}) b->reset();  // the MLP's, done with

  // ---- attention: x_mid = x_in + att_out @ w_o^T ----
  Buffer datt = be.alloc_act(int64_t(N) * QD, "layer gradients");  // (N, H, D)
  be.matmul_backward_input(datt.act(), dx, matrix(P.o, &LayerWeights::o), N, QD, C, false, QD);
  release({&LayerWeights::o});
  weight_gradient(P.o, dx, a.att_out.act(), N, QD, C, sink);
  adapter_backward(layer, LoraTarget::O, dx, a.att_out.act(), datt.act(), N, QD, C, sink);
  Buffer dq = be.alloc_act(int64_t(N) * QD, "layer gradients");
  Buffer dk = be.alloc_act(int64_t(N) * KVD, "layer gradients");
  Buffer dv = be.alloc_act(int64_t(N) * KVD, "layer gradients");
  be.attention_backward({dq.act(), dk.act(), dv.act(), datt.act(), a.att_out.act(), a.lse.f32(), a.q.act(), a.k.act(),
                         a.v.act(), db.doc_start.i32(), db.docs, db.B, db.T, H, KVH, D});
  for (Buffer* b : {&datt, &a.lse, &a.q, &a.k, &a.v, &a.att_out}) b->reset();  // attention's, done with
  be.rope(dq.act(), db.positions.i32(), inv_freq_.f32(), N, H, D, true);
  be.rope(dk.act(), db.positions.i32(), inv_freq_.f32(), N, KVH, D, true);
  Buffer dxn = be.alloc_act(int64_t(N) * C, "layer gradients");  // (N, C)
  be.matmul_backward_input(dxn.act(), dq.act(), matrix(P.q, &LayerWeights::q), N, C, QD, false, C);
  be.matmul_backward_input(dxn.act(), dk.act(), matrix(P.k, &LayerWeights::k), N, C, KVD, true, C);
  be.matmul_backward_input(dxn.act(), dv.act(), matrix(P.v, &LayerWeights::v), N, C, KVD, true, C);
  release({&LayerWeights::q, &LayerWeights::k, &LayerWeights::v});
  const Buffer xn1 = normalized(x_in, P.attn_norm, N);
  weight_gradient(P.q, dq.act(), xn1.act(), N, C, QD, sink);
  weight_gradient(P.k, dk.act(), xn1.act(), N, C, KVD, sink);
  weight_gradient(P.v, dv.act(), xn1.act(), N, C, KVD, sink);
  adapter_backward(layer, LoraTarget::Q, dq.act(), xn1.act(), dxn.act(), N, C, QD, sink);
  adapter_backward(layer, LoraTarget::K, dk.act(), xn1.act(), dxn.act(), N, C, KVD, sink);
  adapter_backward(layer, LoraTarget::V, dv.act(), xn1.act(), dxn.act(), N, C, KVD, sink);
  norm_backward(P.attn_norm, dx, dxn.act(), x_in, a.rstd1.f32(), N, sink);
}

Buffer LlamaModel::normalized(CAct x, int norm_param, int N) {
  const int C = config_.hidden_size;
  Buffer xn = backend_.alloc_act(int64_t(N) * C, "layer activations");  // (N, C)
  backend_.rmsnorm_forward(xn.act(), nullptr, x, norm_weight(norm_param), N, C, float(config_.rms_norm_eps));
  return xn;
}

Buffer LlamaModel::norm_gradient(int norm_param) {
  if (params_[size_t(norm_param)].frozen) return {};
  return backend_.alloc(size_t(config_.hidden_size) * 4, "weight-gradient chunk");
}

void LlamaModel::norm_backward(int norm_param, Act dx, CAct dxn, CAct x, const float* rstd, int N, GradSink& sink) {
  Buffer dw = norm_gradient(norm_param);
  backend_.rmsnorm_backward(dx, dw.f32(), dxn, x, norm_weight(norm_param), rstd, N, config_.hidden_size, true);
  if (dw.get()) sink.consume(norm_param, 0, 1, dw.f32());
}

void LlamaModel::weight_gradient(int param, CAct dout, CAct inp, int N, int I, int O, GradSink& sink, int row0) {
  if (params_[size_t(param)].frozen) return;
  const int chunk = int(gradient_chunk_rows(I, O));
  Buffer dw = backend_.alloc(size_t(chunk) * I * 4, "weight-gradient chunk");  // (chunk, I)
  for (int r0 = 0; r0 < O; r0 += chunk) {
    const int rows = std::min(chunk, O - r0);
    backend_.matmul_backward_weight(dw.f32(), dout + r0, inp, N, I, rows, false, O, I);
    sink.consume(param, row0 + r0, rows, dw.f32());
  }
}

void LlamaModel::deliver_rows(int param, const float* grad, int64_t rows, int64_t cols, GradSink& sink) {
  const int64_t chunk = gradient_chunk_rows(cols, rows);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) sink.consume(param, r0, std::min(chunk, rows - r0), grad + r0 * cols);
}

void LlamaModel::head_weight_backward(CAct weight, CAct hidden, const float* lse, CAct dx0, const DeviceBatch& db,
                                      float loss_scale, GradSink& sink) {
  Backend& be = backend_;
  const int N = db.N, C = config_.hidden_size, V = config_.vocab_size;
  const int param = head_param();
  const int vc = std::max(1, std::min(V, vocab_chunk_rows)), nt = std::max(1, std::min(N, logits_chunk_tokens));
  Buffer dw = be.alloc(size_t(vc) * C * 4, "weight-gradient chunk");      // (vc, C) one chunk of the weight gradient
  Buffer tile = be.alloc_act(int64_t(nt) * vc, "logits chunk");            // (nt, vc) logits, then their gradient
  for (int v0 = 0; v0 < V; v0 += vc) {
    const int rows = std::min(vc, V - v0);
    const CAct w = weight + int64_t(v0) * C;
    be.zero(dw.get(), size_t(rows) * C * 4);
    for (int r0 = 0; r0 < N; r0 += nt) {
      const int n = std::min(nt, N - r0);
      be.matmul_forward(tile.act(), hidden + int64_t(r0) * C, w, n, C, rows);
      be.cross_entropy_backward(tile.act(), lse + r0, db.targets.i32() + r0, n, rows, v0, V, loss_scale);
      be.matmul_backward_weight(dw.f32(), tile.act(), hidden + int64_t(r0) * C, n, C, rows, true, rows, C);
    }
    if (dx0.ptr) be.embedding_backward(dw.f32(), dx0, db.groups_in(v0, rows), C, v0);
    sink.consume(param, v0, rows, dw.f32());
  }
}

void LlamaModel::embedding_weight_backward(CAct dx0, const DeviceBatch& db, GradSink& sink) {
  Backend& be = backend_;
  const int C = config_.hidden_size, V = config_.vocab_size;
  const int vc = std::max(1, std::min(V, vocab_chunk_rows));
  Buffer dw = be.alloc(size_t(vc) * C * 4, "weight-gradient chunk");  // (vc, C)
  for (int v0 = 0; v0 < V; v0 += vc) {
    const int rows = std::min(vc, V - v0);
    be.zero(dw.get(), size_t(rows) * C * 4);
    be.embedding_backward(dw.f32(), dx0, db.groups_in(v0, rows), C, v0);
    sink.consume(embedding_param(), v0, rows, dw.f32());
  }
}

}  // namespace qft
