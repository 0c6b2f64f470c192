#pragma once
// Helpers shared by the readers of tokenizer.json's stages (normalizers, pre-tokenizers, decoders,
// post-processor): typed fields with errors that name the key path, patterns, and refusals of unknown kinds.
// Internal to text/.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "text/pieces.h"
#include "text/regex.h"

namespace qft::hf_json {

using nlohmann::json;

[[noreturn]] inline void unsupported(const std::string& where, const std::string& what) {
  throw UnsupportedError(where + ": " + what + " is not supported");
}

inline std::string type_of(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Error(where + ": expected an object with a \"type\"");
  }
  return j["type"].get<std::string>();
}

template <class T>
T field(const json& j, const char* key, const std::string& where, T fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw Error(where + "." + key + ": wrong type (" + it->type_name() + ")");
  }
}

// {"String": "x"} or {"Regex": "..."}: both become a Regex (a String one matched literally).
inline Regex pattern_of(const json& j, const std::string& where) {
  const auto it = j.find("pattern");
  if (it == j.end() || !it->is_object()) throw Error(where + ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
  if (it->contains("String")) return Regex(field<std::string>(*it, "String", where + ".pattern", ""), true);
  if (it->contains("Regex")) {
    try {
      return Regex(field<std::string>(*it, "Regex", where + ".pattern", ""), false);
    } catch (const UnsupportedError&) {
      throw;
    } catch (const Error& e) {
      throw Error(where + ".pattern: " + e.what());
    }
  }
  throw Error(where + ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
}

inline std::vector<Edit> replace_edits(const Piece& p, const Regex& re, const std::string& with) {
  std::vector<Edit> edits;
  re.for_each_match(p.text, [&](size_t a, size_t b) { edits.push_back({a, b, with}); });
  return edits;
}

template <class Make>
auto make_list(const json& j, const char* key, const std::string& where, Make make) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_array()) throw Error(where + "." + key + ": expected a list");
  std::vector<decltype(make(json(), std::string()))> out;
  for (size_t i = 0; i < it->size(); ++i) out.push_back(make((*it)[i], where + "." + key + "[" + std::to_string(i) + "]"));
  return out;
}

inline std::string replacement_of(const json& j, const std::string& where) {
  const auto r = field<std::string>(j, "replacement", where, "\xE2\x96\x81");
  if (r.empty()) throw Error(where + ".replacement: must not be empty");
  return r;
}


enum class PrependScheme { Always, First, Never };

inline PrependScheme prepend_scheme(const json& j, const std::string& where) {
  if (j.contains("prepend_scheme")) {
    const auto s = field<std::string>(j, "prepend_scheme", where, "always");
    if (s == "always") return PrependScheme::Always;
    if (s == "first") return PrependScheme::First;
    if (s == "never") return PrependScheme::Never;
    unsupported(where + ".prepend_scheme", "'" + s + "'");
  }
  return field<bool>(j, "add_prefix_space", where, true) ? PrependScheme::Always : PrependScheme::Never;  // older files
}

}  // namespace qft::hf_json
