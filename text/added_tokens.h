#pragma once
// Added tokens of a tokenizer.json (special tokens such as <|eot_id|>, and user-added ones): found in the text
// before anything else runs, leftmost and longest first, as HF tokenizers finds them, honouring each token's
// lstrip / rstrip (swallow the whitespace beside it), single_word (only between non-word characters) and
// normalized (match the normalized text rather than the raw one) flags.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "text/pieces.h"

namespace qft {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false;
};

class AddedTokens {
 public:
  explicit AddedTokens(std::vector<AddedToken> tokens);
  // Cuts the tokens whose `normalized` flag equals `normalized` out of every piece that is not yet a token.
  void split(std::vector<Piece>& pieces, bool normalized) const;
  const std::vector<AddedToken>& all() const { return tokens_; }
  const AddedToken* find(int32_t id) const;
  const AddedToken* find(const std::string& content) const;

 private:
  void split_piece(const Piece& piece, bool normalized, std::vector<Piece>& out) const;
  std::vector<AddedToken> tokens_;
  std::vector<std::vector<size_t>> by_first_byte_;  // token indices by first byte, longest first
  std::unordered_map<int32_t, size_t> by_id_;        // decode looks up every id
};

}  // namespace qft
