#include "trainer/config.h"

#include <algorithm>
#include <functional>

#include "core/error.h"
#include "core/json_file.h"
#include "text/chat_template.h"

namespace qft {

namespace {

using nlohmann::json;

// ---- conversions from JSON with errors that name the key ----

template <class T>
T convert(const json& j, const std::string& where, const std::string& key);

template <>
int convert<int>(const json& j, const std::string& where, const std::string& key) {
  if (!j.is_number_integer()) throw ConfigError(where, key, "expected an integer, got " + j.dump());
  const std::optional<int64_t> v = json_integer_in(j, INT32_MIN, INT32_MAX);
  if (!v) throw ConfigError(where, key, "integer out of range: " + j.dump());
  return int(*v);
}
template <>
uint64_t convert<uint64_t>(const json& j, const std::string& where, const std::string& key) {
  if (!j.is_number_unsigned()) throw ConfigError(where, key, "expected a non-negative integer, got " + j.dump());
  return j.get<uint64_t>();
}
template <>
double convert<double>(const json& j, const std::string& where, const std::string& key) {
  if (!j.is_number()) throw ConfigError(where, key, "expected a number, got " + j.dump());
  return j.get<double>();
}
template <>
bool convert<bool>(const json& j, const std::string& where, const std::string& key) {
  if (!j.is_boolean()) throw ConfigError(where, key, "expected true or false, got " + j.dump());
  return j.get<bool>();
}
template <>
std::string convert<std::string>(const json& j, const std::string& where, const std::string& key) {
  if (!j.is_string()) throw ConfigError(where, key, "expected a string, got " + j.dump());
  return j.get<std::string>();
}
template <>
std::optional<double> convert<std::optional<double>>(const json& j, const std::string& where, const std::string& key) {
  if (j.is_null()) return std::nullopt;
  if (!j.is_number()) throw ConfigError(where, key, "expected a number or null, got " + j.dump());
  return j.get<double>();
}
template <>
std::array<double, 2> convert<std::array<double, 2>>(const json& j, const std::string& where, const std::string& key) {
  if (!j.is_array() || j.size() != 2 || !j[0].is_number() || !j[1].is_number()) {
    throw ConfigError(where, key, "expected a list of two numbers, got " + j.dump());
  }
  return {j[0].get<double>(), j[1].get<double>()};
}

template <class T>
json to_json_value(const T& v) {
  if constexpr (std::is_enum_v<T>) {
    return json(enum_name(v));
  } else {
    return json(v);
  }
}
json to_json_value(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

std::string join_choices(const std::vector<std::string>& choices) {
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  return list;
}

// A string key's value must be one of its choices, when it has any.
void require_choice(const std::string& value, const std::vector<std::string>& choices, const std::string& where,
                    const std::string& key) {
  if (choices.empty() || std::find(choices.begin(), choices.end(), value) != choices.end()) return;
  throw ConfigError(where, key, "'" + value + "' is not one of: " + join_choices(choices));
}

struct KeyDef {
  std::string key;
  std::string doc;
  std::vector<std::string> choices;  // empty: any value of the type
  std::function<void(RunConfig&, const json&, const std::string&)> set;
  std::function<json(const RunConfig&)> get;
};

template <class Access>
KeyDef def(std::string key, Access access, std::string doc, std::vector<std::string> choices = {}) {
  using T = std::remove_reference_t<decltype(access(std::declval<RunConfig&>()))>;
  if constexpr (std::is_enum_v<T>) choices = enum_names<T>();
  KeyDef d{key, std::move(doc), choices, nullptr, nullptr};
  d.set = [key, access, choices](RunConfig& c, const json& j, const std::string& where) {
    if constexpr (std::is_enum_v<T>) {  // its choices are its names
      const std::string name = convert<std::string>(j, where, key);
      require_choice(name, choices, where, key);
      access(c) = *parse_enum<T>(name);
    } else {
      const T v = convert<T>(j, where, key);
      if constexpr (std::is_same_v<T, std::string>) require_choice(v, choices, where, key);
      access(c) = v;
    }
  };
  d.get = [access](const RunConfig& c) { return to_json_value(access(const_cast<RunConfig&>(c))); };
  return d;
}

// model.arch holds a whole HF config.json object; it is kept as JSON text so config.h needs no JSON header.
KeyDef arch_key() {
  KeyDef d{"model.arch", "the model's HF config.json fields, used by qft plan when model.path has none", {}, nullptr, nullptr};
  d.set = [](RunConfig& c, const json& j, const std::string& where) {
    if (j.is_null()) return c.model.arch.clear();
    if (!j.is_object()) throw ConfigError(where, "model.arch", "must be an object with the fields of an HF config.json");
    c.model.arch = j.dump();
  };
  d.get = [](const RunConfig& c) { return c.model.arch.empty() ? json(nullptr) : json::parse(c.model.arch); };
  return d;
}

// lora.targets: a list of projection names, each once.
KeyDef lora_targets_key() {
  std::vector<std::string> names;
  for (int t = 0; t < kLoraTargets; ++t) names.emplace_back(lora_target_short_name(LoraTarget(t)));
  KeyDef d{"lora.targets", "the projections of every layer that get an adapter", names, nullptr, nullptr};
  d.set = [names](RunConfig& c, const json& j, const std::string& where) {
    if (!j.is_array() || j.empty()) throw ConfigError(where, "lora.targets", "expected a non-empty list such as [\"q\", \"v\"]");
    std::vector<std::string> out;
    for (const json& e : j) {
      const std::string t = convert<std::string>(e, where, "lora.targets");
      require_choice(t, names, where, "lora.targets");
      if (std::find(out.begin(), out.end(), t) != out.end()) throw ConfigError(where, "lora.targets", "'" + t + "' is listed twice");
      out.push_back(t);
    }
    c.lora.targets = out;
  };
  d.get = [](const RunConfig& c) { return json(c.lora.targets); };
  return d;
}

#define QFT_FIELD(expr) [](RunConfig& c) -> auto& { return c.expr; }

const std::vector<KeyDef>& key_table() {
  static const std::vector<KeyDef> keys = {
      def("model.path", QFT_FIELD(model.path), "HF LLaMA directory (config.json, safetensors, tokenizer.json or tokenizer.model), or a qft checkpoint step_*/ to start from its weights with a fresh optimizer and schedule (init-from; to continue a run use --resume)"),
      arch_key(),
      def("model.init", QFT_FIELD(model.init),
          "pretrained: the weights in model.path; random: weights drawn from N(0, 0.02) seeded by train.seed (norms 1) "
          "for model.path's config.json, which then needs no weight files, only the tokenizer (benchmarks)"),
      def("data.train", QFT_FIELD(data.train), "training JSONL file (required)"),
      def("data.val", QFT_FIELD(data.val), "validation JSONL file; empty: no validation"),
      def("data.format", QFT_FIELD(data.format), "record format of the JSONL files"),
      def("data.template", QFT_FIELD(data.prompt_template),
          "chat template for alpaca, prompt_completion and chat: a built-in, or auto for the one the model's own "
          "chat template (tokenizer_config.json or chat_template.jinja) renders",
          template_choices()),
      def("data.seq_len", QFT_FIELD(data.seq_len), "tokens per sequence; longer examples are truncated"),
      def("data.packing", QFT_FIELD(data.packing),
          "pack several examples per sequence; attention is masked and positions restart per example"),
      def("data.train_on_prompt", QFT_FIELD(data.train_on_prompt), "also put loss on prompt tokens"),
      def("data.skip_bad_lines", QFT_FIELD(data.skip_bad_lines), "skip and count malformed lines instead of failing"),
      def("data.shuffle", QFT_FIELD(data.shuffle), "shuffle examples each epoch (deterministic by train.seed)"),
      def("train.method", QFT_FIELD(train.method),
          "full: every parameter (QFT); lora: adapters on a frozen base (lora.*), for the smallest machines"),
      def("train.optimizer", QFT_FIELD(train.optimizer),
          "lion (one momentum, INT8 for matrices), or adamw (two fp32 moments, eps 1e-8; train.method=lora only)"),
      def("train.steps", QFT_FIELD(train.steps), "optimizer steps"),
      def("train.batch_size", QFT_FIELD(train.batch_size), "sequences per micro-batch"),
      def("train.grad_accum", QFT_FIELD(train.grad_accum), "micro-batches per optimizer step, on each rank"),
      def("train.lr", QFT_FIELD(train.lr), "peak learning rate (Lion: 3-10x smaller than AdamW's)"),
      def("train.lr_schedule", QFT_FIELD(train.lr_schedule), "decay after warmup, to 0 at train.steps"),
      def("train.warmup_steps", QFT_FIELD(train.warmup_steps), "linear warmup from 0 over this many steps"),
      def("train.weight_decay", QFT_FIELD(train.weight_decay), "decoupled weight decay (Lion: 3-10x larger than AdamW's)"),
      def("train.decay_norms", QFT_FIELD(train.decay_norms), "apply weight decay to RMSNorm weights too"),
      def("train.betas", QFT_FIELD(train.betas), "[beta1, beta2] of Lion, or of AdamW (which usually takes [0.9, 0.999])"),
      def("train.clip_grad_norm", QFT_FIELD(train.clip_grad_norm),
          "clip the global gradient norm; null: off. Costs one more backward of the last micro-batch per step"),
      def("train.seed", QFT_FIELD(train.seed), "seed for shuffling"),
      def("train.eval_every", QFT_FIELD(train.eval_every), "validate every N steps; 0: only at the end"),
      def("train.eval_batches", QFT_FIELD(train.eval_batches), "validation batches per evaluation; 0: all"),
      def("train.save_every", QFT_FIELD(train.save_every),
          "save a checkpoint every N steps into output.dir/step_NNNNNNNN; 0: only at the end"),
      def("train.save_final", QFT_FIELD(train.save_final), "save a checkpoint after the last step (benchmarks turn it off)"),
      def("train.keep_last", QFT_FIELD(train.keep_last), "keep the newest N checkpoints; 0: keep all"),
      def("train.log_every", QFT_FIELD(train.log_every), "print and record metrics every N steps"),
      def("train.on_nonfinite", QFT_FIELD(train.on_nonfinite),
          "on a NaN/inf loss: stop the run, or skip the step (weights untouched)"),
      def("train.stack_dtype", QFT_FIELD(train.stack_dtype),
          "storage of the layer inputs backward keeps for its recompute: activations (as computed: fp32 on the CPU, "
          "bf16 on the GPU), bf16, or int8 with one scale per 64 values (only the gradients see it)"),
      def("train.stack_offload", QFT_FIELD(train.stack_offload),
          "keep the layer-input stack in page-locked host memory: the GPU holds one layer's; each layer's input "
          "crosses PCIe once each way per step. Same results"),
      def("quant.weights", QFT_FIELD(quant.weights),
          "weight matrices: int8 = dense INT8 with one scale per row + sparse fp32 outliers; norms stay fp32"),
      def("quant.momentum", QFT_FIELD(quant.momentum), "Lion momentum of matrices: block-wise INT8 or fp32"),
      def("quant.grad_dtype", QFT_FIELD(quant.grad_dtype),
          "gradient accumulators when train.grad_accum > 1: block-wise INT8 or fp32"),
      def("quant.outlier_fraction", QFT_FIELD(quant.outlier_fraction),
          "fraction of each weight row kept as fp32 outliers (largest |w|)"),
      def("quant.block_size", QFT_FIELD(quant.block_size), "elements per absmax block of INT8 momentum and gradients"),
      def("quant.rounding", QFT_FIELD(quant.rounding),
          "rounding of every INT8 write; stochastic keeps small updates in expectation"),
      def("quant.reselect_every", QFT_FIELD(quant.reselect_every), "re-select weight outliers every N steps; 0: never"),
      def("lora.rank", QFT_FIELD(lora.rank), "rank r of every adapter (train.method=lora)"),
      def("lora.alpha", QFT_FIELD(lora.alpha), "adapter scaling alpha: the adapter adds alpha / r (x A^T) B^T"),
      lora_targets_key(),
      def("lora.format", QFT_FIELD(lora.format),
          "gse: adapters, their input activations and gradients as group-shared-exponent integers, the adapter "
          "products as integer GEMMs (GSQ-Tuning); fp32: the same adapters in floating point"),
      def("lora.bits", QFT_FIELD(lora.bits), "GSE mantissa bits, sign included: 8, 6 or 4"),
      def("lora.group", QFT_FIELD(lora.group), "GSE values per shared exponent"),
      def("output.dir", QFT_FIELD(output.dir), "run directory: config.json, metrics.jsonl, train.log"),
      def("dist.world_size", QFT_FIELD(dist.world_size),
          "ranks of the job, each on its own part of every batch with 1/N of the optimizer state; 0: as many as the "
          "launcher started (mpirun, srun), 1 without one. qft plan plans one rank of this many; qft train refuses a "
          "count that differs from the launcher's. The global batch is train.batch_size x train.grad_accum x ranks"),
      def("dist.shard_weights", QFT_FIELD(dist.shard_weights),
          "with several ranks, each keeps only its rows of every INT8 matrix, and a matrix is gathered whole just "
          "before use: 1/N of the weights per rank, for models whose state exceeds one device"),
      def("dist.timeout_s", QFT_FIELD(dist.timeout_s),
          "a rank that waits longer than this in one collective (MPI) says so and ends the job, rather than hang "
          "on a rank that is stuck; 0: wait forever. Long enough for rank 0 to write a checkpoint's weights"),
      def("device", QFT_FIELD(device), "compute device; auto takes CUDA when qft was built with it and a GPU is visible"),
      def("debug_sync", QFT_FIELD(debug_sync), "CUDA: synchronize after every op so that a device fault names its op (slow); every backend: log each step's device-to-host reads"),
      def("profile", QFT_FIELD(profile), "time every op of the training steps and log each op kind's share of the step time at the end (CUDA: waits for every op, which slows the run)"),
  };
  return keys;
}

#undef QFT_FIELD

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

const KeyDef& find_key(const std::string& key, const std::string& where) {
  const KeyDef* best = nullptr;
  size_t best_d = SIZE_MAX;
  for (const auto& k : key_table()) {
    if (k.key == key) return k;
    const size_t d = edit_distance(key, k.key);
    if (d < best_d) best_d = d, best = &k;
  }
  std::string msg = "unknown key";
  if (best && best_d <= std::max<size_t>(3, key.size() / 3)) msg += "; did you mean '" + best->key + "'?";
  throw ConfigError(where, key, msg);
}

bool is_key(const std::string& key) {
  return std::any_of(key_table().begin(), key_table().end(), [&](const KeyDef& k) { return k.key == key; });
}

void apply_object(RunConfig& c, const json& obj, const std::string& prefix, const std::string& where) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (!is_key(key) && it.value().is_object()) {
      apply_object(c, it.value(), key, where);
    } else {
      find_key(key, where).set(c, it.value(), where);
    }
  }
}

}  // namespace

RunConfig RunConfig::from_json_text(const std::string& text, const std::string& where) {
  const json j = parse_json(text, where);
  if (!j.is_object()) throw FileError(where, "a config must be a JSON object");
  RunConfig c;
  apply_object(c, j, "", where);
  return c;
}

RunConfig RunConfig::load(const std::string& path) {
  return from_json_text(read_text_file(path, kMaxConfigBytes), path);
}

void RunConfig::apply_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("--set", assignment, "expected KEY=VALUE, for example train.lr=3e-5");
  }
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  json value = text;  // not JSON: a bare string such as fp32 or runs/sweep-1
  if (json::accept(text)) {
    value = parse_json(text, "--set " + key);  // bounded depth, no repeated keys
  } else {
    try {
      (void)value.dump();  // a config holds only UTF-8 text, as a JSON file does
    } catch (const json::type_error&) {
      throw ConfigError("--set", key, "the value is not valid UTF-8 text");
    }
  }
  find_key(key, "--set").set(*this, value, "--set");
}

void RunConfig::validate(bool for_training) const {
  const std::string where = "config";
  auto at_least = [&](const char* key, double v, double lo) {
    if (v < lo) throw ConfigError(where, key, "must be at least " + json(lo).dump() + ", got " + json(v).dump());
  };
  if (for_training && model.path.empty()) throw ConfigError(where, "model.path", "is required");
  if (for_training && data.train.empty()) throw ConfigError(where, "data.train", "is required");
  at_least("data.seq_len", data.seq_len, 2);
  at_least("train.steps", train.steps, 1);
  at_least("train.batch_size", train.batch_size, 1);
  at_least("train.grad_accum", train.grad_accum, 1);
  at_least("train.warmup_steps", train.warmup_steps, 0);
  at_least("train.weight_decay", train.weight_decay, 0);
  at_least("train.eval_every", train.eval_every, 0);
  at_least("train.eval_batches", train.eval_batches, 0);
  at_least("train.log_every", train.log_every, 1);
  // Bounds that keep every size product in range and refuse what no machine holds before anything is allocated.
  constexpr int64_t kMaxTokensPerMicroBatch = int64_t(1) << 24;
  if (int64_t(train.batch_size) * data.seq_len > kMaxTokensPerMicroBatch) {
    throw ConfigError(where, "train.batch_size", "times data.seq_len is " + std::to_string(int64_t(train.batch_size) * data.seq_len) +
                                                     " tokens per micro-batch; qft accepts at most " +
                                                     std::to_string(kMaxTokensPerMicroBatch) + " (use train.grad_accum for larger batches)");
  }
  if (!(train.lr > 0)) throw ConfigError(where, "train.lr", "must be positive");
  for (double b : train.betas) {
    if (!(b >= 0 && b < 1)) throw ConfigError(where, "train.betas", "each beta must lie in [0, 1)");
  }
  if (train.clip_grad_norm && !(*train.clip_grad_norm > 0)) {
    throw ConfigError(where, "train.clip_grad_norm", "must be positive or null");
  }
  at_least("train.save_every", train.save_every, 0);
  at_least("train.keep_last", train.keep_last, 0);
  if (train.eval_every > 0 && data.val.empty()) throw ConfigError(where, "train.eval_every", "needs data.val");
  if (!(quant.outlier_fraction >= 0 && quant.outlier_fraction <= 0.5)) {
    throw ConfigError(where, "quant.outlier_fraction", "must lie in [0, 0.5]");
  }
  at_least("quant.block_size", quant.block_size, 1);
  at_least("quant.reselect_every", quant.reselect_every, 0);
  if (train.optimizer == OptimizerKind::Adamw && train.method != TrainMethod::Lora) {
    throw ConfigError(where, "train.optimizer", "adamw keeps two fp32 moments per parameter; qft offers it for train.method=lora");
  }
  if (train.method == TrainMethod::Lora) {
    if (lora.rank < 1 || lora.rank > 4096) throw ConfigError(where, "lora.rank", "must lie in [1, 4096]");
    if (!(lora.alpha > 0 && lora.alpha < 1e6)) throw ConfigError(where, "lora.alpha", "must be positive");
    if (lora.bits != 4 && lora.bits != 6 && lora.bits != 8) throw ConfigError(where, "lora.bits", "must be 4, 6 or 8");
    // int32 sums of a group's products stay exact in fp32 up to 1040 values of 8 bits (ops/gse.h)
    if (lora.group < 1 || lora.group > 1024) throw ConfigError(where, "lora.group", "must lie in [1, 1024]");
  }
  at_least("dist.world_size", dist.world_size, 0);
  at_least("dist.timeout_s", dist.timeout_s, 0);
  if (dist.world_size > kMaxRanks) {
    throw ConfigError(where, "dist.world_size", "is " + std::to_string(dist.world_size) + "; qft runs at most " +
                                                    std::to_string(kMaxRanks) + " ranks");
  }
}

std::string RunConfig::to_json() const {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& k : key_table()) {
    nlohmann::ordered_json* node = &out;
    std::string rest = k.key;
    for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
      node = &(*node)[rest.substr(0, dot)];
    }
    (*node)[rest] = k.get(*this);
  }
  return out.dump(2);
}

WeightStorage RunConfig::weight_storage() const {
  WeightStorage w{quant.weights == StateStorage::Int8, quant.outlier_fraction, {}};
  if (train.method == TrainMethod::Lora) {
    w.lora.rank = lora.rank;
    w.lora.alpha = float(lora.alpha);
    for (const std::string& t : lora.targets) {
      for (int i = 0; i < kLoraTargets; ++i) {
        if (t == lora_target_short_name(LoraTarget(i))) w.lora.targets[size_t(i)] = true;
      }
    }
    w.lora.gse = lora.format == LoraFormat::Gse;
    w.lora.format = {lora.group, lora.bits};
    w.lora.seed = train.seed;
  }
  return w;
}

OptimizerSettings RunConfig::optimizer_settings() const {
  OptimizerSettings s;
  s.beta1 = float(train.betas[0]);
  s.beta2 = float(train.betas[1]);
  s.weight_decay = float(train.weight_decay);
  s.decay_norms = train.decay_norms;
  s.momentum_int8 = quant.momentum == StateStorage::Int8;
  s.grad_int8 = quant.grad_dtype == StateStorage::Int8;
  s.block_size = quant.block_size;
  s.stochastic = quant.rounding == Rounding::Stochastic;
  s.seed = train.seed;
  s.adamw = train.optimizer == OptimizerKind::Adamw;
  return s;
}

std::vector<ConfigKeyDoc> config_key_docs() {
  std::vector<ConfigKeyDoc> out;
  const RunConfig defaults;
  for (const auto& k : key_table()) {
    std::string doc = k.doc;
    if (!k.choices.empty()) doc += "; one of: " + join_choices(k.choices);
    out.push_back({k.key, k.get(defaults).dump(), doc});
  }
  return out;
}

}  // namespace qft
