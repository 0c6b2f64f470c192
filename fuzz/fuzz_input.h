#pragma once
// Helpers shared by the fuzz targets: an input as a file (the readers take paths, as users give them), and
// running a parser where qft::Error (bad input, reported with exit 1) is the expected outcome.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qft::fuzz {

// A per-process scratch directory under $TMPDIR, created once.
const std::string& scratch_dir();
// Writes the bytes to scratch_dir()/name (replacing it) and returns the path.
std::string write_input(const std::string& name, std::string_view bytes);
inline std::string_view as_text(const uint8_t* data, size_t size) { return {reinterpret_cast<const char*>(data), size}; }

// Runs fn; a qft::Error is a correct refusal of bad input. Anything else escapes and aborts the fuzzer.
template <class Fn>
void refusal_ok(Fn&& fn);

}  // namespace qft::fuzz

#include "core/error.h"

template <class Fn>
void qft::fuzz::refusal_ok(Fn&& fn) {
  try {
    fn();
  } catch (const qft::Error&) {
  }
}
