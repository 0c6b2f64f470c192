#pragma once
// Lion (or, for LoRA adapters, AdamW) applied row-chunk by row-chunk as gradients arrive from the backward pass,
// over fp32, INT8 or GSE state, and the gradient sinks that make up a training step: accumulate, measure the norm,
// update. Frozen tensors (LoRA's base) have no state.
#include <memory>
#include <vector>

#include "dist/row_shards.h"
#include "model/llama.h"
#include "trainer/optimizer_settings.h"
#include "quant/quantized.h"

namespace qft {

// Per-parameter state that is fp32 or block-wise INT8.
struct StateTensor {
  Buffer fp32;
  BlockMatrix int8;
  bool quantized() const { return int8.rows > 0; }
  size_t bytes() const { return quantized() ? int8.bytes() : fp32.bytes(); }
};

// What one step's update needs besides the gradient.
struct StepUpdate {
  float lr = 0;
  const StepTotals* totals = nullptr;  // backend memory: the update skips itself where they are not finite
  double max_grad_norm = 0;            // clip to this norm (0: never)
};

// Whether optimizer state of a parameter's `rows` rows (a rank's share) is block-wise INT8, or fp32: INT8 where the
// settings ask (int8), the parameter is a matrix INT8 state suits, and the share holds rows.
bool int8_state(bool int8, const Param& p, int64_t rows);

// Momentum is kept for the rows this rank owns (all of them on one rank; dist/row_shards.h); row numbers in the
// calls below are the parameter's own, and a rank updates only rows it owns.
class Optimizer {
 public:
  Optimizer(LlamaModel& model, const OptimizerSettings& s, const RowShards& shards = {});
  // Updates rows [row0, row0 + rows) of a parameter with their gradient g (backend memory).
  void step_rows(int param, int64_t row0, int64_t rows, const float* g, const StepUpdate& u);
  void set_step(uint32_t step) { step_ = step; }  // feeds the stochastic rounding keys
  uint32_t step() const { return step_; }
  const OptimizerSettings& settings() const { return s_; }
  const RowShards& shards() const { return shards_; }
  StateTensor& momentum(int param) { return momentum_[size_t(param)]; }  // this rank's rows of it
  // AdamW's second moment of a parameter (empty under Lion).
  StateTensor& variance(int param) { return variance_[size_t(param)]; }
  size_t state_bytes() const;
  // Per-row counts of scale growths of an INT8 weight matrix (rows,) u32 in backend memory; null for fp32.
  // They live on the backend, every matrix's in one buffer, so that a step never waits on the host and a log
  // line reads them all at once; they are read only to log and to save.
  uint32_t* rescale_counts(int param);
  int64_t total_rescales() const;  // over every matrix, since training began: one read
  // Scale growths since the last call.
  int64_t take_rescaled_rows();

 private:
  // The update of rows stored as fp32 (w32: the parameter's rows, or a GSE adapter's dequantized copy; null for
  // hybrid INT8 rows, updated in place).
  void step_stored_rows(int param, int64_t row0, int64_t rows, const float* g, const StepUpdate& u, float* w32);

  LlamaModel& model_;
  OptimizerSettings s_;
  RowShards shards_;
  std::vector<StateTensor> momentum_;  // AdamW's first moment under AdamW
  std::vector<StateTensor> variance_;  // AdamW's second moment; empty under Lion
  Buffer rescales_;                       // (rows of every INT8 matrix,) u32
  std::vector<int64_t> rescale_offset_;  // per parameter: its first row in rescales_, or -1
  uint32_t step_ = 0;
  int64_t rescales_reported_ = 0;
};

// Per-parameter gradient accumulators for train.grad_accum > 1: fp32, or block-wise INT8 with stochastic
// rounding as QFT stores its gradients.
// Like the momentum, kept for this rank's rows only; not kept at all without `persistent` (then only fold works).
class GradAccumulators {
 public:
  GradAccumulators(const LlamaModel& model, const OptimizerSettings& s, const RowShards& shards = {},
                   bool persistent = true);
  // acc[rows] (+)= g; `first` assigns. micro feeds the rounding keys.
  void add(int param, int64_t row0, int64_t rows, const float* g, bool first, uint32_t micro);
  // What accumulating `count` gradients of the rows (partials: count blocks of rows x cols) as micro-batches 0, 1,
  // ... would leave, plus `last`, as fp32 in backend memory (valid while `tmp` lives; `last` itself when count is
  // 0): the rounding of add() and combined(), in a scratch of the rows alone.
  const float* fold(int param, int64_t row0, int64_t rows, const float* partials, int count, const float* last,
                    Buffer& tmp) const;
  // g + acc for the rows, as fp32 in backend memory (valid while `tmp` lives).
  const float* combined(int param, int64_t row0, int64_t rows, const float* g, Buffer& tmp) const;
  std::vector<float> to_host(int param) const;  // this rank's rows of the accumulated gradient, dequantized
  bool empty() const { return !filled_; }
  void set_filled(bool f) { filled_ = f; }
  void set_step(uint32_t step) { step_ = step; }  // feeds the stochastic rounding keys, with the micro-batch
  size_t bytes() const;

 private:
  // The accumulated gradient of rows [row0, row0 + rows) as fp32 into out (backend memory).
  void dense_rows(int param, int64_t row0, int64_t rows, float* out) const;
  // add and dense_rows on any state of a parameter's rows: local is the state's row of parameter row row0.
  void add_into(StateTensor& a, int64_t local, int param, int64_t row0, int64_t rows, const float* g, bool first,
                uint32_t micro) const;
  void dense_from(const StateTensor& a, int64_t local, int param, int64_t rows, float* out) const;

  const LlamaModel& model_;
  OptimizerSettings s_;
  RowShards shards_;
  std::vector<StateTensor> acc_;
  bool filled_ = false;
  uint32_t step_ = 0;
};

class AccumulateSink final : public GradSink {
 public:
  AccumulateSink(GradAccumulators& acc, bool first, uint32_t micro) : acc_(acc), first_(first), micro_(micro) {}
  void consume(int param, int64_t row0, int64_t rows, const float* g) override {
    acc_.add(param, row0, rows, g, first_, micro_);
  }

 private:
  GradAccumulators& acc_;
  bool first_;
  uint32_t micro_;
};

// A gradient's squares summed row by row (one double per row of every parameter, in parameter order, in backend
// memory), then over all rows in that order: the same norm however the rows were cut into chunks or shared out
// among ranks (trainer/data_parallel.h).
class RowSquareSums {
 public:
  explicit RowSquareSums(const LlamaModel& model);
  void add(int param, int64_t row0, int64_t rows, const float* g);  // g: those rows of the gradient
  double* at(int param, int64_t row0) { return static_cast<double*>(sums_.get()) + first_[size_t(param)] + row0; }
  void total_into(double* sum_squares);  // *sum_squares += every row's sum, in order

 private:
  const LlamaModel& model_;
  std::vector<int64_t> first_;  // per parameter: the index of its row 0
  int64_t rows_ = 0;
  Buffer sums_;
};

// Adds the squares of the step's whole gradient (accumulated + this micro-batch's) to *sum_squares, one double
// in backend memory, for clipping: finish() after the backward pass.
class NormSink final : public GradSink {
 public:
  NormSink(const LlamaModel& model, GradAccumulators* acc, double* sum_squares)
      : acc_(acc), sum_squares_(sum_squares), sums_(model) {}
  void consume(int param, int64_t row0, int64_t rows, const float* g) override;
  void finish() { sums_.total_into(sum_squares_); }

 private:
  GradAccumulators* acc_;
  double* sum_squares_;
  RowSquareSums sums_;
};

// The fused update: the gradient (plus the accumulated one) goes straight into Lion, then is dropped.
class UpdateSink final : public GradSink {
 public:
  UpdateSink(Optimizer& opt, GradAccumulators* acc, const StepUpdate& u) : opt_(opt), acc_(acc), update_(u) {}
  void consume(int param, int64_t row0, int64_t rows, const float* g) override;

 private:
  Optimizer& opt_;
  GradAccumulators* acc_;
  StepUpdate update_;
};

}  // namespace qft
