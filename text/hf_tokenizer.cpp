// tokenizer.json (HF tokenizers) with a BPE model: added tokens, normalizer, pre-tokenizer, BPE, decoder, and
// the post-processor's BOS/EOS, each read from the file.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "text/added_tokens.h"
#include "text/bpe.h"
#include "text/tokenizer_files.h"
#include "text/unicode.h"

namespace qft {

namespace {

using nlohmann::json;

// A token id as tokenizer.json may give it: an integer below kMaxVocab (a larger one would size tables by it).
bool is_token_id(const json& id) { return json_integer_in(id, 0, kMaxVocab - 1).has_value(); }

std::vector<std::pair<std::string, std::string>> read_merges(const json& merges, const std::string& where) {
  if (!merges.is_array()) throw FileError(where, "model.merges: expected a list");
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {  // "a b": the pair is split at its first space (no token of a byte-level vocabulary has one)
      const auto& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ', 1);
      if (space == std::string::npos) throw FileError(where, "model.merges[" + std::to_string(i) + "] '" + s + "' is not two tokens");
      out.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      throw FileError(where, "model.merges[" + std::to_string(i) + "]: expected \"a b\" or [\"a\", \"b\"]");
    }
  }
  return out;
}

std::string optional_string(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (!it->is_string()) throw FileError(where, std::string("model.") + key + ": expected a string");
  return it->get<std::string>();
}

BpeModel read_bpe(const json& model, bool byte_level, const std::string& where) {
  if (!model.is_object()) throw FileError(where, "model: expected an object");
  const std::string type = model.value("type", model.contains("merges") ? "BPE" : "");
  if (type != "BPE") {
    throw UnsupportedError(where + ": model type '" + type + "' is not supported (qft reads BPE tokenizers; WordPiece, "
                                   "Unigram and WordLevel are not)");
  }
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() != 0.0) {
    throw UnsupportedError(where + ": model.dropout (BPE dropout) is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!optional_string(model, key, where).empty()) throw UnsupportedError(where + ": model." + key + " is not supported");
  }
  const auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object()) throw FileError(where, "model.vocab: expected an object of token -> id");
  TokenIds vocab;
  vocab.reserve(vocab_it->size());
  for (const auto& [tok, id] : vocab_it->items()) {
    if (!is_token_id(id)) throw FileError(where, "model.vocab['" + tok + "']: expected an integer id in [0, " + std::to_string(kMaxVocab) + ")");
    vocab.emplace(tok, id.get<int32_t>());
  }
  BpeOptions o;
  o.byte_level = byte_level;
  o.byte_fallback = model.value("byte_fallback", false);
  o.fuse_unk = model.value("fuse_unk", false);
  o.ignore_merges = model.value("ignore_merges", false);
  const std::string unk = optional_string(model, "unk_token", where);
  if (!unk.empty()) {
    const auto it = vocab.find(unk);
    if (it == vocab.end()) throw FileError(where, "model.unk_token '" + unk + "' is not in the vocabulary");
    o.unk_id = it->second;
  }
  return BpeModel(std::move(vocab), read_merges(model.value("merges", json::array()), where), o, where);
}

std::vector<AddedToken> read_added_tokens(const json& j, const std::string& where) {
  std::vector<AddedToken> out;
  if (j.is_null()) return out;
  if (!j.is_array()) throw FileError(where, "added_tokens: expected a list");
  for (size_t i = 0; i < j.size(); ++i) {
    const json& t = j[i];
    const std::string at = "added_tokens[" + std::to_string(i) + "]";
    if (!t.is_object() || !t.contains("id") || !is_token_id(t["id"]) || !t.contains("content") || !t["content"].is_string()) {
      throw FileError(where, at + ": expected an object with an integer \"id\" in [0, " + std::to_string(kMaxVocab) +
                                 ") and a string \"content\"");
    }
    AddedToken a;
    a.content = t["content"].get<std::string>();
    a.id = t["id"].get<int32_t>();
    if (a.content.empty() || a.id < 0) throw FileError(where, at + ": empty content or negative id");
    a.special = t.value("special", false);
    a.single_word = t.value("single_word", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.normalized = t.value("normalized", !a.special);
    out.push_back(std::move(a));
  }
  return out;
}

class HfTokenizer final : public TokenizerModel {
 public:
  HfTokenizer(const json& j, const std::string& where)
      : path_(where),
        added_(read_added_tokens(j.value("added_tokens", json()), where)),
        normalizer_(make_normalizer(j.value("normalizer", json()), where + ": normalizer")),
        pre_tokenizer_(make_pre_tokenizer(j.value("pre_tokenizer", json()), where + ": pre_tokenizer")),
        bpe_(read_bpe(j.value("model", json()), pre_tokenizer_ && pre_tokenizer_->byte_level(), where)),
        decoder_(make_decoder(j.value("decoder", json()), where + ": decoder")) {
    vocab_size_ = bpe_.size();
    for (const auto& t : added_.all()) vocab_size_ = std::max(vocab_size_, t.id + 1);
  }

  void encode(std::string_view text, std::vector<int32_t>& ids, std::vector<size_t>* offsets) const override {
    if (const size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
      throw Error("text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
    }
    if (text.size() >= UINT32_MAX) throw Error("text too long to tokenize at once (" + std::to_string(text.size()) + " bytes)");
    std::vector<Piece> pieces(1);
    pieces[0].text = std::string(text);
    added_.split(pieces, false);
    if (normalizer_) {
      for (Piece& p : pieces) {
        if (p.token < 0) normalizer_->apply(p);
      }
    }
    added_.split(pieces, true);
    if (pre_tokenizer_) pre_tokenizer_->split(pieces);
    BpeScratch scratch;
    std::vector<uint32_t> starts;
    for (const Piece& p : pieces) {
      if (p.token >= 0) {
        ids.push_back(p.token);
        if (offsets) offsets->push_back(p.source(0));
        continue;
      }
      starts.clear();
      bpe_.encode_word(p.text, scratch, ids, offsets ? &starts : nullptr);
      if (offsets) {
        for (uint32_t s : starts) offsets->push_back(p.source(s));
      }
    }
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      if (const AddedToken* t = added_.find(id)) {
        if (!t->special) tokens.push_back(t->content);
      } else {
        tokens.push_back(bpe_.token(id));
      }
    }
    if (decoder_) tokens = decoder_->decode(std::move(tokens));
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i > 0 && !decoder_ ? " " : "") + tokens[i];
    return out;
  }

  int vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> token_id(std::string_view token) const override {
    if (const AddedToken* t = added_.find(std::string(token))) return t->id;
    return bpe_.id(token);
  }
  std::string describe() const override {
    return std::string(bpe_.options().byte_level ? "byte-level BPE" : bpe_.options().byte_fallback ? "BPE with byte fallback" : "BPE");
  }

 private:
  std::string path_;
  AddedTokens added_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  BpeModel bpe_;
  std::unique_ptr<Decoder> decoder_;
  int32_t vocab_size_ = 0;
};

// transformers 5's LlamaTokenizer (tokenizer_class LlamaTokenizer or LlamaTokenizerFast: Llama-2, Mistral) keeps
// the file's vocabulary, merges, added tokens and post-processor but builds its own normalizer, pre-tokenizer
// and decoder: Metaspace with prepend_scheme "first" (or "always" with legacy: true; "never" with
// add_prefix_space: false). AutoTokenizer gives these ids, so qft builds the same.
void apply_tokenizer_class(json& j, const json& config) {
  if (!config.is_object()) return;
  const std::string cls = config.value("tokenizer_class", "");
  if (cls != "LlamaTokenizer" && cls != "LlamaTokenizerFast") return;
  auto flag = [&](const char* key, bool fallback) {
    const auto it = config.find(key);
    return it != config.end() && it->is_boolean() ? it->get<bool>() : fallback;
  };
  const bool prefix = flag("add_prefix_space", true), legacy = flag("legacy", false);
  const std::string space = "\xE2\x96\x81";
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", space}, {"split", false},
                        {"prepend_scheme", !prefix ? "never" : legacy ? "always" : "first"}};
  json decoders = json::array({{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
                               {{"type", "ByteFallback"}}, {{"type", "Fuse"}}});
  if (prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  j["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
}

}  // namespace

TokenizerFile open_tokenizer_json(const std::string& path, const json& tokenizer_config) {
  json j = read_json_file(path);
  if (!j.is_object()) throw FileError(path, "expected a JSON object");
  apply_tokenizer_class(j, tokenizer_config);
  TokenizerFile f;
  try {
    f.model = std::make_unique<HfTokenizer>(j, path);
    f.affixes = read_post_processor(j.value("post_processor", json()), path + ": post_processor");
  } catch (const json::exception& e) {  // a field of the wrong JSON type
    throw FileError(path, e.what());
  } catch (const UnsupportedError&) {
    throw;
  } catch (const FileError&) {
    throw;
  } catch (const Error& e) {  // the stages' messages already begin with the file
    const std::string m = e.what();
    throw FileError(path, m.rfind(path + ": ", 0) == 0 ? m.substr(path.size() + 2) : m);
  }
  return f;
}

}  // namespace qft
