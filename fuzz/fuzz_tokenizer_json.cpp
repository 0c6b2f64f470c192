// tokenizer.json: model, normalizer, pre-tokenizer, decoder, post-processor and added tokens, then a round trip of
// texts that exercise bytes, spaces, digits, special tokens and invalid UTF-8.
#include <filesystem>

#include "fuzz/fuzz_input.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    std::filesystem::create_directories(qft::fuzz::scratch_dir() + "/tok");
    return qft::fuzz::scratch_dir() + "/tok";
  }();
  qft::fuzz::write_input("tok/tokenizer.json", qft::fuzz::as_text(data, size));
  qft::fuzz::refusal_ok([&] {
    const qft::Tokenizer tok(dir);
    for (const char* text : {"Hello  world, 12345!\n\tcafé ☕", "<s>[INST] hi [/INST]</s><|eot_id|>", "\xff\xfe a\xc3", ""}) {
      const std::vector<int32_t> ids = tok.encode(text);
      (void)tok.decode(ids);
    }
  });
  return 0;
}
