#include "model/llama_config.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/json_file.h"

namespace qft {

namespace {

using nlohmann::json;

constexpr int64_t kMaxContext = int64_t(1) << 24;  // 16M positions

template <class T>
T get_or(const json& j, const std::string& key, T fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw ConfigError(where, key, "has the wrong type: " + it->dump());
  }
}

// An integer value in [lo, hi]: a fraction, a string, or a number beyond int (read modulo 2^32 otherwise) is refused.
int checked_int(const json& v, const std::string& key, int64_t lo, int64_t hi, const std::string& where) {
  const std::optional<int64_t> i = json_integer_in(v, lo, hi);
  if (!i) throw ConfigError(where, key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v.dump());
  return int(*i);
}

// A size of the architecture: positive, and at most `limit`, which is far beyond every released LLaMA-family
// model and keeps every product of sizes (parameter counts, bytes) inside 64 bits.
int get_size(const json& j, const std::string& key, int fallback, int64_t limit, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback == 0) throw ConfigError(where, key, "is required");
    return fallback;
  }
  return checked_int(*it, key, 1, limit, where);
}

int first_token_id(const json& j, const std::string& key, int fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  const json& v = it->is_array() && !it->empty() ? it->at(0) : *it;
  return checked_int(v, key, 0, std::numeric_limits<int32_t>::max(), where);
}

RopeScaling parse_rope_scaling(const json& s, const std::string& where, const std::string& key) {
  RopeScaling r;
  if (s.is_null()) return r;
  if (!s.is_object()) throw ConfigError(where, key, "must be an object or null");
  std::string type = get_or<std::string>(s, "rope_type", get_or<std::string>(s, "type", "default", where), where);
  if (type == "default") return r;
  if (type != "llama3") {
    throw ConfigError(where, key, "rope type '" + type + "' is unsupported (qft supports default and llama3)");
  }
  r.type = type;
  r.factor = get_or<double>(s, "factor", 8.0, where);
  r.low_freq_factor = get_or<double>(s, "low_freq_factor", 1.0, where);
  r.high_freq_factor = get_or<double>(s, "high_freq_factor", 4.0, where);
  r.original_max_position_embeddings = get_size(s, "original_max_position_embeddings", 8192, kMaxContext, where);
  if (r.factor <= 0 || r.high_freq_factor <= r.low_freq_factor || r.original_max_position_embeddings <= 0) {
    throw ConfigError(where, key, "llama3 rope scaling needs factor > 0, high_freq_factor > low_freq_factor and "
                                  "original_max_position_embeddings > 0");
  }
  return r;
}

}  // namespace

LlamaConfig parse_llama_config(const std::string& json_text, const std::string& where) {
  const json j = parse_json(json_text, where);
  if (!j.is_object()) throw FileError(where, "must hold a JSON object");

  std::string model_type = get_or<std::string>(j, "model_type", "llama", where);
  if (model_type != "llama") {
    throw ConfigError(where, "model_type", "'" + model_type + "' is unsupported; qft trains LLaMA-architecture models");
  }
  std::string act = get_or<std::string>(j, "hidden_act", "silu", where);
  if (act != "silu") throw ConfigError(where, "hidden_act", "'" + act + "' is unsupported; LLaMA uses silu");
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (get_or<bool>(j, key, false, where)) throw ConfigError(where, key, "bias terms are unsupported");
  }

  LlamaConfig c;
  c.hidden_size = get_size(j, "hidden_size", 0, 1 << 17, where);
  c.intermediate_size = get_size(j, "intermediate_size", 0, 1 << 20, where);
  c.num_hidden_layers = get_size(j, "num_hidden_layers", 0, 4096, where);
  c.num_attention_heads = get_size(j, "num_attention_heads", 0, 4096, where);
  c.num_key_value_heads = get_size(j, "num_key_value_heads", c.num_attention_heads, 4096, where);
  c.vocab_size = get_size(j, "vocab_size", 0, 1 << 22, where);
  c.max_position_embeddings = get_size(j, "max_position_embeddings", 2048, kMaxContext, where);
  if (c.hidden_size % c.num_attention_heads != 0 && !j.contains("head_dim")) {
    throw ConfigError(where, "num_attention_heads", "does not divide hidden_size and no head_dim is given");
  }
  c.head_dim = get_size(j, "head_dim", std::max(1, c.hidden_size / c.num_attention_heads), 1 << 12, where);
  if (c.head_dim % 2 != 0) throw ConfigError(where, "head_dim", "must be even for rotary embeddings");
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    throw ConfigError(where, "num_key_value_heads", "must divide num_attention_heads (" +
                                                        std::to_string(c.num_attention_heads) + ")");
  }
  c.rms_norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, where);
  if (!(c.rms_norm_eps > 0)) throw ConfigError(where, "rms_norm_eps", "must be positive");
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false, where);
  c.bos_token_id = first_token_id(j, "bos_token_id", 1, where);
  c.eos_token_id = first_token_id(j, "eos_token_id", 2, where);
  for (const auto& [key, id] : {std::pair{"bos_token_id", c.bos_token_id}, std::pair{"eos_token_id", c.eos_token_id}}) {
    if (id >= c.vocab_size) {
      throw ConfigError(where, key, "is " + std::to_string(id) + ", outside the vocabulary of " + std::to_string(c.vocab_size));
    }
  }

  // transformers >= 5 writes rope_parameters {rope_theta, rope_type, ...}; older files rope_theta + rope_scaling.
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null() && !j["rope_parameters"].is_object()) {
    throw ConfigError(where, "rope_parameters", "must be an object or null, got " + j["rope_parameters"].dump());
  }
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const json& rp = j["rope_parameters"];
    c.rope_theta = get_or<double>(rp, "rope_theta", get_or<double>(j, "rope_theta", 10000.0, where), where);
    c.rope_scaling = parse_rope_scaling(rp, where, "rope_parameters");
  } else {
    c.rope_theta = get_or<double>(j, "rope_theta", 10000.0, where);
    if (j.contains("rope_scaling")) c.rope_scaling = parse_rope_scaling(j["rope_scaling"], where, "rope_scaling");
  }
  if (!(c.rope_theta > 0)) throw ConfigError(where, "rope_theta", "must be positive");
  return c;
}

LlamaConfig load_llama_config(const std::string& path) {
  return parse_llama_config(read_text_file(path, kMaxConfigBytes), path);
}

// Every step in fp32, in transformers' order (torch's elementwise fp32 ops, glibc's powf): at position 100000 one
// ulp of a frequency moves an angle by 4e-3 rad, which the long-position fixture measured as 3e-3 in the logits.
std::vector<float> LlamaConfig::rope_inv_freq() const {
  const int half = head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    // 1 / base ** (arange(0, dim, 2).float() / dim)
    const float expo = float(2 * i) / float(head_dim);
    inv[i] = 1.0f / std::pow(float(rope_theta), expo);
  }
  if (rope_scaling.type == "llama3") {
    const RopeScaling& s = rope_scaling;
    const float old_ctx = float(s.original_max_position_embeddings), factor = float(s.factor);
    const float low = float(s.low_freq_factor), high = float(s.high_freq_factor);
    const float low_wavelen = float(double(s.original_max_position_embeddings) / s.low_freq_factor);
    const float high_wavelen = float(double(s.original_max_position_embeddings) / s.high_freq_factor);
    for (float& f : inv) {
      const float wavelen = float(2.0 * M_PI) / f;
      if (wavelen < high_wavelen) continue;  // high frequency: unchanged
      if (wavelen > low_wavelen) {
        f = f / factor;  // low frequency: scaled down
      } else {           // medium: interpolate smoothly between the two
        const float smooth = (old_ctx / wavelen - low) / (high - low);
        f = (1.0f - smooth) * f / factor + smooth * f;
      }
    }
  }
  return inv;
}

std::vector<TensorSpec> llama_tensor_specs(const LlamaConfig& c) {
  using R = ParamRole;
  using LP = LayerParams;
  const int64_t C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, Q = c.q_dim(), KV = c.kv_dim();
  std::vector<TensorSpec> specs{{"model.embed_tokens.weight", {V, C}, R::Embedding}};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const TensorSpec layer[] = {
        {p + "input_layernorm.weight", {C}, R::Norm, l, &LP::attn_norm},
        {p + "self_attn.q_proj.weight", {Q, C}, R::Matrix, l, &LP::q},
        {p + "self_attn.k_proj.weight", {KV, C}, R::Matrix, l, &LP::k},
        {p + "self_attn.v_proj.weight", {KV, C}, R::Matrix, l, &LP::v},
        {p + "self_attn.o_proj.weight", {C, Q}, R::Matrix, l, &LP::o},
        {p + "post_attention_layernorm.weight", {C}, R::Norm, l, &LP::mlp_norm},
        {p + "mlp.gate_proj.weight", {I, C}, R::Matrix, l, &LP::gate},
        {p + "mlp.up_proj.weight", {I, C}, R::Matrix, l, &LP::up},
        {p + "mlp.down_proj.weight", {C, I}, R::Matrix, l, &LP::down},
    };
    specs.insert(specs.end(), std::begin(layer), std::end(layer));
  }
  specs.push_back({"model.norm.weight", {C}, R::Norm});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {V, C}, R::Head});
  return specs;
}

int64_t LlamaConfig::parameter_count() const {
  int64_t n = 0;
  for (const auto& s : llama_tensor_specs(*this)) n += shape_numel(s.shape);
  return n;
}

}  // namespace qft
