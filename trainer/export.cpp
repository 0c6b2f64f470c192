#include "trainer/export.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
#include "core/json_file.h"
#include "cpu/cpu_backend.h"
#include "model/safetensors.h"
#include "trainer/model_source.h"

namespace qft {

namespace fs = std::filesystem;

namespace {

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    case DType::F32: return "float32";
    default: throw Error(std::string("export: unsupported dtype ") + dtype_name(t) + "; use bf16, fp16 or fp32");
  }
}

HostTensor convert(const std::vector<float>& v, DType dtype, Shape shape) {
  HostTensor t(dtype, std::move(shape));
  convert_from_f32(dtype, v.data(), t.bytes.data(), v.size());
  return t;
}

// Consecutive tensors grouped into shards of at most max_bytes each (a larger tensor gets a shard alone).
std::vector<std::vector<int>> plan_shards(const std::vector<size_t>& sizes, size_t max_bytes) {
  std::vector<std::vector<int>> shards(1);
  size_t used = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!shards.back().empty() && used + sizes[i] > max_bytes) {
      shards.emplace_back();
      used = 0;
    }
    shards.back().push_back(int(i));
    used += sizes[i];
  }
  return shards;
}

template <class Json>
void write_json(const fs::path& path, const Json& j) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << j.dump(2) << "\n";
  f.flush();
  if (!f) throw FileError(path.string(), "write failed");
}

// The base model a checkpoint's run started from (its config's model.path), for adapter_config.json.
std::string base_model_path(const ModelSource& src) {
  if (!src.checkpoint) return src.path;
  const nlohmann::json run = nlohmann::json::parse(src.checkpoint->state.config_json, nullptr, false);
  const nlohmann::json* path = run.is_object() && run.contains("model") && run["model"].is_object() && run["model"].contains("path")
                                   ? &run["model"]["path"]
                                   : nullptr;
  return path && path->is_string() ? path->get<std::string>() : src.path;
}

// adapter_config.json as PEFT writes it for a LoraConfig with these settings.
nlohmann::ordered_json peft_config(const LoraSettings& lora, const ModelSource& src) {
  nlohmann::ordered_json targets = nlohmann::ordered_json::array();
  for (int t = 0; t < kLoraTargets; ++t) {
    if (lora.targets[size_t(t)]) targets.push_back(lora_target_name(LoraTarget(t)));
  }
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"base_model_name_or_path", base_model_path(src)},
          {"r", lora.rank},
          {"lora_alpha", lora.alpha},
          {"lora_dropout", 0.0},
          {"target_modules", targets},
          {"bias", "none"},
          {"fan_in_fan_out", false},
          {"inference_mode", true},
          {"init_lora_weights", true},
          {"use_rslora", false},
          {"use_dora", false},
          {"modules_to_save", nullptr},
          {"layers_to_transform", nullptr},
          {"layers_pattern", nullptr},
          {"rank_pattern", nlohmann::ordered_json::object()},
          {"alpha_pattern", nlohmann::ordered_json::object()},
          {"revision", nullptr}};
}

}  // namespace

size_t parse_byte_size(const std::string& text, const std::string& where) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  std::string unit = text.substr(pos);
  for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  const std::vector<std::pair<std::string, double>> units = {
      {"", 1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
      {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0}};
  for (const auto& [name, scale] : units) {
    if (pos > 0 && unit == name && value > 0 && std::isfinite(value)) return size_t(std::llround(value * scale));
  }
  throw Error(where + ": '" + text + "' is not a size; write e.g. 5GB, 500MB, 2GiB or a byte count");
}

ExportSummary export_hf(const std::string& source, const std::string& out_dir, const ExportOptions& opts) {
  const char* torch_dtype = torch_dtype_name(opts.dtype);
  fs::path out = fs::path(out_dir).lexically_normal();
  if (out.filename().empty()) out = out.parent_path();  // "dir/" names dir
  std::error_code ec;
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out))) {
    throw FileError(out_dir, "already exists and is not an empty directory; choose another --out or remove it");
  }
  const ModelSource src = open_model_source(source);
  CpuBackend host;
  const auto model = load_model(src, host);  // as stored: an INT8 checkpoint stays INT8 until each tensor is written
  const LoraSettings& lora = model->storage().lora;
  if (!lora.enabled() && opts.lora != LoraExport::Merge) {
    throw Error(source + " has no LoRA adapters (it is not a train.method=lora checkpoint); export it without --lora");
  }
  const bool adapter_dir = lora.enabled() && opts.lora == LoraExport::Adapter;

  // The tensors written, by parameter: the adapters alone (PEFT), or every other tensor (merged or the base).
  std::vector<int> written;
  for (size_t i = 0; i < model->params().size(); ++i) {
    if ((model->params()[i].role == ParamRole::Adapter) == adapter_dir) written.push_back(int(i));
  }
  std::vector<size_t> sizes;
  for (int i : written) sizes.push_back(size_t(model->params()[size_t(i)].numel()) * dtype_size(opts.dtype));
  const auto shards = plan_shards(sizes, adapter_dir ? SIZE_MAX : opts.shard_bytes);  // PEFT reads one file
  auto values = [&](int i) {
    return opts.lora == LoraExport::Merge ? model->read_merged_weight(i) : model->read_weight(i);
  };

  // Unique to this process: a user's folder of any name, or another export's, is never touched.
  const fs::path tmp = temp_path_beside(out.string());
  if (fs::exists(tmp, ec)) throw FileError(tmp.string(), "exists; remove it (a leftover of an export of this process id)");
  fs::create_directories(tmp, ec);
  if (ec) throw FileError(tmp.string(), "cannot create the export directory: " + ec.message());
  ExportSummary summary;
  try {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      const std::string file = adapter_dir          ? std::string("adapter_model.safetensors")
                               : shards.size() == 1 ? std::string("model.safetensors")
                                                    : std::string(name);
      std::vector<HostTensor> tensors;
      tensors.reserve(shards[s].size());
      std::vector<NamedTensor> named;
      for (int k : shards[s]) {
        const int i = written[size_t(k)];
        const Param& p = model->params()[size_t(i)];
        tensors.push_back(convert(values(i), opts.dtype, p.shape));
        // PEFT names an adapter after the module path inside its PeftModel wrapper
        named.emplace_back(adapter_dir ? "base_model.model." + p.name : p.name, &tensors.back());
        weight_map[p.name] = file;
        summary.bytes += sizes[size_t(k)];
        summary.tensors += 1;
      }
      write_safetensors((tmp / file).string(), named, {{"format", "pt"}});
    }
    summary.shards = int(shards.size());
    if (adapter_dir) {
      write_json(tmp / "adapter_config.json", peft_config(lora, src));
    } else {
      if (shards.size() > 1) {
        const nlohmann::ordered_json index = {{"metadata", {{"total_size", summary.bytes}}}, {"weight_map", weight_map}};
        write_json(tmp / "model.safetensors.index.json", index);
      }
      nlohmann::json config = read_json_file((fs::path(source) / "config.json").string());
      config["torch_dtype"] = torch_dtype;
      if (config.contains("dtype")) config["dtype"] = torch_dtype;  // transformers >= 4.56 writes "dtype"
      write_json(tmp / "config.json", config);
      for (const std::string& f : model_side_files()) {
        const fs::path from = fs::path(source) / f;
        if (f == "config.json" || !fs::exists(from)) continue;
        fs::copy_file(from, tmp / f, fs::copy_options::overwrite_existing, ec);
        if (ec) throw FileError((tmp / f).string(), "cannot copy from " + source + ": " + ec.message());
      }
    }
    fs::remove(out, ec);  // an empty directory, or nothing
    fs::rename(tmp, out, ec);
    if (ec) throw FileError(out_dir, "cannot move the export into place: " + ec.message());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return summary;
}

}  // namespace qft
