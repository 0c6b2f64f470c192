#pragma once
// The stages of a tokenizer.json around its model, each read from its JSON object: normalizers (NFC, NFKC,
// Lowercase, Prepend, Replace, Sequence), pre-tokenizers (ByteLevel, Split, Metaspace, Sequence) and decoders
// (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence). A kind qft does not implement is
// refused by name (UnsupportedError), never ignored.
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "text/pieces.h"

namespace qft {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(Piece& piece) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) the pieces that are not added tokens.
  virtual void split(std::vector<Piece>& pieces) const = 0;
  // Whether the model's symbols are bytes in the byte-level alphabet (a ByteLevel pre-tokenizer ran).
  virtual bool byte_level() const { return false; }
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // HF's decode_chain: token strings in, strings out (joined by the caller).
  virtual std::vector<std::string> decode(std::vector<std::string> tokens) const = 0;
};

// `where` is the file and key path named in errors (e.g. "tokenizer.json: normalizer").
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where);

// The tokens the post-processor puts around a single sequence (TemplateProcessing, ByteLevel, Sequence).
struct Affixes {
  std::vector<int32_t> prefix, suffix;
};
Affixes read_post_processor(const nlohmann::json& j, const std::string& where);

}  // namespace qft
