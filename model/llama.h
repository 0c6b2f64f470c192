#pragma once
// LlamaForCausalLM composed from backend ops. Weights live on the backend in fp32 for now.
#include <cstdint>
#include <functional>
#include <vector>

#include "model/llama_config.h"
#include "ops/backend.h"

namespace qft {

class HfModel;

// A batch of B sequences of T tokens, in host memory. targets[b*T + t] is the token that position t must
// predict, or kIgnoreIndex. positions restart at every packed document; doc_start (optional, empty = plain
// causal) gives each position's first visible key.
struct Batch {
  int B = 0, T = 0;
  std::vector<int32_t> tokens, targets, positions, doc_start;

  // HF convention: labels are aligned with input_ids and shifted inside the loss (targets[t] = labels[t+1]).
  static Batch from_labels(int B, int T, const std::vector<int32_t>& input_ids, const std::vector<int32_t>& labels);
  void validate(int vocab_size) const;  // throws qft::Error on a malformed batch
};

struct LossSum {
  double loss_sum = 0;  // sum of per-token cross-entropy over target tokens
  int64_t tokens = 0;   // number of target tokens
  double mean() const { return tokens ? loss_sum / double(tokens) : 0.0; }
};

struct LayerWeights {
  Buffer attn_norm, wq, wk, wv, wo, mlp_norm, w_gate, w_up, w_down;
};

class LlamaModel {
 public:
  // Loads every tensor of the HF checkpoint into backend memory as fp32.
  LlamaModel(const HfModel& hf, Backend& backend);

  const LlamaConfig& config() const { return config_; }
  Backend& backend() const { return backend_; }

  LossSum forward_loss(const Batch& batch);
  std::vector<float> forward_logits(const Batch& batch);  // (B*T, V) on the host

  // Token rows per LM-head chunk: full-vocabulary logits never exist for the whole batch at once.
  int logits_chunk_tokens = 256;

 private:
  struct DeviceBatch;
  DeviceBatch upload(const Batch& batch);
  Buffer forward_hidden(const DeviceBatch& db);  // (N, C) final-normed hidden states
  void layer_forward(const LayerWeights& w, float* x, const DeviceBatch& db);
  // Runs the LM head chunk by chunk; fn(first_row, rows, logits) sees each (rows, V) chunk in backend memory.
  void lm_head(const float* hidden, int N, const std::function<void(int, int, const float*)>& fn);
  const float* lm_head_weight() const { return config_.tie_word_embeddings ? embed_.f32() : lm_head_.f32(); }

  LlamaConfig config_;
  Backend& backend_;
  Buffer embed_, final_norm_, lm_head_, inv_freq_;
  std::vector<LayerWeights> layers_;
};

}  // namespace qft
