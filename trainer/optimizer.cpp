#include "trainer/optimizer.h"

namespace qft {

namespace {

// g + acc for rows of a parameter, in a temporary buffer; or g itself when there is nothing accumulated.
struct Combined {
  Buffer tmp;
  const float* ptr;
  Combined(Backend& be, GradAccumulators* acc, int param, int64_t row0, int64_t n, const float* g) : ptr(g) {
    if (!acc || acc->empty()) return;
    tmp = be.alloc(size_t(n) * 4);
    be.copy(tmp.get(), g, size_t(n) * 4);
    be.residual_add(tmp.f32(), acc->rows(param, row0), n);
    ptr = tmp.f32();
  }
};

}  // namespace

LionOptimizer::LionOptimizer(const LlamaModel& model, const OptimizerSettings& s) : model_(model), s_(s) {
  Backend& be = model.backend();
  for (const Param& p : model.params()) {
    momentum_.push_back(be.alloc(size_t(p.numel()) * 4));
    be.zero(momentum_.back().get(), size_t(p.numel()) * 4);
  }
}

void LionOptimizer::step_rows(int param, int64_t row0, int64_t rows, const float* g, float lr, float grad_scale) {
  const Param& p = model_.params()[size_t(param)];
  LionParams lp{lr, s_.beta1, s_.beta2, (p.is_norm && !s_.decay_norms) ? 0.0f : s_.weight_decay, grad_scale};
  const int64_t off = row0 * p.cols;
  model_.backend().lion_step(p.value->f32() + off, momentum_[size_t(param)].f32() + off, g, rows * p.cols, lp);
}

GradAccumulators::GradAccumulators(const LlamaModel& model) : model_(model) {
  for (const Param& p : model.params()) acc_.push_back(model.backend().alloc(size_t(p.numel()) * 4));
}

float* GradAccumulators::rows(int param, int64_t row0) const {
  return acc_[size_t(param)].f32() + row0 * cols(param);
}

void AccumulateSink::consume(int param, int64_t row0, int64_t rows, const float* g) {
  const int64_t cols = acc_.cols(param);
  if (first_) {
    be_.copy(acc_.rows(param, row0), g, size_t(rows * cols) * 4);
  } else {
    be_.residual_add(acc_.rows(param, row0), g, rows * cols);
  }
}

void NormSink::consume(int param, int64_t row0, int64_t rows, const float* g) {
  const int64_t n = rows * model_.params()[size_t(param)].cols;
  Combined c(model_.backend(), acc_, param, row0, n, g);
  sum_squares_ += model_.backend().sum_squares(c.ptr, n);
}

void UpdateSink::consume(int param, int64_t row0, int64_t rows, const float* g) {
  const int64_t n = rows * model_.params()[size_t(param)].cols;
  Combined c(model_.backend(), acc_, param, row0, n, g);
  opt_.step_rows(param, row0, rows, c.ptr, lr_, grad_scale_);
}

}  // namespace qft
