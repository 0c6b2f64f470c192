#include "model/lora.h"

#include "model/llama_config.h"

namespace qft {

namespace {
struct TargetNames {
  const char *short_name, *peft, *module;
};
constexpr std::array<TargetNames, kLoraTargets> kNames{{{"q", "q_proj", "self_attn.q_proj"},
                                                        {"k", "k_proj", "self_attn.k_proj"},
                                                        {"v", "v_proj", "self_attn.v_proj"},
                                                        {"o", "o_proj", "self_attn.o_proj"},
                                                        {"gate", "gate_proj", "mlp.gate_proj"},
                                                        {"up", "up_proj", "mlp.up_proj"},
                                                        {"down", "down_proj", "mlp.down_proj"}}};
}  // namespace

const char* lora_target_name(LoraTarget t) { return kNames[size_t(t)].peft; }
const char* lora_target_short_name(LoraTarget t) { return kNames[size_t(t)].short_name; }
const char* lora_target_module(LoraTarget t) { return kNames[size_t(t)].module; }

std::string lora_base_name(int layer, LoraTarget t) {
  return "model.layers." + std::to_string(layer) + "." + lora_target_module(t) + ".weight";
}

std::vector<LoraTensorSpec> lora_tensor_specs(const LlamaConfig& c, const LoraSettings& s) {
  std::vector<LoraTensorSpec> out;
  if (!s.enabled()) return out;
  const int64_t C = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), r = s.rank;
  // (out, in) of each target's base matrix
  const std::array<std::array<int64_t, 2>, kLoraTargets> dims{{{Q, C}, {KV, C}, {KV, C}, {C, Q}, {I, C}, {I, C}, {C, I}}};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      if (!s.targets[size_t(t)]) continue;
      const std::string base = "model.layers." + std::to_string(l) + "." + kNames[size_t(t)].module;
      out.push_back({base + ".lora_A.weight", {r, dims[size_t(t)][1]}, l, LoraTarget(t), false});
      out.push_back({base + ".lora_B.weight", {dims[size_t(t)][0], r}, l, LoraTarget(t), true});
    }
  }
  return out;
}

}  // namespace qft
