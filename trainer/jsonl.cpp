#include "trainer/jsonl.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"

namespace qft {

void for_each_jsonl_line(const std::string& path, const std::function<void(const std::string&, long)>& fn) {
  require_regular_file(path, "a JSONL data file");
  std::ifstream f(path);
  if (!f) throw FileError(path, "cannot open data file");
  std::string line;
  long lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") != std::string::npos) fn(line, lineno);
  }
  if (f.bad()) throw FileError(path, "read error");
}

std::vector<std::string> read_jsonl_strings(const std::string& path, const std::string& field) {
  std::vector<std::string> out;
  for_each_jsonl_line(path, [&](const std::string& line, long lineno) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(path, lineno, std::string("invalid JSON: ") + e.what());
    }
    if (!j.is_object()) throw DataError(path, lineno, "expected a JSON object");
    auto it = j.find(field);
    if (it == j.end()) throw DataError(path, lineno, "missing the \"" + field + "\" field");
    if (!it->is_string()) throw DataError(path, lineno, "field \"" + field + "\" must be a string");
    out.push_back(it->get<std::string>());
  });
  if (out.empty()) throw DataError(path, 0, "no records: the file is empty");
  return out;
}

}  // namespace qft
