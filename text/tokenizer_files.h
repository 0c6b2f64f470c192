#pragma once
// The two tokenizer files qft reads, each opened into a TokenizerModel plus what the file itself says about
// BOS/EOS. Internal to text/: everything else goes through Tokenizer.
#include <memory>
#include <optional>
#include <string>

#include "text/hf_pipeline.h"
#include "text/tokenizer.h"

namespace qft {

struct TokenizerFile {
  std::unique_ptr<TokenizerModel> model;
  std::optional<Affixes> affixes;    // tokenizer.json's post-processor; nullopt: tokenizer_config.json decides
  std::string bos_token, eos_token;  // the file's own, when it names them (sentencepiece); tokenizer_config wins
};

// `tokenizer_config` (tokenizer_config.json, or null) matters where transformers' tokenizer class rebuilds part of
// the pipeline instead of reading it from the file, as its LlamaTokenizer (Llama-2, Mistral) does.
TokenizerFile open_tokenizer_json(const std::string& path, const nlohmann::json& tokenizer_config);
TokenizerFile open_sentencepiece_model(const std::string& path);

}  // namespace qft
