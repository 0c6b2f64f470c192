#pragma once
// Data parallel with the optimizer state sharded by rows across ranks (ZeRO-2), fused into the backward pass as
// the single-rank update is (LOMO). Each rank runs its own micro-batches; as each gradient chunk leaves the
// backward, its rows are exchanged so that every rank receives every rank's partial of the rows it owns, adds
// them in rank order into its shard of the gradient accumulators, and, in the last micro-batch, applies Lion to
// its rows; the updated INT8 rows (values, row scales, outlier values) are then gathered by every rank, one byte
// per weight. Weights are replicated; momentum and accumulators are 1/N per rank.
//
// Exactness: micro-batch i of rank r is the step's micro-batch m = i * N + r, and every sum follows m, so N ranks
// with A micro-batches each reach the state one rank reaches with grad_accum N * A over the same micro-batches,
// bit for bit (test/dist/). The step's loss is summed rank by rank, so for A > 1 it may differ from one rank's in
// the last bits of its double; nothing but the NaN check reads it.
#include <optional>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "trainer/train_step.h"

namespace qft {

// micro: this rank's micro-batches (the same count on every rank). opt and acc are sharded with the
// communicator's rank and world size (RowShards); with one micro-batch per rank acc need not be persistent (the
// ranks' partials are folded chunk by chunk). With clip_norm, the norm is every rank's rows' sums of squares,
// gathered and added in parameter and row order, as one process adds them (RowSquareSums).
StepResult data_parallel_step(Communicator& comm, LlamaModel& model, Optimizer& opt, GradAccumulators& acc,
                              const std::vector<Batch>& micro, float lr, std::optional<double> clip_norm);

// The step's micro-batches that are this rank's: of the step's A * N, micro-batch i * N + rank for i < A. The
// loader draws the same global batches whatever N is, so the examples seen do not depend on the world size.
std::vector<Batch> rank_micro_batches(const std::vector<Batch>& step, int rank, int world_size);

// Throws Error on every rank when the ranks' `what` (a config) differs from rank 0's, naming the ranks that differ.
void require_same_on_every_rank(Communicator& comm, const std::string& text, const std::string& what);

// The stop request every rank acts on at a step boundary: the signal of the lowest rank that received one (0: none).
int agreed_signal(Communicator& comm, int received);

}  // namespace qft
