#pragma once
// The run configuration: one JSON file with sections model, data, train, quant, output and the key device,
// plus --set overrides. Every key has a default and a line of documentation in one table (config.cpp);
// unknown keys are errors that suggest the closest valid key.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/weight_storage.h"
#include "trainer/optimizer_settings.h"
#include "trainer/settings.h"

namespace qft {

struct ModelSection {
  std::string path;
  ModelInit init = ModelInit::Pretrained;
  std::string arch;  // JSON text of an HF config.json, for planning before the download; empty: none
};

struct DataSection {
  std::string train;
  std::string val;
  DataFormat format = DataFormat::Text;
  std::string prompt_template = "plain";  // a built-in chat template (text/chat_template.h) or auto
  int seq_len = 512;
  bool packing = false;
  bool train_on_prompt = false;
  bool skip_bad_lines = false;
  bool shuffle = true;
};

struct TrainSection {
  TrainMethod method = TrainMethod::Full;
  OptimizerKind optimizer = OptimizerKind::Lion;
  int steps = 100;
  int batch_size = 4;
  int grad_accum = 1;
  double lr = 1e-4;
  LrSchedule lr_schedule = LrSchedule::Cosine;
  int warmup_steps = 0;
  double weight_decay = 0.1;
  bool decay_norms = false;
  std::array<double, 2> betas{0.9, 0.99};
  std::optional<double> clip_grad_norm;
  uint64_t seed = 0;
  int eval_every = 0;
  int eval_batches = 0;  // 0 = the whole validation file
  int save_every = 0;
  bool save_final = true;
  int keep_last = 0;
  int log_every = 1;
  OnNonFinite on_nonfinite = OnNonFinite::Stop;
  StackStorage stack_dtype = StackStorage::Int8;  // measured: README, "Long context"
  bool stack_offload = false;
};

struct QuantSection {
  StateStorage weights = StateStorage::Int8;     // hybrid: dense INT8 + sparse fp32 outliers
  StateStorage momentum = StateStorage::Int8;    // block-wise
  StateStorage grad_dtype = StateStorage::Int8;  // gradient accumulators for train.grad_accum > 1
  double outlier_fraction = 0.01;
  int block_size = 256;
  Rounding rounding = Rounding::Stochastic;
  int reselect_every = 0;
};

struct LoraSection {
  int rank = 8;
  double alpha = 16;
  std::vector<std::string> targets{"q", "k", "v", "o", "gate", "up", "down"};
  LoraFormat format = LoraFormat::Gse;
  int bits = 8;    // GSE mantissa bits, sign included
  int group = 32;  // GSE values per shared exponent
};

struct OutputSection {
  std::string dir = "runs/qft";
};

// More ranks than any machine room holds for one fine-tuning job: a typo, refused before any plan divides by it.
constexpr int kMaxRanks = 65536;

struct DistSection {
  int world_size = 0;  // 0: the launcher's (1 without one)
  bool shard_weights = false;
  int timeout_s = 1800;  // a collective waiting longer ends the job; 0: never
};

struct RunConfig {
  ModelSection model;
  DataSection data;
  TrainSection train;
  QuantSection quant;
  LoraSection lora;
  OutputSection output;
  DistSection dist;
  Device device = Device::Auto;
  bool debug_sync = false;
  bool profile = false;  // time every op and log each op kind's share of the step time at the end

  // Parses a config file; `where` names it in errors. Unknown keys, wrong types and bad values throw ConfigError.
  static RunConfig from_json_text(const std::string& text, const std::string& where);
  static RunConfig load(const std::string& path);
  // Applies "a.b.c=VALUE"; VALUE is parsed as JSON, and taken as a string when it is not valid JSON.
  void apply_override(const std::string& assignment);
  void validate(bool for_training = true) const;  // cross-key checks; throws ConfigError
  std::string to_json() const;  // the effective config, pretty-printed

  // The typed settings the layers below take, mapped from the config here and nowhere else.
  WeightStorage weight_storage() const;
  OptimizerSettings optimizer_settings() const;
};

struct ConfigKeyDoc {
  std::string key, default_json, doc;
};
std::vector<ConfigKeyDoc> config_key_docs();

}  // namespace qft
