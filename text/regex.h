#pragma once
// A compiled PCRE2 pattern in UTF mode with Unicode properties (\p{L}, \p{N}, \s on all of Unicode), as the
// pre-tokenizer regexes of tokenizer.json need; matched with PCRE2's JIT when it is available. Thread-safe:
// each call takes its own match data.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace qft {

class Regex {
 public:
  // `literal`: the pattern is a plain string, not a regex. Throws Error with PCRE2's message and offset.
  Regex(const std::string& pattern, bool literal);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Calls fn(start, end) for every non-overlapping match, left to right (byte offsets into text).
  // An empty match advances by one character, as onig and Rust's regex do.
  void for_each_match(std::string_view text, const std::function<void(size_t, size_t)>& fn) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string pattern_;
};

}  // namespace qft
