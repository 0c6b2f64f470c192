#include "model/batch.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "core/error.h"

namespace qft {

Batch Batch::from_labels(int B, int T, const std::vector<int32_t>& input_ids, const std::vector<int32_t>& labels) {
  if (input_ids.size() != size_t(B) * T || labels.size() != size_t(B) * T) {
    throw Error("Batch::from_labels: expected " + std::to_string(B * T) + " input ids and labels");
  }
  Batch b;
  b.B = B;
  b.T = T;
  b.tokens = input_ids;
  b.targets.assign(size_t(B) * T, kIgnoreIndex);
  b.positions.resize(size_t(B) * T);
  for (int r = 0; r < B; ++r) {
    for (int t = 0; t < T; ++t) {
      b.positions[size_t(r) * T + t] = t;
      if (t + 1 < T) b.targets[size_t(r) * T + t] = labels[size_t(r) * T + t + 1];
    }
  }
  return b;
}

Batch Batch::sequence(const std::vector<int32_t>& tokens, int first_position) {
  Batch b;
  b.B = 1;
  b.T = int(tokens.size());
  b.tokens = tokens;
  b.targets.assign(tokens.size(), kIgnoreIndex);
  for (int t = 0; t < b.T; ++t) b.positions.push_back(first_position + t);
  return b;
}

void Batch::validate(int vocab_size) const {
  const size_t n = size_t(B) * T;
  if (B <= 0 || T <= 0) throw Error("batch: B and T must be positive");
  if (tokens.size() != n || targets.size() != n || positions.size() != n || (!doc_start.empty() && doc_start.size() != n)) {
    throw Error("batch: tokens, targets, positions and doc_start must each hold B*T entries");
  }
  for (size_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab_size) {
      throw Error("batch: token id " + std::to_string(tokens[i]) + " outside the vocabulary of " + std::to_string(vocab_size));
    }
    if (targets[i] != kIgnoreIndex && (targets[i] < 0 || targets[i] >= vocab_size)) {
      throw Error("batch: target id " + std::to_string(targets[i]) + " outside the vocabulary of " + std::to_string(vocab_size));
    }
    const int t = int(i % size_t(T));
    if (!doc_start.empty() && (doc_start[i] < 0 || doc_start[i] > t)) throw Error("batch: doc_start must lie in [0, t]");
  }
}

int64_t Batch::target_count() const {
  int64_t n = 0;
  for (int32_t t : targets) n += t != kIgnoreIndex;
  return n;
}

TokenGroups TokenGroups::of(const std::vector<int32_t>& tokens) {
  TokenGroups g;
  g.order.resize(tokens.size());
  std::iota(g.order.begin(), g.order.end(), 0);
  std::stable_sort(g.order.begin(), g.order.end(), [&](int32_t a, int32_t b) { return tokens[size_t(a)] < tokens[size_t(b)]; });
  for (size_t k = 0; k < g.order.size(); ++k) {
    const int32_t t = tokens[size_t(g.order[k])];
    if (g.token.empty() || g.token.back() != t) {
      g.token.push_back(t);
      g.start.push_back(int32_t(k));
    }
  }
  g.start.push_back(int32_t(g.order.size()));
  return g;
}

void TokenGroups::range(int v0, int rows, int& first, int& count) const {
  first = int(std::lower_bound(token.begin(), token.end(), v0) - token.begin());
  count = int(std::lower_bound(token.begin(), token.end(), v0 + rows) - token.begin()) - first;
}

}  // namespace qft
