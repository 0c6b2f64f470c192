#include "model/lora.h"

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

std::string lora_tensor_name(int layer, LoraTarget t, bool is_b) {
  return "model.layers." + std::to_string(layer) + "." + lora_target_module(t) + (is_b ? ".lora_B.weight" : ".lora_A.weight");
}

}  // namespace qft
