#pragma once
// Where a model's weights come from: a HuggingFace LLaMA directory, or a qft checkpoint (step_*/), which holds
// the same config.json and tokenizer files next to its INT8 weights. Training (model.path), eval, inspect,
// export and generate all open models through here, so each accepts both.
#include <memory>
#include <optional>
#include <string>

#include "model/llama.h"
#include "text/tokenizer.h"
#include "trainer/checkpoint.h"

namespace qft {

struct ModelSource {
  std::string path;
  LlamaConfig config;
  std::optional<CheckpointInfo> checkpoint;  // set when path is a qft checkpoint
  WeightStorage stored;                      // how the weights are stored there: HF weights count as fp32
  bool random_weights = false;               // model.init=random: only the config and tokenizer come from path
  std::string describe() const;              // "HF model DIR", "qft checkpoint DIR (step N)", ...
};

// Reads config.json and, for a checkpoint, its trainer state. Throws FileError naming the path.
ModelSource open_model_source(const std::string& path);

// Builds the model on `backend` with weights stored as `storage` asks (nullopt: as the source stores them).
// A checkpoint whose storage matches is copied bit for bit; otherwise its weights are dequantized on the
// host and stored anew.
// With `shard_over` (dist.shard_weights), each INT8 matrix keeps this rank's rows only (LlamaModel).
std::unique_ptr<LlamaModel> load_model(const ModelSource& src, Backend& backend,
                                       const std::optional<WeightStorage>& storage = std::nullopt,
                                       Communicator* shard_over = nullptr);

// A model ready to run: where it came from, its tokenizer and its weights on a backend.
struct OpenModel {
  ModelSource source;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LlamaModel> model;
};

// Every command that runs a model opens it here: the source first, then the tokenizer (so that a missing one
// fails before any weight is read), then the weights, stored as `storage` asks (nullopt: as the source does).
OpenModel open_model(const std::string& path, Backend& backend,
                     const std::optional<WeightStorage>& storage = std::nullopt, Communicator* shard_over = nullptr);
// The same with seeded random weights (model.init=random, LlamaModel::init_random): no weight file is read.
OpenModel open_random_model(const std::string& path, Backend& backend, const WeightStorage& storage, uint64_t seed,
                            Communicator* shard_over = nullptr);

}  // namespace qft
