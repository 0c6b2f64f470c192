#pragma once
// INT8 checkpoints: output.dir/step_00001000/ holds the quantized weights and momentum as safetensors,
// trainer_state.json (step, tokens, data cursor, the run's config), the model's config.json and tokenizer
// files, and a DONE marker written last. A checkpoint is built in a temporary directory and renamed into
// place, so a crash at any moment leaves the previous one complete.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "trainer/config.h"
#include "trainer/data.h"
#include "trainer/optimizer.h"

namespace qft {

constexpr int kCheckpointFormat = 2;  // 2: DONE is a manifest of content hashes

// The files a model directory may hold besides its weights; checkpoints and exports carry them along.
const std::vector<std::string>& model_side_files();

struct TrainerState {
  int step = 0;             // optimizer steps completed; also the learning-rate schedule's position
  int64_t tokens = 0;       // positions processed
  DataCursor cursor;
  int reselections = 0;     // times the weight outliers were picked again
  std::string config_json;  // the effective run config when saved
  int world_size = 1;       // ranks that saved it: how many optimizer files it holds (read when loaded; a save
                            // writes its communicator's)
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
// The step of a checkpoint folder's name ("step_00000012" -> 12); nullopt for any other name.
std::optional<int> checkpoint_step(const std::string& name);
// trainer_state.json's text: every field's type and range, its settings hash, and its step against its folder's
// (folder_step, when the folder is named step_N). `where` names the file in errors.
CheckpointInfo parse_trainer_state(const std::string& text, const std::string& where, std::optional<int> folder_step);
// Refuses a checkpoint without DONE, of another format version, with a damaged or foreign small file (config,
// trainer state, tokenizer: hashed against the manifest) or a malformed trainer state, naming the file. Tensor
// files are hashed and validated when loaded.
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
// checkpoints untouched. With several ranks (every rank calls it; output_dir on a filesystem they share): rank 0
// writes the whole weights (a sharded model's gathered matrix by matrix) and the small files, each rank its rows of
// the optimizer state (optimizer_file), and rank 0 writes DONE last, once every rank's files are written; a failure
// on any rank is thrown on every rank.
std::string save_checkpoint(const std::string& output_dir, LlamaModel& model, Optimizer& opt,
                            const TrainerState& state, const std::string& model_dir, Communicator* ranks = nullptr);
// The optimizer file of a rank among `world` that saved a checkpoint: optimizer.safetensors for one rank, else
// optimizer-RRRRR-of-WWWWW.safetensors, each with the rank's rows (dist/row_shards.h) of every tensor.
std::string optimizer_file(int rank, int world);
// Restores weights, momentum and trainer state, for the rows the model and optimizer hold (a checkpoint saved by any
// number of ranks resumes on any number). Refuses what read_checkpoint_info refuses, a file whose content
// hash differs from the manifest's, and tensors that do not match the model and optimizer built from the current
// config exactly (none missing, none extra), hold non-finite values or a broken outlier structure.
TrainerState load_checkpoint(const std::string& dir, LlamaModel& model, Optimizer& opt);
// A checkpoint's weights file (model.safetensors) alone: written as save_checkpoint writes it, and read with every
// check that load_checkpoint makes of it except the manifest's hash (so a fuzzer reaches the checks behind it).
void write_checkpoint_weights(const std::string& path, LlamaModel& model);
void read_checkpoint_weights(const std::string& path, LlamaModel& model);
// Restores only the weights; the model must store them as the checkpoint does (CheckpointInfo::storage).
void load_checkpoint_weights(const std::string& dir, LlamaModel& model);
// The complete checkpoints (step_N with DONE) under dir, oldest first.
std::vector<std::string> complete_checkpoints(const std::string& dir);
// The newest complete checkpoint (with DONE) under output_dir; throws FileError when there is none.
std::string latest_checkpoint(const std::string& output_dir);
// Removes a checkpoint so that no moment of it leaves a damaged checkpoint behind (it is renamed away first).
void discard_checkpoint(const std::string& dir);
// Keeps the newest keep_last complete checkpoints and removes older ones, never `protect`.
void prune_checkpoints(const std::string& output_dir, int keep_last, const std::string& protect);
// Whether a change of this config key ("data.seq_len") makes a resume meaningless; such changes are refused.
bool is_resume_critical(const std::string& dotted_key);

}  // namespace qft
