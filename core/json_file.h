#pragma once
// Reading JSON documents with errors that name their file. Include only from .cpp files: the JSON header is heavy.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace qft {

std::string read_text_file(const std::string& path);  // throws FileError
// Parses a whole JSON document; `where` (a path, or "--set") names it in the error.
nlohmann::json parse_json(std::string_view text, const std::string& where);
inline nlohmann::json read_json_file(const std::string& path) { return parse_json(read_text_file(path), path); }

}  // namespace qft
