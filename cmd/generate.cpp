// qft generate --model DIR|CHECKPOINT --prompt TEXT: sample a continuation, streamed to stdout.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "cmd/model_options.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "trainer/generate.h"
#include "trainer/model_source.h"

namespace qft::cmd {

namespace {

struct GenerateCmdOptions {
  ModelOptions model;
  std::string prompt;
  GenerateOptions gen;
  bool json = false;
};

void run_generate(const GenerateCmdOptions& o) {
  auto backend = o.model.backend();
  const OpenModel opened = open_model(o.model.path, *backend);  // an INT8 checkpoint stays INT8, dequantized per use
  const ModelSource& src = opened.source;
  const Tokenizer& tok = *opened.tokenizer;
  LlamaModel& model = *opened.model;
  if (!o.json) {
    spdlog::info("{} on {}, template {}, temperature {}, top-p {}, seed {}", src.describe(), backend->name(),
                 o.gen.prompt_template, o.gen.temperature, o.gen.top_p, o.gen.seed);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const Generation g = generate(model, tok, o.prompt, o.gen, [&](const std::string& piece) {
    if (o.json) return;
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.json) {
    nlohmann::ordered_json j = {{"text", g.text}, {"tokens", g.tokens}, {"prompt_tokens", g.prompt.size()},
                                {"hit_eos", g.hit_eos}, {"elapsed_s", secs}};
    std::cout << j.dump() << "\n";
    return;
  }
  std::printf("\n");
  spdlog::info("{} tokens in {:.2f} s ({:.1f} tokens/s){}", g.tokens.size(), secs, double(g.tokens.size()) / secs,
               g.hit_eos ? ", stopped at EOS" : "");
}

}  // namespace

void set_generate_command(CLI::App& app) {
  auto opts = std::make_shared<GenerateCmdOptions>();
  CLI::App* sub = app.add_subcommand("generate", "Sample text from a model or qft checkpoint, streamed to stdout");
  opts->model.add_to(sub);
  sub->add_option("--prompt", opts->prompt, "Prompt text")->required();
  sub->add_option("--template", opts->gen.prompt_template,
                  "none: the prompt as plain text; a chat template (plain, llama2-chat, llama3, chatml, mistral, or "
                  "auto: the model's own): rendered as a user turn, as in training")
      ->check(CLI::IsMember([] {
        auto names = template_choices();
        names.insert(names.begin(), "none");
        return names;
      }()))
      ->capture_default_str();
  sub->add_option("--max-new-tokens", opts->gen.max_new_tokens, "Tokens to generate at most")
      ->check(number_in(0))
      ->capture_default_str();
  sub->add_option("--temperature", opts->gen.temperature, "Sampling temperature; 0 is greedy")
      ->check(number_in(0))
      ->capture_default_str();
  sub->add_option("--top-p", opts->gen.top_p, "Nucleus sampling: keep the most likely tokens up to this mass")
      ->check(number_in(1e-9, 1.0))
      ->capture_default_str();
  sub->add_option("--seed", opts->gen.seed, "Sampling seed: the same seed gives the same text")->capture_default_str();
  sub->add_flag("--json", opts->json, "Print one JSON object instead of streaming");
  sub->callback([opts] { run_generate(*opts); });
}

}  // namespace qft::cmd
