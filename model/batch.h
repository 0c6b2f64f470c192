#pragma once
// A batch of token sequences on the host, and the label that carries no loss. Host code that only builds
// batches includes this, not the kernels.
#include <cstdint>
#include <vector>

namespace qft {

// The label that carries no loss, as in PyTorch. Kernels treat any negative target this way.
constexpr int32_t kIgnoreIndex = -100;
static_assert(kIgnoreIndex < 0, "the cross-entropy kernels skip negative targets");

// A batch of B sequences of T tokens, in host memory. targets[b*T + t] is the token that position t must
// predict, or kIgnoreIndex. positions restart at every packed document; doc_start (optional, empty = plain
// causal) gives each position's first visible key.
struct Batch {
  int B = 0, T = 0;
  std::vector<int32_t> tokens, targets, positions, doc_start;

  // HF convention: labels are aligned with input_ids and shifted inside the loss (targets[t] = labels[t+1]).
  static Batch from_labels(int B, int T, const std::vector<int32_t>& input_ids, const std::vector<int32_t>& labels);
  // One sequence (B = 1) without targets, at positions first_position, first_position + 1, ... (inference).
  static Batch sequence(const std::vector<int32_t>& tokens, int first_position = 0);
  void validate(int vocab_size) const;  // throws qft::Error on a malformed batch
  int64_t target_count() const;         // targets that carry loss
};

// A batch's positions grouped by token id, built on the host once per batch: the embedding gradient then gives
// each (token, column) its own thread and still adds that token's positions in order (deterministic).
struct TokenGroups {
  std::vector<int32_t> order;  // (N,) positions, sorted by token id, then by position
  std::vector<int32_t> start;  // (groups + 1,) group g holds order[start[g] .. start[g + 1])
  std::vector<int32_t> token;  // (groups,) ascending
  static TokenGroups of(const std::vector<int32_t>& tokens);
  int groups() const { return int(token.size()); }
  // The groups whose token lies in [v0, v0 + rows): [first, first + count).
  void range(int v0, int rows, int& first, int& count) const;
};

struct LossSum {
  double loss_sum = 0;  // sum of per-token cross-entropy over target tokens
  int64_t tokens = 0;   // number of target tokens
  double mean() const { return tokens ? loss_sum / double(tokens) : 0.0; }
};

}  // namespace qft
