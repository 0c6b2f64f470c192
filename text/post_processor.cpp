// tokenizer.json post-processors: the tokens put around a text (TemplateProcessing, ByteLevel, Roberta/Bert, Sequence).
#include <nlohmann/json.hpp>

#include "text/hf_json.h"
#include "text/hf_pipeline.h"

namespace qft {

using namespace hf_json;

Affixes read_post_processor(const json& j, const std::string& where) {
  Affixes out;
  if (j.is_null()) return out;
  const std::string type = type_of(j, where);
  if (type == "ByteLevel") return out;  // adjusts offsets only
  if (type == "Sequence") {
    const auto it = j.find("processors");
    if (it == j.end() || !it->is_array()) throw Error(where + ".processors: expected a list");
    for (size_t i = 0; i < it->size(); ++i) {
      const Affixes a = read_post_processor((*it)[i], where + ".processors[" + std::to_string(i) + "]");
      out.prefix.insert(out.prefix.end(), a.prefix.begin(), a.prefix.end());
      out.suffix.insert(out.suffix.end(), a.suffix.begin(), a.suffix.end());
    }
    return out;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto id_of = [&](const char* key) {
      const auto it = j.find(key);
      if (it == j.end() || !it->is_array() || it->size() != 2 || !(*it)[1].is_number_integer()) {
        throw Error(where + "." + key + ": expected [token, id]");
      }
      return (*it)[1].get<int32_t>();
    };
    return {{id_of("cls")}, {id_of("sep")}};
  }
  if (type != "TemplateProcessing") unsupported(where, "post-processor '" + type + "'");
  const auto single = j.find("single");
  const auto specials = j.find("special_tokens");
  if (single == j.end() || !single->is_array()) throw Error(where + ".single: expected a list");
  bool after_sequence = false;
  for (const auto& item : *single) {
    if (item.contains("Sequence")) {
      after_sequence = true;
      continue;
    }
    const auto name = field<std::string>(item.value("SpecialToken", json::object()), "id", where + ".single", "");
    if (specials == j.end() || !specials->contains(name)) {
      throw Error(where + ".single: special token '" + name + "' is not in special_tokens");
    }
    const auto ids = field<std::vector<int32_t>>((*specials)[name], "ids", where + ".special_tokens." + name, {});
    auto& dst = after_sequence ? out.suffix : out.prefix;
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  return out;
}


}  // namespace qft
