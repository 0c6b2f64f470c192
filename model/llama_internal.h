#pragma once
// Definitions shared by llama.cpp (forward) and llama_backward.cpp; not part of the model's interface.
#include "model/llama.h"

namespace qft {

struct LlamaModel::DeviceBatch {
  int B, T, N;  // N = B * T tokens
  Buffer tokens, targets, positions, doc_start;
  Buffer doc_span_start;  // the packed documents as spans (DocumentSpans), for backends that take them so
  DocumentSpans docs;
  TokenGroups groups;  // on the host, and their arrays below: only for the backward pass (the embedding gradient)
  Buffer group_order, group_start, group_token;
  TokenGroupsView groups_in(int v0, int rows) const {  // the groups of vocabulary rows [v0, v0 + rows)
    TokenGroupsView v{group_order.i32(), group_start.i32(), group_token.i32(), 0, 0};
    groups.range(v0, rows, v.first, v.count);
    return v;
  }
};

// What one layer's backward pass needs from its recomputed forward pass.
struct LlamaModel::LayerActs {
  // xn1, xn2: freed after their GEMMs, but xn2 kept (and gate, up not made) when the backward takes the MLP in pieces
  Buffer xn1, rstd1, q, k, v, lse, att_out, x_mid, xn2, rstd2, gate, up;
};

// One layer's matrices in the form its GEMMs read (DenseWeight), kept from the recompute for the backward pass.
struct LlamaModel::LayerWeights {
  DenseWeight q, k, v, o, gate, up, down;
};

// Sums the per-token losses (N,) of a batch over its target tokens, on the host.
LossSum sum_losses(Backend& be, const Buffer& loss, const Batch& batch);

}  // namespace qft
