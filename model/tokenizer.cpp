#include "model/tokenizer.h"

#include <sentencepiece_processor.h>

#include <filesystem>

#include "core/error.h"
#include "core/json_file.h"

namespace qft {

namespace fs = std::filesystem;

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

Tokenizer::Tokenizer(const std::string& model_dir) : impl_(std::make_unique<Impl>()) {
  const fs::path dir(model_dir);
  path_ = (dir / "tokenizer.model").string();
  if (!fs::exists(path_)) {
    if (fs::exists(dir / "tokenizer.json")) {
      throw UnsupportedError((dir / "tokenizer.json").string() +
                             ": BPE tokenizers in tokenizer.json (LLaMA-3 style) are not supported yet; "
                             "qft needs a sentencepiece tokenizer.model");
    }
    throw FileError(path_, "tokenizer not found (expected a sentencepiece tokenizer.model in the model directory)");
  }
  auto status = impl_->sp.Load(path_);
  if (!status.ok()) throw FileError(path_, "not a valid sentencepiece model: " + status.ToString());

  const fs::path cfg = dir / "tokenizer_config.json";
  if (fs::exists(cfg)) {
    const nlohmann::json j = read_json_file(cfg.string());
    for (auto [key, dst] : {std::pair{"add_bos_token", &add_bos_}, std::pair{"add_eos_token", &add_eos_}}) {
      if (!j.contains(key) || j[key].is_null()) continue;
      if (!j[key].is_boolean()) throw ConfigError(cfg.string(), key, "must be true or false");
      *dst = j[key].get<bool>();
    }
  }
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode_raw(std::string_view text) const {
  std::vector<int> ids;
  auto status = impl_->sp.Encode(text, &ids);
  if (!status.ok()) throw Error(path_ + ": encode failed: " + status.ToString());
  return {ids.begin(), ids.end()};
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  if (add_bos_ && bos_id() >= 0) ids.push_back(bos_id());
  auto body = encode_raw(text);
  ids.insert(ids.end(), body.begin(), body.end());
  if (add_eos_ && eos_id() >= 0) ids.push_back(eos_id());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  auto status = impl_->sp.Decode(std::vector<int>(ids.begin(), ids.end()), &out);
  if (!status.ok()) throw Error(path_ + ": decode failed: " + status.ToString());
  return out;
}

int32_t Tokenizer::bos_id() const { return impl_->sp.bos_id(); }
int32_t Tokenizer::eos_id() const { return impl_->sp.eos_id(); }
int Tokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }

}  // namespace qft
