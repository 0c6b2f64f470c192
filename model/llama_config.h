#pragma once
// The LLaMA architecture as HF's config.json describes it, and the tensors LlamaForCausalLM stores.
#include <cstdint>
#include <array>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/lora.h"

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

// What a tensor is for. How it is stored and whether it decays follow from its role, never from its shape:
// a bias or a q/k norm is 1-D like an RMSNorm weight, but that is not why it stays fp32.
enum class ParamRole { Embedding, Norm, Matrix, Head, Bias, Adapter };  // Adapter: a LoRA A or B (model/lora.h)
// Embedding, projection and head matrices may be stored as hybrid INT8 with INT8 momentum; the rest stays fp32.
inline bool quantizable(ParamRole r) { return r == ParamRole::Embedding || r == ParamRole::Matrix || r == ParamRole::Head; }
// Norms and biases take no weight decay unless train.decay_norms asks for it.
inline bool decay_exempt(ParamRole r) { return r == ParamRole::Norm || r == ParamRole::Bias; }

// The tensors of one decoder layer, by name, as indices into the model's parameter list (llm.c's
// ParameterTensors, one layer of it).
struct LayerParams {
  int attn_norm = -1, q = -1, k = -1, v = -1, o = -1, mlp_norm = -1, gate = -1, up = -1, down = -1;
  // LoRA adapters by target (LoraTarget order); -1 where there is none.
  std::array<int, kLoraTargets> lora_a{-1, -1, -1, -1, -1, -1, -1}, lora_b{-1, -1, -1, -1, -1, -1, -1};
  // The base matrix an adapter of target t sits on.
  int matrix(LoraTarget t) const {
    constexpr std::array<int LayerParams::*, kLoraTargets> slots{&LayerParams::q,    &LayerParams::k,  &LayerParams::v,
                                                                 &LayerParams::o,    &LayerParams::gate,
                                                                 &LayerParams::up,   &LayerParams::down};
    return this->*slots[size_t(t)];
  }
};

struct TensorSpec {
  std::string name;
  Shape shape;
  ParamRole role = ParamRole::Matrix;
  int layer = -1;                    // its decoder layer, or -1 outside the layers
  int LayerParams::*slot = nullptr;  // its field in that layer's LayerParams
};

// Every tensor of LlamaForCausalLM under the names transformers writes, in model order, with its role: the
// one table from which the model's named parameters are built.
// lm_head.weight is absent when the embeddings are tied.
std::vector<TensorSpec> llama_tensor_specs(const LlamaConfig& c);

}  // namespace qft
