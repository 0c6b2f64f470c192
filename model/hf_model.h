#pragma once
// A HuggingFace LLaMA directory: config.json, safetensors (single file or sharded with an index), tokenizer.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/llama_config.h"
#include "model/safetensors.h"

namespace qft {

// Throws FileError unless dir exists and is a directory (HF models and qft checkpoints are both directories).
void require_model_dir(const std::string& dir);

class HfModel {
 public:
  // Reads config.json, opens every shard and checks each tensor's name and shape against the config.
  // Throws FileError / TensorError / UnsupportedError naming the file and tensor.
  explicit HfModel(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const LlamaConfig& config() const { return config_; }
  const std::vector<std::unique_ptr<SafeTensorsFile>>& shards() const { return shards_; }
  bool sharded() const { return sharded_; }

  // The file and record that hold a tensor; throws TensorError if absent.
  const SafeTensorsFile& file_of(std::string_view name) const;
  std::vector<float> read_f32(std::string_view name) const;
  DType dtype_of(std::string_view name) const;

 private:
  void open_shards();
  void validate_tensors() const;

  std::string dir_;
  LlamaConfig config_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafeTensorsFile>> shards_;
};

}  // namespace qft
