// qft eval: mean token loss and perplexity of a model over the "text" fields of a JSONL file, or with
// --task exact-match, the share of prompts the model answers exactly.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "cmd/model_options.h"
#include "core/error.h"
#include "model/llama.h"
#include "model/safetensors.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "ops/backend.h"
#include "trainer/evaluate.h"
#include "trainer/jsonl.h"
#include "trainer/model_source.h"
#include "trainer/task_eval.h"

namespace qft::cmd {

namespace {

struct EvalOptions {
  ModelOptions model;
  std::string data;
  int seq_len = 512;
  std::string save_logits;
  bool force = false;  // --save-logits may replace an existing file
  bool json = false;
  std::string task;  // "" (loss) | exact-match
  TaskOptions task_opts;
  int show = 3;      // samples printed with --task
};

// The logits of the first document's first window, with its token ids, for scripts/check_export.py.
void save_first_logits(LlamaModel& model, const Tokenizer& tok, const std::string& text, int seq_len,
                       const std::string& path) {
  const std::vector<int32_t> ids = tok.encode(text);
  const int T = int(std::min<size_t>(ids.size(), size_t(seq_len)));
  const Batch b = Batch::sequence({ids.begin(), ids.begin() + T});
  HostTensor input_ids(DType::I32, {1, T}), logits(DType::F32, {1, T, model.config().vocab_size});
  std::copy(b.tokens.begin(), b.tokens.end(), input_ids.data<int32_t>());
  const std::vector<float> out = model.forward_logits(b);  // (T, V)
  std::copy(out.begin(), out.end(), logits.data<float>());
  write_safetensors(path, {{"input_ids", &input_ids}, {"logits", &logits}});
}

// Newlines shown as " / " so that each sample stays on its lines.
std::string one_line(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\n') {
      out += s[i];
    } else if (i == 0 || s[i - 1] != '\n') {
      out += " / ";
    }
  }
  return out;
}

void run_task(LlamaModel& model, const Tokenizer& tok, const EvalOptions& o, const std::string& device,
              std::chrono::steady_clock::time_point t0) {
  const TaskResult r = score_exact_match(model, tok, o.data, o.task_opts);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.json) {
    nlohmann::ordered_json samples = nlohmann::ordered_json::array();
    for (size_t i = 0; i < r.samples.size() && int(i) < o.show; ++i) {
      const TaskSample& s = r.samples[i];
      samples.push_back({{"prompt", s.prompt}, {"reference", s.reference}, {"answer", s.answer}, {"correct", s.correct}});
    }
    nlohmann::ordered_json j = {{"task", o.task},         {"exact_match", r.exact_match}, {"correct", r.correct},
                                {"examples", r.examples}, {"device", device},             {"elapsed_s", secs},
                                {"samples", samples}};
    std::cout << j.dump() << "\n";
    return;
  }
  for (size_t i = 0; i < r.samples.size() && int(i) < o.show; ++i) {
    const TaskSample& s = r.samples[i];
    std::printf("[%s] %s\n  expected: %s\n  model:    %s\n", s.correct ? "ok" : "wrong", one_line(s.prompt).c_str(),
                one_line(s.reference).c_str(), one_line(s.answer).c_str());
  }
  std::printf("exact match %.1f%% (%lld of %lld)  (%.2f s)\n", 100.0 * r.exact_match, static_cast<long long>(r.correct),
              static_cast<long long>(r.examples), secs);
}

void run_eval(const EvalOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!o.save_logits.empty() && !o.force && std::filesystem::exists(o.save_logits)) {
    throw FileError(o.save_logits, "already exists; --save-logits writes only a new file (add --force to replace it)");
  }
  // Loss mode reads its documents first, so that a bad data file fails before the model loads.
  const std::vector<std::string> texts = o.task.empty() ? read_jsonl_strings(o.data, "text") : std::vector<std::string>{};
  auto backend = o.model.backend();
  const OpenModel opened = open_model(o.model.path, *backend);
  const ModelSource& src = opened.source;
  const Tokenizer& tok = *opened.tokenizer;
  LlamaModel& model = *opened.model;
  if (!o.task.empty()) {
    if (!o.json) spdlog::info("{} on {}; task {} over {}", src.describe(), backend->name(), o.task, o.data);
    run_task(model, tok, o, backend->name(), t0);
    return;
  }
  if (!o.json) {
    spdlog::info("{} ({} parameters, {} weights) on {}; {} documents from {}", src.describe(),
                 src.config.parameter_count(), src.stored.int8 ? "INT8" : "fp32", backend->name(), texts.size(), o.data);
  }
  const EvalResult r = evaluate_texts(model, tok, texts, o.seq_len);
  if (!std::isfinite(r.loss)) {
    throw Error("the loss over " + o.data + " is " + std::to_string(r.loss) + ": " + src.describe() +
                " computes NaN or infinite values (are its weights finite?)");
  }
  if (!o.save_logits.empty()) save_first_logits(model, tok, texts.front(), o.seq_len, o.save_logits);
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
  CLI::App* sub = app.add_subcommand(
      "eval", "Mean token loss and perplexity over a JSONL file of {\"text\": ...}, or a task's exact-match score");
  opts->model.add_to(sub);
  sub->add_option("--data", opts->data, "JSONL file; each line holds a \"text\" field (or a --format record with --task)")
      ->required();
  sub->add_option("--task", opts->task,
                  "exact-match: answer each record's prompt greedily and count answers equal to its reference")
      ->check(CLI::IsMember({"exact-match"}));
  add_enum_option(sub, "--format", opts->task_opts.format, "--task: record format (as data.format; default alpaca)");
  sub->add_option("--template", opts->task_opts.prompt_template, "--task: prompt template the model was trained with")
      ->check(CLI::IsMember(template_choices()))
      ->capture_default_str();
  sub->add_option("--max-new-tokens", opts->task_opts.max_new_tokens, "--task: answer length limit in tokens")
      ->check(number_in(1))
      ->capture_default_str();
  sub->add_option("--limit", opts->task_opts.limit, "--task: score only the first N records (0: all)")
      ->check(number_in(0))
      ->capture_default_str();
  sub->add_option("--show", opts->show, "--task: print the first N answers")->check(number_in(0))->capture_default_str();
  sub->add_option("--seq-len", opts->seq_len, "Window length in tokens")->check(number_in(1))->capture_default_str();
  sub->add_option("--save-logits", opts->save_logits,
                  "Also write the first document's input_ids and logits (first window) to this .safetensors file");
  sub->add_flag("--force", opts->force, "Let --save-logits replace an existing file");
  sub->add_flag("--json", opts->json, "Print one JSON object");
  sub->callback([opts] { run_eval(*opts); });
}

}  // namespace qft::cmd
