#pragma once
// SIGINT and SIGTERM during a long command. The first asks it to stop at its next safe point (a training run
// finishes its step, saves a checkpoint and exits non-zero); a second SIGINT or SIGTERM stops the process at once.
// Cluster schedulers send SIGTERM before they pre-empt a job: the checkpoint is what makes the job resumable.

namespace qft {

class StopSignals {
 public:
  StopSignals();   // installs the handlers
  ~StopSignals();  // restores the previous ones
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  int received() const;  // 0, or the number of the first signal received
};

const char* signal_name(int sig);  // "SIGINT", "SIGTERM"

}  // namespace qft
