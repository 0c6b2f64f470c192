#pragma once
// The model's tokenizer: sentencepiece tokenizer.model (LLaMA-1/2, Mistral), with BOS/EOS settings read from
// tokenizer_config.json. The sentencepiece header stays inside tokenizer.cpp.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qft {

class Tokenizer {
 public:
  // Opens dir/tokenizer.model. A directory with only tokenizer.json (LLaMA-3 BPE) gets UnsupportedError;
  // one with neither gets FileError.
  explicit Tokenizer(const std::string& model_dir);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Encodes text; BOS/EOS are added where tokenizer_config.json says (add_bos_token defaults to true).
  std::vector<int32_t> encode(std::string_view text) const;
  std::vector<int32_t> encode_raw(std::string_view text) const;  // no BOS/EOS
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t bos_id() const;
  int32_t eos_id() const;
  int vocab_size() const;
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  bool add_bos_ = true;
  bool add_eos_ = false;
};

}  // namespace qft
