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

struct TrainerState {
  int step = 0;            // optimizer steps completed
  int64_t tokens = 0;      // positions processed
  DataCursor cursor;
  std::string config_json; // the effective run config when saved
};

// Writes output_dir/step_%08d; returns its path. Throws FileError on any failed write, leaving earlier
// checkpoints untouched.
std::string save_checkpoint(const std::string& output_dir, LlamaModel& model, LionOptimizer& opt,
                            const TrainerState& state, const std::string& model_dir);
// Restores weights, momentum and trainer state. Refuses a checkpoint without DONE, of another format version,
// or whose tensors do not match the model and optimizer built from the current config.
TrainerState load_checkpoint(const std::string& dir, LlamaModel& model, LionOptimizer& opt);
// The newest complete checkpoint (with DONE) under output_dir; throws FileError when there is none.
std::string latest_checkpoint(const std::string& output_dir);
// Keeps the newest keep_last complete checkpoints and removes older ones, never `protect`.
void prune_checkpoints(const std::string& output_dir, int keep_last, const std::string& protect);
// Config keys whose change makes a resume meaningless; differences in them are refused.
std::vector<std::string> resume_critical_keys();

}  // namespace qft
