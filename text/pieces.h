#pragma once
// The pipeline a tokenizer.json describes works on pieces of the input: added tokens are cut out first, the
// rest is normalized, split by the pre-tokenizer and encoded by the model. Each piece remembers where its
// bytes came from in the original text, so that every token can be traced back to it (loss masks of chat turns).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qft {

struct Piece {
  std::string text;
  uint32_t base = 0;             // original offset of text[0] while origin is empty (the bytes are unchanged)
  std::vector<uint32_t> origin;  // else: the original offset of each byte of text
  int32_t token = -1;            // an added token's id: the piece is final
  bool normalized = false;

  size_t source(size_t i) const { return origin.empty() ? base + i : origin[i]; }
  // The bytes [a, b) as a piece of their own.
  Piece slice(size_t a, size_t b) const {
    Piece p;
    p.text = text.substr(a, b - a);
    p.normalized = normalized;
    if (origin.empty()) {
      p.base = base + uint32_t(a);
    } else {
      p.origin.assign(origin.begin() + std::ptrdiff_t(a), origin.begin() + std::ptrdiff_t(b));
    }
    return p;
  }
};

// Rewrites a piece: each edit replaces the bytes [start, end) with `with`, whose bytes then come from the
// original position of `start`. Edits are sorted and do not overlap.
struct Edit {
  size_t start, end;
  std::string with;
};
inline void apply_edits(Piece& p, const std::vector<Edit>& edits) {
  if (edits.empty()) return;
  std::string text;
  std::vector<uint32_t> origin;
  text.reserve(p.text.size() + 16);
  origin.reserve(p.text.size() + 16);
  size_t at = 0;
  auto keep = [&](size_t a, size_t b) {
    text.append(p.text, a, b - a);
    for (size_t i = a; i < b; ++i) origin.push_back(uint32_t(p.source(i)));
  };
  for (const Edit& e : edits) {
    keep(at, e.start);
    // An insertion at the very end has no byte of its own: it takes the position of the last byte.
    const uint32_t from = uint32_t(e.start < p.text.size() ? p.source(e.start) : p.text.empty() ? p.base : p.source(p.text.size() - 1));
    text += e.with;
    origin.insert(origin.end(), e.with.size(), from);
    at = e.end;
  }
  keep(at, p.text.size());
  p.text = std::move(text);
  p.origin = std::move(origin);
}

}  // namespace qft
