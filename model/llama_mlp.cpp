// The MLP in pieces, for long sequences: its (tokens, intermediate) activations are the largest a layer holds
// (four of them in the backward), so past a few thousand tokens the forward takes them a block of tokens at a time
// and the backward a block of intermediate columns at a time. Tokens are independent in the forward. In the
// backward, a block of columns is a block of rows of the gate and up matrices, whose gradients are then final; the
// down projection's gradient fills by columns, so it is held whole (fp32) until the last block. Each is used only
// where it holds less in all than the whole MLP; LoRA adapters on the MLP keep it whole.
#include <algorithm>

#include "model/llama_internal.h"

namespace qft {

namespace {

bool mlp_has_adapters(const LayerParams& P) {
  for (LoraTarget t : {LoraTarget::Gate, LoraTarget::Up, LoraTarget::Down}) {
    if (P.lora_a[size_t(t)] >= 0) return true;
  }
  return false;
}

}  // namespace

int LlamaModel::mlp_forward_rows(int layer, int N) const {
  if (mlp_has_adapters(layer_params(layer))) return N;
  // In 64 bits: N is up to 2^24 tokens (trainer/config.cpp) and I up to 2^20.
  const int64_t n = N, C = config_.hidden_size, I = config_.intermediate_size, a = int64_t(backend_.act_bytes(1));
  const int64_t rows = std::clamp<int64_t>(int64_t(mlp_chunk_bytes) / (I * a), 1, n);
  // Whole: gate, up and their product (N, I), one matrix dequantized at a time. In pieces: a piece's gate (then
  // product) and up (rows, I), with the three matrices dequantized throughout.
  const int64_t whole = 3 * n * I * a + C * I * a, pieces = 2 * rows * I * a + 3 * C * I * a;
  return pieces < whole ? int(rows) : N;
}

int LlamaModel::mlp_backward_columns(int layer, int N) const {
  const LayerParams& P = layer_params(layer);
  if (mlp_has_adapters(P)) return config_.intermediate_size;
  const int64_t n = N, C = config_.hidden_size, I = config_.intermediate_size, a = int64_t(backend_.act_bytes(1));
  int64_t cols = std::clamp<int64_t>(int64_t(mlp_chunk_bytes) / (n * a), 1, I);
  if (cols < I && cols > 64) cols -= cols % 64;  // whole tiles for the GEMMs; never split an I that fits
  // Whole: the recompute's gate and up, the product and its gradient (N, I), and the matrices as keep_layer_weights
  // holds them. In pieces: three (N, cols), the three matrices, and the down projection's fp32 gradient.
  const int64_t dense = C * I * a, down_grad = params_[size_t(P.down)].frozen ? 0 : C * I * 4;
  const int64_t whole = 4 * n * I * a + (keep_layer_weights ? 3 : 1) * dense,
                pieces = 3 * n * cols * a + 3 * dense + down_grad;
  return int(pieces < whole ? cols : I);
}

void LlamaModel::mlp_forward_by_rows(int layer, CAct xn2, CAct x_mid, Act x_out, Act proj, int N, int rows) {
  Backend& be = backend_;
  const int C = config_.hidden_size, I = config_.intermediate_size;
  const LayerParams& P = layer_params(layer);
  const DenseWeight gate_w = dense(P.gate), up_w = dense(P.up), down_w = dense(P.down);
  Buffer gate = be.alloc_act(int64_t(rows) * I, "layer activations");  // (rows, I), then silu(gate) * up
  Buffer up = be.alloc_act(int64_t(rows) * I, "layer activations");    // (rows, I)
  for (int r0 = 0; r0 < N; r0 += rows) {
    const int n = std::min(rows, N - r0);
    be.matmul_forward(gate.act(), xn2 + int64_t(r0) * C, gate_w.get(), n, C, I);
    be.matmul_forward(up.act(), xn2 + int64_t(r0) * C, up_w.get(), n, C, I);
    be.swiglu_forward(gate.act(), gate.act(), up.act(), int64_t(n) * I);
    be.matmul_forward(proj + int64_t(r0) * C, gate.act(), down_w.get(), n, I, C);
  }
  be.copy(x_out.ptr, x_mid.ptr, be.act_bytes(int64_t(N) * C));
  be.residual_add(x_out, proj, int64_t(N) * C);
}

void LlamaModel::mlp_backward_by_columns(int layer, const LayerActs& a, Act dx, int N, int cols, GradSink& sink) {
  Backend& be = backend_;
  const int C = config_.hidden_size, I = config_.intermediate_size;
  const LayerParams& P = layer_params(layer);
  const DenseWeight gate_w = dense(P.gate), up_w = dense(P.up), down_w = dense(P.down);
  const bool down_trained = !params_[size_t(P.down)].frozen;
  Buffer down_grad;  // (C, I), filled a block of columns at a time
  if (down_trained) down_grad = be.alloc(size_t(C) * I * 4, "down-projection gradient");
  Buffer dxn = be.alloc_act(int64_t(N) * C, "layer gradients");     // (N, C)
  Buffer gate = be.alloc_act(int64_t(N) * cols, "layer activations");  // (N, cols), then its gradient
  Buffer up = be.alloc_act(int64_t(N) * cols, "layer activations");    // (N, cols), then its gradient
  Buffer act = be.alloc_act(int64_t(N) * cols, "layer gradients");     // (N, cols) silu(gate) * up, then its gradient
  for (int i0 = 0; i0 < I; i0 += cols) {
    const int n = std::min(cols, I - i0);
    const CAct gate_rows = gate_w.get() + int64_t(i0) * C, up_rows = up_w.get() + int64_t(i0) * C;
    be.matmul_forward(gate.act(), a.xn2.act(), gate_rows, N, C, n);
    be.matmul_forward(up.act(), a.xn2.act(), up_rows, N, C, n);
    be.swiglu_forward(act.act(), gate.act(), up.act(), int64_t(N) * n);
    if (down_trained) be.matmul_backward_weight(down_grad.f32() + i0, dx, act.act(), N, n, C, false, C, I);
    be.matmul_backward_input(act.act(), dx, down_w.get() + i0, N, n, C, false, I);  // columns [i0, i0 + n) of w_down
    be.swiglu_backward(gate.act(), up.act(), act.act(), gate.act(), up.act(), int64_t(N) * n);  // -> dgate, dup
    be.matmul_backward_input(dxn.act(), gate.act(), gate_rows, N, C, n, i0 > 0, C);
    be.matmul_backward_input(dxn.act(), up.act(), up_rows, N, C, n, true, C);
    weight_gradient(P.gate, gate.act(), a.xn2.act(), N, C, n, sink, i0);
    weight_gradient(P.up, up.act(), a.xn2.act(), N, C, n, sink, i0);
  }
  if (down_trained) deliver_rows(P.down, down_grad.f32(), C, I, sink);
  norm_backward(P.mlp_norm, dx, dxn.act(), a.x_mid.act(), a.rstd2.f32(), N, sink);
}

}  // namespace qft
