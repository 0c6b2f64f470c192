#pragma once
// Lion with fp32 momentum, applied row-chunk by row-chunk as gradients arrive from the backward pass, and the
// gradient sinks that make up a training step: accumulate, measure the norm, update.
#include <memory>
#include <vector>

#include "model/llama.h"
#include "quant/lion.h"

namespace qft {

struct OptimizerSettings {
  float beta1 = 0.9f, beta2 = 0.99f;
  float weight_decay = 0.0f;
  bool decay_norms = false;  // weight decay on RMSNorm weights too
};

class LionOptimizer {
 public:
  LionOptimizer(const LlamaModel& model, const OptimizerSettings& s);
  // Updates rows [row0, row0 + rows) of a parameter with their gradient g (backend memory).
  void step_rows(int param, int64_t row0, int64_t rows, const float* g, float lr, float grad_scale);
  Buffer& momentum(int param) { return momentum_[size_t(param)]; }
  const OptimizerSettings& settings() const { return s_; }

 private:
  const LlamaModel& model_;
  OptimizerSettings s_;
  std::vector<Buffer> momentum_;
};

// Per-parameter gradient accumulators for train.grad_accum > 1 (fp32 here; INT8 with the quantization issue).
class GradAccumulators {
 public:
  explicit GradAccumulators(const LlamaModel& model);
  float* rows(int param, int64_t row0) const;  // pointer to row0 of the parameter's accumulator
  int64_t cols(int param) const { return model_.params()[size_t(param)].cols; }
  bool empty() const { return !filled_; }
  void set_filled(bool f) { filled_ = f; }

 private:
  const LlamaModel& model_;
  std::vector<Buffer> acc_;
  bool filled_ = false;
};

// acc (+)= g. The first micro-batch of a step assigns, so no zeroing pass is needed.
class AccumulateSink final : public GradSink {
 public:
  AccumulateSink(Backend& be, GradAccumulators& acc, bool first) : be_(be), acc_(acc), first_(first) {}
  void consume(int param, int64_t row0, int64_t rows, const float* g) override;

 private:
  Backend& be_;
  GradAccumulators& acc_;
  bool first_;
};

// Sum of squares of the step's whole gradient (accumulated + this micro-batch's), for clipping.
class NormSink final : public GradSink {
 public:
  NormSink(const LlamaModel& model, GradAccumulators* acc) : model_(model), acc_(acc) {}
  void consume(int param, int64_t row0, int64_t rows, const float* g) override;
  double sum_squares() const { return sum_squares_; }

 private:
  const LlamaModel& model_;
  GradAccumulators* acc_;
  double sum_squares_ = 0;
};

// The fused update: the gradient (plus the accumulated one) goes straight into Lion, then is dropped.
class UpdateSink final : public GradSink {
 public:
  UpdateSink(const LlamaModel& model, LionOptimizer& opt, GradAccumulators* acc, float lr, float grad_scale)
      : model_(model), opt_(opt), acc_(acc), lr_(lr), grad_scale_(grad_scale) {}
  void consume(int param, int64_t row0, int64_t rows, const float* g) override;

 private:
  const LlamaModel& model_;
  LionOptimizer& opt_;
  GradAccumulators* acc_;
  float lr_, grad_scale_;
};

}  // namespace qft
