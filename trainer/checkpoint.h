#pragma once
// INT8 checkpoints: output.dir/step_00001000/ holds the quantized weights and momentum as safetensors,
// trainer_state.json (step, tokens, data cursor, the run's config), the model's config.json and tokenizer
// files, and a DONE marker written last. A checkpoint is built in a temporary directory and renamed into
// place, so a crash at any moment leaves the previous one complete.
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/config.h"
#include "trainer/data.h"
#include "trainer/optimizer.h"

namespace qft {

constexpr int kCheckpointFormat = 1;

// The files a model directory may hold besides its weights; checkpoints and exports carry them along.
const std::vector<std::string>& model_side_files();

struct TrainerState {
  int step = 0;             // optimizer steps completed; also the learning-rate schedule's position
  int64_t tokens = 0;       // positions processed
  DataCursor cursor;
  int reselections = 0;     // times the weight outliers were picked again
  std::string config_json;  // the effective run config when saved
};

// What a checkpoint directory says about itself, read without loading any tensor.
struct CheckpointInfo {
  std::string dir;
  TrainerState state;
  WeightStorage storage;  // how its weights are stored
  std::string settings_hash;
};

// A directory is a checkpoint when it holds trainer_state.json (HF model directories never do).
bool is_checkpoint(const std::string& dir);
// Refuses a checkpoint without DONE or of another format version, naming the directory or file.
CheckpointInfo read_checkpoint_info(const std::string& dir);

// Quantization statistics of one INT8 matrix of a checkpoint.
struct MatrixStats {
  std::string name;
  int64_t rows = 0, cols = 0;
  int64_t outliers = 0;             // entries kept in fp32
  float scale_min = 0, scale_max = 0;  // range of the per-row scales
  int64_t rescales = 0;             // scale growths since training began
  int64_t rows_rescaled = 0;        // rows whose scale grew at least once
  double outlier_fraction() const { return double(outliers) / double(rows * cols); }
};

// What `qft inspect` shows of a checkpoint: its state and the statistics of every INT8 matrix.
struct CheckpointReport {
  CheckpointInfo info;
  LlamaConfig config;
  std::vector<MatrixStats> matrices;
  int64_t outliers = 0, rescales = 0;  // over every INT8 matrix
  double outlier_fraction = 0;         // of every INT8 matrix's entries
};
CheckpointReport inspect_checkpoint(const std::string& dir);

// Writes output_dir/step_%08d; returns its path. Throws FileError on any failed write, leaving earlier
// checkpoints untouched.
std::string save_checkpoint(const std::string& output_dir, LlamaModel& model, LionOptimizer& opt,
                            const TrainerState& state, const std::string& model_dir);
// Restores weights, momentum and trainer state. Refuses what read_checkpoint_info refuses, and tensors that
// do not match the model and optimizer built from the current config.
TrainerState load_checkpoint(const std::string& dir, LlamaModel& model, LionOptimizer& opt);
// Restores only the weights; the model must store them as the checkpoint does (CheckpointInfo::storage).
void load_checkpoint_weights(const std::string& dir, LlamaModel& model);
// The newest complete checkpoint (with DONE) under output_dir; throws FileError when there is none.
std::string latest_checkpoint(const std::string& output_dir);
// Keeps the newest keep_last complete checkpoints and removes older ones, never `protect`.
void prune_checkpoints(const std::string& output_dir, int keep_last, const std::string& protect);
// Whether a change of this config key ("data.seq_len") makes a resume meaningless; such changes are refused.
bool is_resume_critical(const std::string& dotted_key);

}  // namespace qft
