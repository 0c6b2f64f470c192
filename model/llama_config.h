#pragma once
// The LLaMA architecture as HF's config.json describes it, and the tensors LlamaForCausalLM stores.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qft {

struct RopeScaling {
  std::string type = "default";  // "default" or "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int vocab_size = 0;
  bool tie_word_embeddings = false;
  int max_position_embeddings = 2048;
  int bos_token_id = 1;
  int eos_token_id = 2;

  int q_dim() const { return num_attention_heads * head_dim; }
  int kv_dim() const { return num_key_value_heads * head_dim; }
  int64_t parameter_count() const;
  // (head_dim / 2,) rotary frequencies, llama3 scaling applied, as transformers computes them
  std::vector<float> rope_inv_freq() const;
};

// Parses the text of an HF config.json; `where` names the file in errors. Accepts both the classic layout
// (rope_theta, rope_scaling) and the newer one (rope_parameters).
LlamaConfig parse_llama_config(const std::string& json_text, const std::string& where);
LlamaConfig load_llama_config(const std::string& config_json_path);

struct TensorSpec {
  std::string name;
  Shape shape;
};

// Every tensor of LlamaForCausalLM under the names transformers writes, in model order.
// lm_head.weight is absent when the embeddings are tied.
std::vector<TensorSpec> llama_tensor_specs(const LlamaConfig& c);

}  // namespace qft
