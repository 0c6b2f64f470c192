#pragma once
// JSON Lines input. Errors name file:line.
#include <string>
#include <vector>

namespace qft {

// The string field `field` of every non-blank line. Throws DataError for a malformed line, a missing or
// non-string field, and for a file that holds no records.
std::vector<std::string> read_jsonl_strings(const std::string& path, const std::string& field);

}  // namespace qft
