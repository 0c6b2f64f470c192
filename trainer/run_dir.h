#pragma once
// A training run's output directory. It is recognised by its marker file (qft_run.json), written by one process at
// a time (an exclusive flock on its .lock, held while the RunDirectory lives), and never taken over from a user:
// a new run starts only in a new or empty directory, or in a run directory that holds no complete checkpoint.
// Opening checks everything and writes only the lock; commit() then writes, once the caller's own checks passed.
#include <optional>
#include <string>
#include <vector>

namespace qft {

inline constexpr const char* kRunMarker = "qft_run.json";

class RunDirectory {
 public:
  // For a new run (resume empty) or a resume: `resume` is "" for the newest complete checkpoint in `dir`, or a
  // checkpoint path. A resume continues the run in `dir` from its newest checkpoint, or forks a checkpoint of
  // another run into a new or empty `dir`; anything that would replace a checkpoint or mix two runs is refused.
  // Throws FileError naming the directory and what it holds.
  RunDirectory(const std::string& dir, const std::optional<std::string>& resume);
  ~RunDirectory();
  RunDirectory(const RunDirectory&) = delete;
  RunDirectory& operator=(const RunDirectory&) = delete;

  const std::string& path() const { return dir_; }
  // The checkpoint a resume starts from (empty for a new run).
  const std::string& checkpoint() const { return checkpoint_; }
  // What a new run discards from the stopped run it takes over (the entries' names), for the log.
  const std::vector<std::string>& discarded() const { return discard_; }

  // Makes the directory this run's: removes what a takeover discards, writes the marker and config.json (the
  // effective config), and for a resume cuts metrics.jsonl back to the records of steps <= resume_step, so that
  // no step is logged twice.
  void commit(const std::string& config_json, int resume_step);

 private:
  void lock();
  void check_new_run();
  void check_resume(const std::string& resume);

  std::string dir_;
  std::string checkpoint_;
  std::vector<std::string> discard_;
  bool created_ = false;    // this process made the directory: an aborted start removes it again
  bool committed_ = false;
  int lock_fd_ = -1;
};

// Where a model or checkpoint is expected: a run directory is refused with a message that points to its checkpoints.
void refuse_run_directory(const std::string& path);

// The entries of a run directory that belong to qft (the lock and marker, logs, config, checkpoints and their
// temporary folders): what a takeover may discard. Anything else makes a directory a user's.
bool is_run_entry(const std::string& name);

}  // namespace qft
