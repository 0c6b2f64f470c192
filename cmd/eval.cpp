// qft eval: mean token loss and perplexity of a model over the "text" fields of a JSONL file.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "model/hf_model.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "ops/backend.h"
#include "trainer/evaluate.h"
#include "trainer/jsonl.h"

namespace qft::cmd {

namespace {

struct EvalOptions {
  std::string model;
  std::string data;
  int seq_len = 512;
  std::string device = "auto";
  bool json = false;
};

void run_eval(const EvalOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::string> texts = read_jsonl_strings(o.data, "text");
  HfModel hf(o.model);
  Tokenizer tok(o.model);
  auto backend = make_backend(o.device);
  LlamaModel model(hf, *backend);
  if (!o.json) {
    spdlog::info("model {} ({} parameters) on {}; {} documents from {}", o.model, hf.config().parameter_count(),
                 backend->name(), texts.size(), o.data);
  }
  const EvalResult r = evaluate_texts(model, tok, texts, o.seq_len);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const size_t peak = backend->memory().peak_bytes;
  if (o.json) {
    nlohmann::ordered_json j = {{"loss", r.loss}, {"perplexity", r.perplexity}, {"tokens", r.tokens},
                                {"documents", r.documents}, {"seq_len", o.seq_len}, {"device", backend->name()},
                                {"peak_mem_bytes", peak}, {"elapsed_s", secs}};
    std::cout << j.dump() << "\n";
    return;
  }
  std::printf("loss %.6f  perplexity %.4f  tokens %lld  documents %lld  (%.2f s, peak %.1f MiB)\n", r.loss,
              r.perplexity, static_cast<long long>(r.tokens), static_cast<long long>(r.documents), secs,
              double(peak) / (1 << 20));
}

}  // namespace

void set_eval_command(CLI::App& app) {
  auto opts = std::make_shared<EvalOptions>();
  CLI::App* sub = app.add_subcommand("eval", "Mean token loss and perplexity over a JSONL file of {\"text\": ...}");
  sub->add_option("--model", opts->model, "HF LLaMA model directory")->required();
  sub->add_option("--data", opts->data, "JSONL file; each line holds a \"text\" field")->required();
  sub->add_option("--seq-len", opts->seq_len, "Window length in tokens")->check(CLI::PositiveNumber)->capture_default_str();
  // "cuda" joins the choices when the CUDA model backend lands (issue 6); auto runs on the CPU until then.
  sub->add_option("--device", opts->device, "auto or cpu")->check(CLI::IsMember({"auto", "cpu"}))->capture_default_str();
  sub->add_flag("--json", opts->json, "Print one JSON object");
  sub->callback([opts] { run_eval(*opts); });
}

}  // namespace qft::cmd
