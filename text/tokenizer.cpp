#include "text/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/json_file.h"
#include "text/tokenizer_files.h"

namespace qft {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A token named in tokenizer_config.json or special_tokens_map.json: a string, or an AddedToken object.
std::optional<std::string> token_name(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  throw ConfigError(where, key, "must be a token string or an object with \"content\"");
}

// tokenizer_config.json's chat_template: a string, or named templates of which "default" is the chat one.
std::string config_chat_template(const json& config, const std::string& where) {
  if (!config.is_object() || !config.contains("chat_template") || config["chat_template"].is_null()) return "";
  const json& t = config["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (!t.is_array()) throw ConfigError(where, "chat_template", "must be a string or a list of {name, template}");
  for (const auto& e : t) {
    if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string()) {
      return e["template"].get<std::string>();
    }
  }
  return "";
}

// The tokenizer_config.json keys qft reads, each of the JSON type transformers gives it (or null): a value of
// another type is refused rather than ignored.
void check_tokenizer_config(const json& config, const std::string& where) {
  const std::pair<const char*, json::value_t> typed[] = {
      {"tokenizer_class", json::value_t::string}, {"add_prefix_space", json::value_t::boolean},
      {"legacy", json::value_t::boolean},         {"add_bos_token", json::value_t::boolean},
      {"add_eos_token", json::value_t::boolean}};
  for (const auto& [key, type] : typed) {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null() || it->type() == type) continue;
    throw ConfigError(where, key, std::string("must be ") + (type == json::value_t::string ? "a string" : "true or false") +
                                      ", got " + it->dump());
  }
}

}  // namespace

Tokenizer::Tokenizer(const std::string& model_dir) {
  const fs::path dir(model_dir);
  json config;  // tokenizer_config.json, read first: transformers' tokenizer class shapes how tokenizer.json is read
  const fs::path config_path = dir / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    config = read_json_file(config_path.string());
    if (!config.is_object()) throw FileError(config_path.string(), "expected a JSON object");
    check_tokenizer_config(config, config_path.string());
  }
  TokenizerFile file;
  // AutoTokenizer's default is the fast tokenizer, built from tokenizer.json whenever the directory has one.
  if (fs::exists(dir / "tokenizer.json")) {
    path_ = (dir / "tokenizer.json").string();
    file = open_tokenizer_json(path_, config);
  } else if (fs::exists(dir / "tokenizer.model")) {
    path_ = (dir / "tokenizer.model").string();
    file = open_sentencepiece_model(path_);
  } else {
    throw FileError(model_dir, "no tokenizer found (expected tokenizer.json or a sentencepiece tokenizer.model)");
  }
  model_ = std::move(file.model);
  bos_token_ = file.bos_token;
  eos_token_ = file.eos_token;
  bool add_bos = true, add_eos = false;  // a tokenizer.model's defaults, as LlamaTokenizer's
  const fs::path map_path = dir / "special_tokens_map.json";
  const json map = fs::exists(map_path) ? read_json_file(map_path.string()) : json::object();
  for (const auto& [j, p] : {std::pair<const json*, std::string>{&map, map_path.string()}, std::pair<const json*, std::string>{&config, config_path.string()}}) {  // config wins
    if (!j->is_object()) continue;
    if (auto t = token_name(*j, "bos_token", p)) bos_token_ = *t;
    if (auto t = token_name(*j, "eos_token", p)) eos_token_ = *t;
    for (auto [key, dst] : {std::pair{"add_bos_token", &add_bos}, std::pair{"add_eos_token", &add_eos}}) {
      if (!j->contains(key) || (*j)[key].is_null()) continue;
      if (!(*j)[key].is_boolean()) throw ConfigError(p, key, "must be true or false");
      *dst = (*j)[key].template get<bool>();
    }
  }
  chat_template_ = config_chat_template(config, config_path.string());
  if (!chat_template_.empty()) chat_template_path_ = config_path.string();
  if (fs::exists(dir / "chat_template.jinja")) {  // transformers 5 saves the template here, and prefers it
    chat_template_path_ = (dir / "chat_template.jinja").string();
    chat_template_ = read_text_file(chat_template_path_);
  }
  auto resolve = [&](const std::string& token, const char* what) -> int32_t {
    if (token.empty()) return -1;
    if (auto id = model_->token_id(token)) return *id;
    throw FileError(path_, std::string(what) + " '" + token + "' (from tokenizer_config.json) is not a token of the vocabulary");
  };
  bos_id_ = resolve(bos_token_, "bos_token");
  eos_id_ = resolve(eos_token_, "eos_token");
  if (file.affixes) {
    prefix_ = file.affixes->prefix;
    suffix_ = file.affixes->suffix;
  } else {
    if (add_bos && bos_id_ >= 0) prefix_.push_back(bos_id_);
    if (add_eos && eos_id_ >= 0) suffix_.push_back(eos_id_);
  }
  if (eos_id_ >= 0) stop_ids_.push_back(eos_id_);
  read_stop_ids(model_dir);
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::read_stop_ids(const std::string& dir) {
  // eos_token_id is one id or a list (Llama-3.1: end_of_text, eom and eot), in either file.
  for (const char* name : {"generation_config.json", "config.json"}) {
    const fs::path p = fs::path(dir) / name;
    if (!fs::exists(p)) continue;
    const json j = read_json_file(p.string());
    const auto it = j.is_object() ? j.find("eos_token_id") : j.end();
    if (it == j.end() || it->is_null()) continue;
    std::vector<int64_t> ids;  // 64-bit: a value beyond int32 must not wrap into the vocabulary
    const auto is_id = [](const json& e) { return json_integer_in(e, INT64_MIN, INT64_MAX).has_value(); };
    if (is_id(*it)) {
      ids.push_back(it->get<int64_t>());
    } else if (it->is_array() && std::all_of(it->begin(), it->end(), is_id)) {
      ids = it->get<std::vector<int64_t>>();
    } else {
      throw ConfigError(p.string(), "eos_token_id", "must be a token id or a list of token ids");
    }
    for (int64_t id : ids) {
      if (id < 0 || id >= vocab_size()) {
        throw ConfigError(p.string(), "eos_token_id", "id " + std::to_string(id) + " is outside the vocabulary");
      }
      if (!is_stop(int32_t(id))) stop_ids_.push_back(int32_t(id));
    }
  }
}

bool Tokenizer::is_stop(int32_t id) const { return std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end(); }

std::vector<int32_t> Tokenizer::encode_raw(std::string_view text, std::vector<size_t>* offsets) const {
  std::vector<int32_t> ids;
  if (offsets) offsets->clear();
  try {
    model_->encode(text, ids, offsets);
  } catch (const UnsupportedError&) {
    throw;
  } catch (const Error& e) {
    throw Error(path_ + ": " + e.what());
  }
  return ids;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids = prefix_;
  const auto body = encode_raw(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const { return model_->decode(ids); }

std::string Tokenizer::describe() const { return model_->describe() + " (" + path_ + ")"; }

}  // namespace qft
