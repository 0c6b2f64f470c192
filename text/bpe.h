#pragma once
// The BPE model of a tokenizer.json: vocabulary, ranked merges, and HF tokenizers' algorithm for one
// pre-tokenized word (repeatedly merge the adjacent pair of lowest rank, leftmost first). Byte-level models
// (GPT-2, Llama-3) start from one symbol per byte; the others (sentencepiece-style) from one per character, with
// <0xXX> byte tokens for characters outside the vocabulary (byte_fallback).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace qft {

struct StringHash {  // lets unordered_map<std::string, ...> look up a string_view without a copy
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIds = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct BpeOptions {
  bool byte_level = false;     // symbols are bytes written in the byte alphabet (the pre-tokenizer had ByteLevel)
  bool byte_fallback = false;  // a character missing from the vocabulary becomes its <0xXX> byte tokens
  bool fuse_unk = false;       // consecutive unknown characters become one unk token
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token, whatever the merges say
  std::optional<int32_t> unk_id;
};

// Working memory of encode_word, reused across the words of one text.
struct BpeScratch {
  struct Symbol {
    int32_t id, prev, next;
    uint32_t start, len;  // bytes of the word
  };
  struct Candidate {
    uint32_t rank;
    int32_t pos, new_id;
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::string mapped;
};

class BpeModel {
 public:
  // `where` names the file in errors. Throws FileError for a merge naming a token that is not in the vocabulary.
  BpeModel(TokenIds vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& where);

  // Appends the ids of one word and, when `starts` is given, the byte of `word` where each token begins.
  void encode_word(std::string_view word, BpeScratch& scratch, std::vector<int32_t>& ids,
                   std::vector<uint32_t>* starts) const;

  std::optional<int32_t> id(std::string_view token) const;
  const std::string& token(int32_t id) const;  // "" for an id the vocabulary does not have
  int32_t size() const { return int32_t(tokens_.size()); }
  const BpeOptions& options() const { return options_; }

 private:
  void add_char_symbols(std::string_view word, BpeScratch& s) const;
  void merge_all(BpeScratch& s) const;

  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  TokenIds vocab_;
  std::vector<std::string> tokens_;
  std::unordered_map<uint64_t, Merge> merges_;
  BpeOptions options_;
  std::vector<std::string> byte_chars_;  // byte-level: the alphabet character of each byte, as UTF-8
  int32_t byte_ids_[256];                // byte-level: that character's id; byte fallback: <0xXX>'s id; -1: none
};

}  // namespace qft
