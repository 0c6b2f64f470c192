#include "text/bpe.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "text/tokenizer.h"
#include "text/byte_level.h"
#include "text/unicode.h"

namespace qft {

namespace {

// Min-heap order of merge candidates: lowest rank first, then leftmost (HF tokenizers' order).
bool later(const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

}  // namespace

BpeModel::BpeModel(TokenIds vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
                   const std::string& where)
    : vocab_(std::move(vocab)), options_(options) {
  int32_t max_id = -1;
  for (const auto& [tok, id] : vocab_) {
    if (id < 0 || id >= kMaxVocab) throw FileError(where, "model.vocab: token '" + tok + "' has an id outside [0, " + std::to_string(kMaxVocab) + ")");
    max_id = std::max(max_id, id);
  }
  tokens_.resize(size_t(max_id + 1));
  for (const auto& [tok, id] : vocab_) tokens_[size_t(id)] = tok;
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const auto ia = id(a), ib = id(b), ic = id(a + b);
    if (!ia || !ib || !ic) {
      throw FileError(where, "model.merges[" + std::to_string(rank) + "] ('" + a + "', '" + b + "') names a token that is not in the vocabulary ('" +
                                 (!ia ? a : !ib ? b : a + b) + "')");
    }
    merges_.try_emplace(pair_key(*ia, *ib), Merge{uint32_t(rank), *ic});  // the first (lowest) rank wins
  }
  const ByteAlphabet alphabet;
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = -1;
    if (options_.byte_level) {
      std::string ch;
      utf8_append(ch, alphabet.char_of(uint8_t(b)));
      if (auto i = id(ch)) byte_ids_[b] = *i;
      byte_chars_.push_back(std::move(ch));
    } else if (options_.byte_fallback) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      if (auto i = id(name)) byte_ids_[b] = *i;
    }
  }
}

std::optional<int32_t> BpeModel::id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeModel::token(int32_t id) const {
  static const std::string none;
  return id >= 0 && size_t(id) < tokens_.size() ? tokens_[size_t(id)] : none;
}

void BpeModel::add_char_symbols(std::string_view word, BpeScratch& s) const {
  auto push = [&](int32_t id, size_t start, size_t len) {
    s.symbols.push_back({id, int32_t(s.symbols.size()) - 1, int32_t(s.symbols.size()) + 1, uint32_t(start), uint32_t(len)});
  };
  auto unknown = [&](size_t start, size_t len) {
    if (!options_.unk_id) return;  // no unk token: the character is dropped, as HF tokenizers does
    if (options_.fuse_unk && !s.symbols.empty() && s.symbols.back().id == *options_.unk_id) {
      s.symbols.back().len += uint32_t(len);
      return;
    }
    push(*options_.unk_id, start, len);
  };
  if (options_.byte_level) {
    for (size_t i = 0; i < word.size(); ++i) {
      const int32_t id = byte_ids_[static_cast<unsigned char>(word[i])];
      if (id >= 0) {
        push(id, i, 1);
      } else {
        unknown(i, 1);
      }
    }
    return;
  }
  for (size_t i = 0; i < word.size();) {
    const size_t n = std::min(utf8_length(static_cast<unsigned char>(word[i])), word.size() - i);
    if (auto id = this->id(word.substr(i, n))) {
      push(*id, i, n);
    } else if (options_.byte_fallback &&
               std::all_of(word.begin() + ptrdiff_t(i), word.begin() + ptrdiff_t(i + n),
                           [&](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; })) {
      for (size_t k = i; k < i + n; ++k) push(byte_ids_[static_cast<unsigned char>(word[k])], k, 1);
    } else {
      unknown(i, n);
    }
    i += n;
  }
}

void BpeModel::merge_all(BpeScratch& s) const {
  auto& sym = s.symbols;
  auto& heap = s.heap;
  heap.clear();
  auto consider = [&](int32_t left) {
    const int32_t right = sym[size_t(left)].next;
    if (right < 0) return;
    const auto it = merges_.find(pair_key(sym[size_t(left)].id, sym[size_t(right)].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, it->second.new_id});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const BpeScratch::Candidate top = heap.back();
    heap.pop_back();
    auto& left = sym[size_t(top.pos)];
    if (left.len == 0 || left.next < 0) continue;  // merged away since it was queued
    auto& right = sym[size_t(left.next)];
    const auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // the pair changed since
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    right.len = 0;
    if (left.next >= 0) sym[size_t(left.next)].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
}

void BpeModel::encode_word(std::string_view word, BpeScratch& s, std::vector<int32_t>& ids,
                           std::vector<uint32_t>* starts) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    std::string_view whole = word;
    if (options_.byte_level) {
      s.mapped.clear();
      for (char c : word) s.mapped += byte_chars_[static_cast<unsigned char>(c)];
      whole = s.mapped;
    }
    if (auto id = this->id(whole)) {
      ids.push_back(*id);
      if (starts) starts->push_back(0);
      return;
    }
  }
  s.symbols.clear();
  add_char_symbols(word, s);
  if (s.symbols.empty()) return;
  s.symbols.back().next = -1;
  merge_all(s);
  for (const auto& sym : s.symbols) {
    if (sym.len == 0) continue;
    ids.push_back(sym.id);
    if (starts) starts->push_back(sym.start);
  }
}

}  // namespace qft
