// qft inspect PATH: config summary, parameter count and every tensor of an HF model directory.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "model/hf_model.h"

namespace qft::cmd {

namespace {

struct InspectOptions {
  std::string path;
  bool json = false;
};

void print_tensor_table(const nlohmann::ordered_json& tensors) {
  std::printf("\n%-52s %-5s %s\n", "tensor", "dtype", "shape");
  for (const auto& t : tensors) {
    std::printf("%-52s %-5s %s\n", t["name"].get<std::string>().c_str(), t["dtype"].get<std::string>().c_str(),
                t["shape"].dump().c_str());
  }
}

// A single .safetensors file: its tensors and metadata, with no model semantics.
void inspect_file(const InspectOptions& o) {
  SafeTensorsFile f(o.path);
  int64_t elements = 0;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const auto& t : f.tensors()) {
    elements += shape_numel(t.shape);
    tensors.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}});
  }
  if (o.json) {
    nlohmann::ordered_json out = {{"path", o.path}, {"parameters", elements}, {"metadata", f.metadata()}, {"tensors", tensors}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("file       %s\nelements   %lld\n", o.path.c_str(), static_cast<long long>(elements));
  for (const auto& [k, v] : f.metadata()) std::printf("metadata   %s = %s\n", k.c_str(), v.c_str());
  print_tensor_table(tensors);
}

void run_inspect(const InspectOptions& o) {
  if (std::filesystem::is_regular_file(o.path)) return inspect_file(o);
  HfModel m(o.path);
  const LlamaConfig& c = m.config();
  const int64_t params = c.parameter_count();
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const auto& spec : llama_tensor_specs(c)) {
    tensors.push_back({{"name", spec.name}, {"dtype", dtype_name(m.dtype_of(spec.name))}, {"shape", spec.shape},
                       {"file", m.file_of(spec.name).path()}});
  }
  nlohmann::ordered_json cfg = {
      {"hidden_size", c.hidden_size}, {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers}, {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads}, {"head_dim", c.head_dim}, {"vocab_size", c.vocab_size},
      {"rms_norm_eps", c.rms_norm_eps}, {"rope_theta", c.rope_theta}, {"rope_scaling", c.rope_scaling.type},
      {"tie_word_embeddings", c.tie_word_embeddings}, {"max_position_embeddings", c.max_position_embeddings},
      {"bos_token_id", c.bos_token_id}, {"eos_token_id", c.eos_token_id}};
  if (o.json) {
    nlohmann::ordered_json out = {{"path", o.path}, {"config", cfg}, {"parameters", params},
                                  {"shards", m.shards().size()}, {"tensors", tensors}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("model      %s (%zu shard%s)\n", o.path.c_str(), m.shards().size(), m.shards().size() == 1 ? "" : "s");
  for (auto it = cfg.begin(); it != cfg.end(); ++it) std::printf("%-24s %s\n", it.key().c_str(), it.value().dump().c_str());
  std::printf("parameters %lld (%.3f B)\n", static_cast<long long>(params), double(params) / 1e9);
  print_tensor_table(tensors);
}

}  // namespace

void set_inspect_command(CLI::App& app) {
  auto opts = std::make_shared<InspectOptions>();
  CLI::App* sub = app.add_subcommand("inspect", "Show the config, parameter count and tensors of a HF LLaMA directory (or one .safetensors file)");
  sub->add_option("path", opts->path, "Model directory (config.json + safetensors) or a .safetensors file")->required();
  sub->add_flag("--json", opts->json, "Print one JSON object");
  sub->callback([opts] { run_inspect(*opts); });
}

}  // namespace qft::cmd
