// qft export --checkpoint DIR --out DIR: a qft checkpoint back to a HuggingFace LLaMA directory.
#include <spdlog/spdlog.h>

#include <chrono>
#include <map>

#include "cmd/commands.h"
#include "trainer/export.h"

namespace qft::cmd {

namespace {

struct ExportCmdOptions {
  std::string checkpoint;
  std::string out;
  std::string dtype = "bf16";
  std::string shard_size = "5GB";
  std::string lora = "merge";
};

void run_export(const ExportCmdOptions& o) {
  static const std::map<std::string, DType> dtypes = {{"bf16", DType::BF16}, {"fp16", DType::F16}, {"fp32", DType::F32}};
  ExportOptions opts;
  static const std::map<std::string, LoraExport> lora = {
      {"merge", LoraExport::Merge}, {"adapter", LoraExport::Adapter}, {"base", LoraExport::Base}};
  opts.dtype = dtypes.at(o.dtype);
  opts.lora = lora.at(o.lora);
  opts.shard_bytes = parse_byte_size(o.shard_size, "qft export --shard-size");
  const auto t0 = std::chrono::steady_clock::now();
  const ExportSummary s = export_hf(o.checkpoint, o.out, opts);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("exported {} tensors ({:.1f} MiB of {}) in {} shard{} to {} ({:.1f} s)", s.tensors,
               double(s.bytes) / (1 << 20), o.dtype, s.shards, s.shards == 1 ? "" : "s", o.out, secs);
}

}  // namespace

void set_export_command(CLI::App& app) {
  auto opts = std::make_shared<ExportCmdOptions>();
  CLI::App* sub = app.add_subcommand(
      "export", "Dequantize a qft checkpoint into a HuggingFace LLaMA directory (safetensors, config, tokenizer)");
  sub->add_option("--checkpoint", opts->checkpoint, "qft checkpoint directory (output.dir/step_*/)")->required();
  sub->add_option("--out", opts->out, "Directory to create; must not exist or be empty")->required();
  sub->add_option("--dtype", opts->dtype, "Stored dtype of the exported weights")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}))
      ->capture_default_str();
  sub->add_option("--shard-size", opts->shard_size, "Largest shard, e.g. 5GB, 500MB, 2GiB; one shard is model.safetensors")
      ->capture_default_str();
  sub->add_option("--lora", opts->lora,
                  "Of a train.method=lora checkpoint: merge (HF weights with W + alpha/r B A), adapter (a PEFT adapter "
                  "directory: adapter_model.safetensors, adapter_config.json) or base (the frozen base it was trained "
                  "on, dequantized: base + adapter reproduces the merged model)")
      ->check(CLI::IsMember({"merge", "adapter", "base"}))
      ->capture_default_str();
  sub->callback([opts] { run_export(*opts); });
}

}  // namespace qft::cmd
