#pragma once
// JSON Lines input. Errors name file:line.
#include <functional>
#include <string>
#include <vector>

namespace qft {

// Calls fn(line, lineno) for every non-blank line. Throws FileError when the file cannot be read.
void for_each_jsonl_line(const std::string& path, const std::function<void(const std::string&, long)>& fn);

// The string field `field` of every non-blank line. Throws DataError for a malformed line, a missing or
// non-string field, and for a file that holds no records.
std::vector<std::string> read_jsonl_strings(const std::string& path, const std::string& field);

}  // namespace qft
