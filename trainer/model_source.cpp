#include "trainer/model_source.h"

#include <filesystem>
#include <map>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "model/hf_model.h"
#include "trainer/run_dir.h"

namespace qft {

std::string ModelSource::describe() const {
  if (random_weights) return "random weights for the config of " + path;
  if (!checkpoint) return "HF model " + path;
  return "qft checkpoint " + path + " (step " + std::to_string(checkpoint->state.step) + ")";
}

ModelSource open_model_source(const std::string& path) {
  ModelSource src;
  src.path = path;
  require_model_dir(path);
  refuse_run_directory(path);
  if (is_checkpoint(path)) {
    src.checkpoint = read_checkpoint_info(path);
    src.stored = src.checkpoint->storage;
  }
  src.config = load_llama_config((std::filesystem::path(path) / "config.json").string());
  return src;
}

std::unique_ptr<LlamaModel> load_model(const ModelSource& src, Backend& backend,
                                       const std::optional<WeightStorage>& storage, Communicator* shard_over) {
  const WeightStorage want = storage.value_or(src.stored);
  if (!src.checkpoint) return std::make_unique<LlamaModel>(HfModel(src.path), backend, want, shard_over);
  auto model = std::make_unique<LlamaModel>(src.config, backend, want, shard_over);
  if (want == src.stored) {
    load_checkpoint_weights(src.path, *model);
    return model;
  }
  CpuBackend host;
  LlamaModel stored(src.config, host, src.stored);
  load_checkpoint_weights(src.path, stored);
  // Tensors by name. Adapters carry over when both have the same ones; otherwise the stored adapters are merged
  // into their base matrices and the new model's adapters start afresh (B = 0): the model computes the same.
  const bool same_adapters = stored.storage().lora == want.lora;
  std::map<std::string, int> stored_index;
  for (int j = 0; j < int(stored.params().size()); ++j) stored_index[stored.params()[size_t(j)].name] = j;
  for (int i = 0; i < int(model->params().size()); ++i) {
    const Param& p = model->params()[size_t(i)];
    const auto j = stored_index.find(p.name);
    if (j == stored_index.end() || (p.role == ParamRole::Adapter && !same_adapters)) continue;
    model->load_weight(i, (same_adapters ? stored.read_weight(j->second) : stored.read_merged_weight(j->second)).data());
  }
  if (!same_adapters) model->init_adapters();
  return model;
}

namespace {

// Checked at load, not at the first batch: a tokenizer with ids the model has no embedding for is not its own.
void check_tokenizer_fits(const Tokenizer& tok, const ModelSource& src) {
  if (tok.vocab_size() <= src.config.vocab_size) return;
  throw FileError(tok.path(), "has " + std::to_string(tok.vocab_size()) + " tokens but " + src.path +
                                  "/config.json gives the model a vocabulary of " + std::to_string(src.config.vocab_size) +
                                  " (vocab_size): is this the model's own tokenizer?");
}

}  // namespace

OpenModel open_model(const std::string& path, Backend& backend, const std::optional<WeightStorage>& storage,
                     Communicator* shard_over) {
  OpenModel m;
  m.source = open_model_source(path);
  m.tokenizer = std::make_unique<Tokenizer>(path);
  check_tokenizer_fits(*m.tokenizer, m.source);
  m.model = load_model(m.source, backend, storage, shard_over);
  return m;
}

OpenModel open_random_model(const std::string& path, Backend& backend, const WeightStorage& storage, uint64_t seed,
                            Communicator* shard_over) {
  OpenModel m;
  m.source = open_model_source(path);
  m.source.random_weights = true;
  m.tokenizer = std::make_unique<Tokenizer>(path);
  check_tokenizer_fits(*m.tokenizer, m.source);
  m.model = std::make_unique<LlamaModel>(m.source.config, backend, storage, shard_over);
  m.model->init_random(seed);
  return m;
}

}  // namespace qft
