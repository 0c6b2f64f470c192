#pragma once
// Reading JSON documents with errors that name their file. Include only from .cpp files: the JSON header is heavy.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace qft {

// A regular file's whole contents. Throws FileError for a missing, special (FIFO, device) or directory path and
// for a file larger than max_bytes.
std::string read_text_file(const std::string& path, size_t max_bytes = size_t(1) << 30);

constexpr size_t kMaxConfigBytes = size_t(16) << 20;  // a run config or config.json: real ones are a few KiB
constexpr int kMaxJsonDepth = 256;  // deeper than any real config, tokenizer or checkpoint state needs
// Parses a whole JSON document; `where` (a path, or "--set") names it in the error. Refuses documents nested
// deeper than kMaxJsonDepth and objects with a repeated key.
nlohmann::json parse_json(std::string_view text, const std::string& where);
// v as an integer in [lo, hi], or nullopt for anything else: a fraction, a string, or a value beyond int64 that
// get<int64_t> would wrap. Every integer qft reads from JSON goes through it, so none is read modulo 2^n.
std::optional<int64_t> json_integer_in(const nlohmann::json& v, int64_t lo, int64_t hi);

inline nlohmann::json read_json_file(const std::string& path) { return parse_json(read_text_file(path), path); }

}  // namespace qft
