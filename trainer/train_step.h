#pragma once
// One optimizer step over the micro-batches of a step, with the gradient fused into the update.
#include <optional>
#include <vector>

#include "model/llama.h"
#include "trainer/optimizer.h"

namespace qft {

struct StepResult {
  double loss = 0;                  // mean over the step's target tokens
  int64_t tokens = 0;               // target tokens in the step
  std::optional<double> grad_norm;  // when clipping measured it
};

// Micro-batches 0..k-2 accumulate into `acc` (required when k > 1); the last one's backward updates the weights.
// With clip_norm set, a first backward of the last micro-batch only measures the global gradient norm
// (LOMO's approach: one more backward per step). The loss is normalised by the step's total target tokens.
// Nothing in it waits on the host but one read of the step's totals at its end. When the loss or the gradient
// norm is NaN or infinite, the update skips itself on the device and this throws NonFiniteLoss: no weight, no
// momentum changed.
StepResult train_step(LlamaModel& model, Optimizer& opt, GradAccumulators* acc, const std::vector<Batch>& micro,
                      float lr, std::optional<double> clip_norm);

// The step's one read of its totals (backend memory) into r: its loss over r.tokens and, when clipped, the gradient
// norm. Throws NonFiniteLoss when either is NaN or infinite (the update skipped itself).
void read_step_totals(Backend& be, const StepTotals* totals, bool clipped, StepResult& r);

}  // namespace qft
