#pragma once
// The few Unicode operations tokenizers need, on UTF-8 strings: validation, stepping over characters,
// normalization forms and lowercasing (utf8proc), and the character classes added tokens test.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qft {

enum class NormalForm { Nfc, Nfd, Nfkc, Nfkd };

// Byte offset of the first invalid UTF-8 sequence, or npos when the text is valid.
size_t find_invalid_utf8(std::string_view text);

// Length in bytes of the UTF-8 character starting with `lead` (1 for a stray continuation byte).
inline size_t utf8_length(unsigned char lead) {
  return lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
}

// Decodes the character at text[at] (valid UTF-8 assumed).
char32_t utf8_decode(std::string_view text, size_t at);
void utf8_append(std::string& out, char32_t cp);

std::string normalize(std::string_view text, NormalForm form);
std::string to_lower(std::string_view text);  // per character, Unicode simple lowercase mapping

bool is_starter(char32_t cp);      // canonical combining class 0
bool is_whitespace(char32_t cp);   // Unicode White_Space, as Rust's char::is_whitespace
bool is_alphanumeric(char32_t cp); // letters and numbers, as Rust's char::is_alphanumeric

}  // namespace qft
