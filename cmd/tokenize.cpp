// qft tokenize --model DIR (--text TEXT | --file F): a model's token ids for a text, as training would see them.
#include <spdlog/spdlog.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/json_file.h"
#include "text/tokenizer.h"

namespace qft::cmd {

namespace {

struct TokenizeOptions {
  std::string model, text, file;
  bool special = false, json = false, lines = false;
};

// FNV-1a over the ids' 32-bit little-endian bytes: lets a peer check millions of ids without printing them.
uint64_t fingerprint(const std::vector<int32_t>& ids) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int32_t id : ids) {
    for (int b = 0; b < 4; ++b) h = (h ^ ((uint32_t(id) >> (8 * b)) & 0xFF)) * 0x100000001b3ull;
  }
  return h;
}

void run_tokenize(const TokenizeOptions& o) {
  if (o.text.empty() == o.file.empty()) throw Error("tokenize: give exactly one of --text and --file");
  const Tokenizer tok(o.model);  // checkpoints hold their model's tokenizer files too
  const std::string text = o.file.empty() ? o.text : read_text_file(o.file);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> ids;
  auto encode = [&](std::string_view t) {
    const auto part = o.special ? tok.encode(t) : tok.encode_raw(t);
    ids.insert(ids.end(), part.begin(), part.end());
  };
  if (o.lines) {  // each line a text of its own, as the lines of a dataset are
    for (size_t at = 0; at < text.size();) {
      const size_t end = std::min(text.find('\n', at), text.size());
      encode(std::string_view(text).substr(at, end - at));
      at = end + 1;
    }
  } else {
    encode(text);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double mb_per_s = double(text.size()) / 1e6 / std::max(secs, 1e-9);
  spdlog::info("{}: {} bytes -> {} tokens in {:.3f} s ({:.2f} MB/s, one thread)", tok.describe(), text.size(), ids.size(), secs,
               mb_per_s);
  if (o.json) {
    nlohmann::ordered_json j = {{"tokenizer", tok.path()}, {"bytes", text.size()}, {"tokens", ids.size()},
                                {"seconds", secs}, {"mb_per_s", mb_per_s},
                                {"fingerprint", fingerprint(ids)}};
    if (o.file.empty()) j["ids"] = ids;
    std::cout << j.dump() << "\n";
    return;
  }
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
  std::cout << "\n";
}

}  // namespace

void set_tokenize_command(CLI::App& app) {
  auto opts = std::make_shared<TokenizeOptions>();
  CLI::App* sub = app.add_subcommand("tokenize", "Print a model's token ids for a text (tokenizer.json or tokenizer.model)");
  sub->add_option("--model", opts->model, "HF model directory, qft checkpoint, or any directory with tokenizer files")->required();
  sub->add_option("--text", opts->text, "Text to tokenize");
  sub->add_option("--file", opts->file, "File whose whole contents are tokenized as one text (speed measurements)");
  sub->add_flag("--lines", opts->lines, "Tokenize each line of the text on its own");
  sub->add_flag("--special", opts->special, "Add the tokens the model puts around a text (BOS, for most)");
  sub->add_flag("--json", opts->json, "Print one JSON object: counts, time and (for --text) the ids");
  sub->callback([opts] { run_tokenize(*opts); });
}

}  // namespace qft::cmd
