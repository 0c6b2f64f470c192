#pragma once
// The memory planner behind `qft plan` and the check `qft train` runs first. It builds the run's model,
// optimizer and one training step on a PlanningBackend, so every byte it reports comes from the code that
// allocates for real.
#include <cstdint>
#include <cstddef>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/llama_config.h"
#include "trainer/config.h"

namespace qft {

class Backend;

struct PlanItem {
  std::string name;
  size_t bytes = 0;
  std::string note;
};

struct MemoryPlan {
  std::vector<PlanItem> items;  // model state, then the transient peak, then the device allowance
  int64_t parameters = 0;
  size_t state_bytes = 0;       // weights + momentum + gradient accumulators
  size_t peak_bytes = 0;        // largest tracked allocation total during a step (state included)
  size_t allowance_bytes = 0;   // the target's reserved bytes: CUDA context and library workspaces; 0 on the CPU
  size_t total_bytes = 0;       // peak + allowance (+ host_bytes where host memory is the device's)
  size_t host_bytes = 0;        // peak of page-locked host memory (train.stack_offload)
  bool host_apart = false;      // host_bytes are not device memory (a GPU)
  // The backward pass keeps one layer's dequantized matrices from its recompute (each INT8 matrix dequantized
  // twice per step, not three times) when the run fits with them; kept_weights_bytes is what that adds to the total.
  bool keep_layer_weights = true;
  size_t kept_weights_bytes = 0;
  // With several ranks (dist.world_size): the plan is one rank's, and what it receives from the others per step.
  int world_size = 1;
  bool weights_sharded = false;        // dist.shard_weights took effect (INT8 weights, several ranks)
  size_t gradient_bytes_per_step = 0;  // partials of the gradient rows it owns, fp32, each backward pass
  size_t weight_bytes_per_step = 0;    // the others' updated rows (INT8 values, scales, outliers), once
  double state_bytes_per_param() const { return double(state_bytes) / double(parameters); }
};

// What a plan assumes of its device: how activations are stored, and what it uses outside tracked allocations.
struct PlanTarget {
  DType activations = DType::F32;
  size_t reserved_bytes = 0;   // untracked: context, libraries
  size_t workspace_bytes = 0;  // tracked, held from the backend's start
  bool host_apart = false;     // host memory is not the device's (a GPU): what is offloaded spares the device
};
PlanTarget plan_target(Device device);      // qft plan: the CUDA backend's defaults, or the CPU reference's
PlanTarget plan_target(const Backend& be);  // qft train: the backend it is about to run on

// The architecture of a run: model.path/config.json when it exists, else the config's model.arch section.
LlamaConfig plan_architecture(const RunConfig& cfg);
// The plan of a run as it will execute: with keep_layer_weights when that fits in `available` bytes, else
// without (the least the run needs).
MemoryPlan plan_memory(const RunConfig& cfg, const LlamaConfig& arch, const PlanTarget& target,
                       size_t available = SIZE_MAX);
// With `available` bytes (a card's), both also say whether the run fits.
std::string format_plan(const MemoryPlan& plan, const RunConfig& cfg, const LlamaConfig& arch,
                        size_t available = SIZE_MAX);
std::string plan_json(const MemoryPlan& plan, size_t available = SIZE_MAX);

}  // namespace qft
