#include "model/hf_model.h"

#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "core/json_file.h"

namespace qft {

namespace fs = std::filesystem;

namespace {

// Tensors older checkpoints carry that the model recomputes; they are ignored, not errors.
bool is_ignorable(const std::string& name) { return name.find("rotary_emb.inv_freq") != std::string::npos; }

}  // namespace

void require_model_dir(const std::string& dir) {
  if (!fs::exists(dir)) throw FileError(dir, "model directory does not exist");
  if (!fs::is_directory(dir)) {
    throw FileError(dir, "is not a directory; a model is a HF directory with config.json and safetensors, or a qft checkpoint");
  }
}

HfModel::HfModel(const std::string& dir) : dir_(dir) {
  require_model_dir(dir);
  config_ = load_llama_config((fs::path(dir) / "config.json").string());
  open_shards();
  validate_tensors();
}

void HfModel::open_shards() {
  const fs::path d(dir_);
  const fs::path index = d / "model.safetensors.index.json";
  const fs::path single = d / "model.safetensors";
  if (fs::exists(index)) {
    sharded_ = true;
    const nlohmann::json j = read_json_file(index.string());
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
      throw FileError(index.string(), "missing the 'weight_map' object");
    }
    std::map<std::string, std::vector<std::string>> files;  // shard file -> tensor names it should hold
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw FileError(index.string(), "weight_map['" + it.key() + "'] is not a file name");
      const std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos) throw FileError(index.string(), "shard name '" + file + "' must be a plain file name");
      files[file].push_back(it.key());
    }
    for (const auto& [file, names] : files) {
      shards_.push_back(std::make_unique<SafeTensorsFile>((d / file).string()));
      for (const auto& n : names) {
        if (!shards_.back()->find(n)) throw TensorError(shards_.back()->path(), n, "listed in the index but not in this shard");
      }
    }
  } else if (fs::exists(single)) {
    shards_.push_back(std::make_unique<SafeTensorsFile>(single.string()));
  } else if (fs::exists(d / "pytorch_model.bin") || fs::exists(d / "pytorch_model.bin.index.json")) {
    throw UnsupportedError(dir_ + ": holds only pickle checkpoints (pytorch_model.bin); qft never executes pickles. "
                           "Convert the model to safetensors first (save_pretrained(..., safe_serialization=True)).");
  } else {
    throw FileError(dir_, "no model.safetensors or model.safetensors.index.json found");
  }
}

void HfModel::validate_tensors() const {
  std::map<std::string, const SafeTensorInfo*> present;
  for (const auto& s : shards_) {
    for (const auto& t : s->tensors()) {
      if (present.count(t.name)) throw TensorError(s->path(), t.name, "stored in more than one shard");
      present[t.name] = &t;
    }
  }
  std::set<std::string> expected;
  for (const auto& spec : llama_tensor_specs(config_)) {
    expected.insert(spec.name);
    auto it = present.find(spec.name);
    if (it == present.end()) throw TensorError(dir_, spec.name, "missing from the checkpoint");
    const SafeTensorInfo& t = *it->second;
    if (t.shape != spec.shape) {
      throw TensorError(file_of(spec.name).path(), spec.name,
                        "has shape " + shape_str(t.shape) + " but config.json implies " + shape_str(spec.shape));
    }
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16) {
      throw TensorError(file_of(spec.name).path(), spec.name, std::string("has dtype ") + dtype_name(t.dtype) +
                                                                   "; expected F32, BF16 or F16");
    }
  }
  for (const auto& [name, info] : present) {
    // A tied checkpoint may still carry lm_head.weight; transformers ignores it and so do we.
    if (expected.count(name) || is_ignorable(name) || (name == "lm_head.weight" && config_.tie_word_embeddings)) continue;
    throw TensorError(file_of(name).path(), name, "is not a LlamaForCausalLM tensor for this config");
  }
}

const SafeTensorsFile& HfModel::file_of(std::string_view name) const {
  for (const auto& s : shards_) {
    if (s->find(name)) return *s;
  }
  throw TensorError(dir_, std::string(name), "not found");
}

std::vector<float> HfModel::read_f32(std::string_view name) const { return file_of(name).read_f32(name); }

DType HfModel::dtype_of(std::string_view name) const { return file_of(name).find(name)->dtype; }

}  // namespace qft
