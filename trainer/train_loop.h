#pragma once
// The training run: setup, the step loop with schedule, evaluation, metrics and progress, and the summary.
#include <cstdint>
#include <optional>
#include <string>

#include "core/stop_signals.h"
#include "trainer/config.h"

namespace qft {

struct TrainSummary {
  int steps = 0;
  int skipped_steps = 0;
  double first_loss = 0, last_loss = 0;
  std::optional<double> val_loss;
  double elapsed_s = 0;
  size_t peak_mem_bytes = 0;
};

// The learning rate at 0-based step `step`: linear warmup, then constant, linear or cosine decay towards 0.
double learning_rate(const TrainSection& t, int step);

// Runs qft train. Writes output.dir/{config.json, metrics.jsonl, train.log} and checkpoints, holding the
// directory's lock (RunDirectory). With `resume` set, continues exactly from that checkpoint ("" = the latest
// complete one in output.dir). With `stop`, a SIGINT/SIGTERM ends the run after its current step with a checkpoint
// and throws Interrupted. Throws qft::Error on failure.
TrainSummary run_training(const RunConfig& cfg, const std::optional<std::string>& resume = std::nullopt,
                          const StopSignals* stop = nullptr);

}  // namespace qft
