#include "text/added_tokens.h"

#include <algorithm>

#include "text/unicode.h"

namespace qft {

namespace {

// The character that ends at byte `end` of text (valid UTF-8).
char32_t char_before(const std::string& text, size_t end) {
  size_t at = end - 1;
  while (at > 0 && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) --at;
  return utf8_decode(text, at);
}

bool is_word_char(char32_t c) { return is_alphanumeric(c) || c == U'_'; }

}  // namespace

AddedTokens::AddedTokens(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)), by_first_byte_(256) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (!tokens_[i].content.empty()) by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
    by_id_.emplace(tokens_[i].id, i);  // the first of a repeated id wins, as the linear search did
  }
  for (auto& list : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(),
                     [&](size_t a, size_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
  }
}

const AddedToken* AddedTokens::find(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedTokens::find(const std::string& content) const {
  for (const auto& t : tokens_) {
    if (t.content == content) return &t;
  }
  return nullptr;
}

void AddedTokens::split_piece(const Piece& piece, bool normalized, std::vector<Piece>& out) const {
  const std::string& s = piece.text;
  size_t emitted = 0;  // bytes of s already in `out`
  for (size_t at = 0; at < s.size(); ++at) {
    const auto& candidates = by_first_byte_[static_cast<unsigned char>(s[at])];
    if (candidates.empty()) continue;
    for (size_t index : candidates) {
      const AddedToken& t = tokens_[index];
      if (t.normalized != normalized || s.compare(at, t.content.size(), t.content) != 0) continue;
      size_t start = at, stop = at + t.content.size();
      if (t.single_word) {
        const bool word_before = start > 0 && is_word_char(char_before(s, start));
        const bool word_after = stop < s.size() && is_word_char(utf8_decode(s, stop));
        if (word_before || word_after) continue;
      }
      if (t.lstrip) {
        while (start > emitted && is_whitespace(char_before(s, start))) {
          start -= 1;
          while (start > emitted && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        }
      }
      if (t.rstrip) {
        while (stop < s.size() && is_whitespace(utf8_decode(s, stop))) stop += utf8_length(static_cast<unsigned char>(s[stop]));
      }
      if (start > emitted) out.push_back(piece.slice(emitted, start));
      Piece tok = piece.slice(start, stop);
      tok.token = t.id;
      out.push_back(std::move(tok));
      emitted = stop;
      at = stop - 1;
      break;
    }
  }
  if (emitted == 0) {
    out.push_back(piece);
  } else if (emitted < s.size()) {
    out.push_back(piece.slice(emitted, s.size()));
  }
}

void AddedTokens::split(std::vector<Piece>& pieces, bool normalized) const {
  if (tokens_.empty()) return;
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (Piece& p : pieces) {
    if (p.token >= 0) {
      out.push_back(std::move(p));
    } else {
      split_piece(p, normalized, out);
    }
  }
  pieces = std::move(out);
}

}  // namespace qft
