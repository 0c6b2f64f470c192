#include "core/json_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"

namespace qft {

std::string read_text_file(const std::string& path, size_t max_bytes) {
  require_regular_file(path, "a file");
  const uintmax_t size = std::filesystem::file_size(path);
  if (size > max_bytes) {
    throw FileError(path, "is " + std::to_string(size) + " bytes, more than the " + std::to_string(max_bytes) +
                              " a file of this kind may have");
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FileError(path, std::string("cannot open: ") + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw FileError(path, "read error");
  return ss.str();
}

nlohmann::json parse_json(std::string_view text, const std::string& where) {
  using nlohmann::json;
  // Checked while parsing: nesting depth (deeper documents would exhaust the stack of whatever walks them
  // recursively later) and repeated keys (JSON parsers keep the last silently; a config must not).
  std::vector<std::set<std::string>> keys;  // the keys seen in each open object
  std::string problem;
  const json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth) {
      problem = "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
      throw std::runtime_error(problem);
    }
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    if (event == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (event == json::parse_event_t::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
      problem = "the key \"" + parsed.get<std::string>() + "\" appears twice in one object";
      throw std::runtime_error(problem);
    }
    return true;
  };
  try {
    return json::parse(text, check);
  } catch (const json::exception& e) {
    throw FileError(where, std::string("invalid JSON: ") + e.what());
  } catch (const std::runtime_error&) {
    if (problem.empty()) throw;
    throw FileError(where, "invalid JSON: " + problem);
  }
}

std::optional<int64_t> json_integer_in(const nlohmann::json& v, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) return std::nullopt;
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) return std::nullopt;
  const int64_t i = v.get<int64_t>();
  if (i < lo || i > hi) return std::nullopt;
  return i;
}

}  // namespace qft
