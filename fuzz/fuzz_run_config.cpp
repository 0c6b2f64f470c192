// Run configs and --set: the input is a config file, optionally followed by a NUL byte and one --set assignment.
#include "fuzz/fuzz_input.h"
#include "trainer/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = qft::fuzz::as_text(data, size);
  const size_t nul = input.find('\0');
  qft::fuzz::refusal_ok([&] {
    qft::RunConfig cfg = qft::RunConfig::from_json_text(std::string(input.substr(0, nul)), "fuzz.json");
    if (nul != std::string_view::npos) cfg.apply_override(std::string(input.substr(nul + 1)));
    cfg.validate();
    (void)cfg.to_json();
  });
  return 0;
}
