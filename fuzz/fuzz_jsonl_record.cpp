// One JSONL record in every data.format, rendered through every chat template with the embedded model's tokenizer.
#include "fuzz/fuzz_input.h"
#include "text/tokenizer.h"
#include "trainer/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qft::Tokenizer tok(QFT_SOURCE_DIR "/models/tiny-llama");
  const std::string line(qft::fuzz::as_text(data, size));
  for (const auto& item : qft::EnumNames<qft::DataFormat>::items) {
    const qft::DataFormat format = item.first;
    qft::fuzz::refusal_ok([&] {
      const std::vector<qft::Turn> turns = qft::parse_line("fuzz.jsonl", 1, line, format);
      for (const std::string& name : qft::template_choices()) {
        qft::fuzz::refusal_ok([&] {
          const qft::ChatTemplate tmpl = qft::resolve_template(name, tok);
          qft::render_example(turns, tmpl, tok, false, format == qft::DataFormat::Text);
          qft::chat_prompt_tokens(turns, tmpl, tok);
        });
      }
    });
  }
  return 0;
}
