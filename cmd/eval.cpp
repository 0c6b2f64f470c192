// qft eval: mean token loss and perplexity of a model over the "text" fields of a JSONL file.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "model/llama.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "ops/backend.h"
#include "ops/kernels.h"
#include "trainer/evaluate.h"
#include "trainer/jsonl.h"
#include "trainer/model_source.h"

namespace qft::cmd {

namespace {

struct EvalOptions {
  std::string model;
  std::string data;
  int seq_len = 512;
  std::string device = "auto";
  bool debug_sync = false;
  std::string save_logits;
  bool json = false;
};

// The logits of the first document's first window, with its token ids, for scripts/check_export.py.
void save_first_logits(LlamaModel& model, const Tokenizer& tok, const std::string& text, int seq_len,
                       const std::string& path) {
  const std::vector<int32_t> ids = tok.encode(text);
  const int T = int(std::min<size_t>(ids.size(), size_t(seq_len)));
  Batch b;
  b.B = 1;
  b.T = T;
  b.tokens.assign(ids.begin(), ids.begin() + T);
  b.targets.assign(size_t(T), kIgnoreIndex);
  for (int t = 0; t < T; ++t) b.positions.push_back(t);
  HostTensor input_ids(DType::I32, {1, T}), logits(DType::F32, {1, T, model.config().vocab_size});
  std::copy(b.tokens.begin(), b.tokens.end(), input_ids.data<int32_t>());
  const std::vector<float> out = model.forward_logits(b);  // (T, V)
  std::copy(out.begin(), out.end(), logits.data<float>());
  write_safetensors(path, {{"input_ids", &input_ids}, {"logits", &logits}});
}

void run_eval(const EvalOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::string> texts = read_jsonl_strings(o.data, "text");
  const ModelSource src = open_model_source(o.model);
  Tokenizer tok(o.model);
  auto backend = make_backend(o.device, o.debug_sync);
  const auto model = load_model(src, *backend);
  if (!o.json) {
    spdlog::info("{} ({} parameters, {} weights) on {}; {} documents from {}", src.describe(),
                 src.config.parameter_count(), src.stored.int8 ? "INT8" : "fp32", backend->name(), texts.size(), o.data);
  }
  const EvalResult r = evaluate_texts(*model, tok, texts, o.seq_len);
  if (!o.save_logits.empty()) save_first_logits(*model, tok, texts.front(), o.seq_len, o.save_logits);
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
  sub->add_option("--model", opts->model, "HF LLaMA model directory or qft checkpoint (step_*/)")->required();
  sub->add_option("--data", opts->data, "JSONL file; each line holds a \"text\" field")->required();
  sub->add_option("--seq-len", opts->seq_len, "Window length in tokens")->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--device", opts->device, "auto (CUDA when a GPU is visible), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  sub->add_flag("--debug-sync", opts->debug_sync, "CUDA: synchronize after every op so that a fault names its op");
  sub->add_option("--save-logits", opts->save_logits,
                  "Also write the first document's input_ids and logits (first window) to this .safetensors file");
  sub->add_flag("--json", opts->json, "Print one JSON object");
  sub->callback([opts] { run_eval(*opts); });
}

}  // namespace qft::cmd
