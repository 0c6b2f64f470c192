// qft inspect PATH: config summary, parameter count and every tensor of an HF model directory; for a qft
// checkpoint, its trainer state and the quantization statistics of every INT8 matrix.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "core/error.h"
#include "model/hf_model.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/run_dir.h"

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

nlohmann::ordered_json matrix_json(const MatrixStats& m) {
  return {{"name", m.name},          {"shape", {m.rows, m.cols}},   {"outliers", m.outliers},
          {"outlier_fraction", m.outlier_fraction()}, {"scale_min", m.scale_min}, {"scale_max", m.scale_max},
          {"rescales", m.rescales},  {"rows_rescaled", m.rows_rescaled}};
}

void print_checkpoint(const InspectOptions& o) {
  const CheckpointReport rep = inspect_checkpoint(o.path);
  const TrainerState& st = rep.info.state;
  // Every key present, defaults included: the stored config may leave sections out.
  const nlohmann::json run = nlohmann::json::parse(RunConfig::from_json_text(st.config_json, o.path).to_json());
  nlohmann::ordered_json matrices = nlohmann::ordered_json::array();
  for (const MatrixStats& m : rep.matrices) matrices.push_back(matrix_json(m));
  if (o.json) {
    const nlohmann::ordered_json out = {
        {"path", o.path}, {"kind", "qft checkpoint"}, {"step", st.step}, {"tokens", st.tokens},
        {"epoch", st.cursor.epoch}, {"row", st.cursor.row}, {"settings_hash", rep.info.settings_hash},
        {"parameters", rep.config.parameter_count()}, {"weights", run["quant"]["weights"]},
        {"momentum", run["quant"]["momentum"]}, {"outlier_fraction", rep.outlier_fraction},
        {"rescales", rep.rescales}, {"outlier_reselections", st.reselections}, {"matrices", matrices}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("checkpoint %s\nstep %d, %lld tokens seen, epoch %lld row %lld, settings %s\n", o.path.c_str(), st.step,
              static_cast<long long>(st.tokens), static_cast<long long>(st.cursor.epoch),
              static_cast<long long>(st.cursor.row), rep.info.settings_hash.c_str());
  std::printf("parameters %lld; weights %s, momentum %s; outliers %.4f%% of INT8 entries; %lld row rescales; "
              "outliers re-selected %d times\n",
              static_cast<long long>(rep.config.parameter_count()), run["quant"]["weights"].get<std::string>().c_str(),
              run["quant"]["momentum"].get<std::string>().c_str(), 100.0 * rep.outlier_fraction,
              static_cast<long long>(rep.rescales), st.reselections);
  if (rep.matrices.empty()) return;
  std::printf("\n%-44s %-14s %9s %23s %9s %8s\n", "INT8 matrix", "shape", "outliers", "row scale min..max", "rescales",
              "rows");
  for (const MatrixStats& m : rep.matrices) {
    const std::string shape = "[" + std::to_string(m.rows) + "," + std::to_string(m.cols) + "]";
    std::printf("%-44s %-14s %8.3f%% %11.3e..%.3e %9lld %8lld\n", m.name.c_str(), shape.c_str(),
                100.0 * m.outlier_fraction(), m.scale_min, m.scale_max, static_cast<long long>(m.rescales),
                static_cast<long long>(m.rows_rescaled));
  }
}

void run_inspect(const InspectOptions& o) {
  if (std::filesystem::is_regular_file(o.path)) return inspect_file(o);
  if (is_checkpoint(o.path)) return print_checkpoint(o);
  refuse_run_directory(o.path);
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
  CLI::App* sub = app.add_subcommand("inspect", "Show the config, parameter count and tensors of a HF LLaMA directory, the state and quantization statistics of a qft checkpoint, or one .safetensors file");
  sub->add_option("path", opts->path, "HF model directory, qft checkpoint (step_*/) or .safetensors file")->required();
  sub->add_flag("--json", opts->json, "Print one JSON object");
  sub->callback([opts] { run_inspect(*opts); });
}

}  // namespace qft::cmd
