#pragma once
// A model's tokenizer, read from its directory the way transformers' AutoTokenizer reads it: tokenizer.json
// (HF tokenizers: byte-level BPE as in Llama-3, SmolLM2 and GPT-2, or sentencepiece-style BPE as in Llama-2 and
// Mistral) when the directory has one, else the sentencepiece tokenizer.model; with BOS/EOS, the chat template
// and the stop tokens from tokenizer_config.json, chat_template.jinja, generation_config.json and config.json.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qft {

// The largest vocabulary qft reads (as config.json's vocab_size bound): a token id at or above it is refused, since
// tables are sized by the largest id.
inline constexpr int32_t kMaxVocab = int32_t(1) << 22;

// One tokenizer file's text <-> ids (text/hf_tokenizer.cpp, text/sentencepiece_model.cpp).
class TokenizerModel {
 public:
  virtual ~TokenizerModel() = default;
  // Appends the ids of `text` and, when `offsets` is given, the byte of `text` where each token begins.
  // Special tokens written in the text become their ids. No BOS/EOS.
  virtual void encode(std::string_view text, std::vector<int32_t>& ids, std::vector<size_t>* offsets) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;  // special tokens left out
  virtual int vocab_size() const = 0;
  virtual std::optional<int32_t> token_id(std::string_view token) const = 0;
  virtual std::string describe() const = 0;  // e.g. "byte-level BPE"
};

class Tokenizer {
 public:
  // Throws FileError naming the file for a missing or malformed tokenizer, UnsupportedError for a kind qft does
  // not implement.
  explicit Tokenizer(const std::string& model_dir);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text -> ids with no BOS/EOS; special tokens written in the text (e.g. <|eot_id|>) become their ids, as in
  // HF tokenizers. `offsets`, when given, receives the byte of `text` where each token begins.
  std::vector<int32_t> encode_raw(std::string_view text, std::vector<size_t>* offsets = nullptr) const;
  // encode_raw between the tokens the model puts around a text (BOS, for most): tokenizer.json's
  // post-processor, or tokenizer_config.json's add_bos_token / add_eos_token for a tokenizer.model.
  std::vector<int32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<int32_t>& ids) const;  // special tokens left out

  int32_t bos_id() const { return bos_id_; }  // -1: the model has none
  int32_t eos_id() const { return eos_id_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  bool add_bos() const { return !prefix_.empty(); }
  bool add_eos() const { return !suffix_.empty(); }
  const std::vector<int32_t>& prefix_ids() const { return prefix_; }
  const std::vector<int32_t>& suffix_ids() const { return suffix_; }
  // Every token that ends a generation: EOS and the eos_token_id (one id or a list) of generation_config.json
  // and config.json.
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  bool is_stop(int32_t id) const;
  std::optional<int32_t> token_id(std::string_view token) const { return model_->token_id(token); }
  int vocab_size() const { return model_->vocab_size(); }

  const std::string& path() const { return path_; }  // the tokenizer file read
  std::string describe() const;                      // "byte-level BPE (DIR/tokenizer.json)"
  // The model's own chat template (Jinja text) and the file it came from; empty when it has none.
  const std::string& chat_template() const { return chat_template_; }
  const std::string& chat_template_path() const { return chat_template_path_; }

 private:
  void read_tokenizer_config(const std::string& dir);
  void read_stop_ids(const std::string& dir);

  std::unique_ptr<TokenizerModel> model_;
  std::string path_;
  std::vector<int32_t> prefix_, suffix_, stop_ids_;
  int32_t bos_id_ = -1, eos_id_ = -1;
  std::string bos_token_, eos_token_, chat_template_, chat_template_path_;
};

}  // namespace qft
