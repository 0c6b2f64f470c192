#include "trainer/train_step.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace qft {

StepResult train_step(LlamaModel& model, LionOptimizer& opt, GradAccumulators* acc, const std::vector<Batch>& micro,
                      float lr, std::optional<double> clip_norm) {
  if (micro.empty()) throw Error("train_step: no micro-batches");
  if (micro.size() > 1 && !acc) throw Error("train_step: gradient accumulation needs accumulators");
  StepResult r;
  for (const Batch& b : micro) r.tokens += b.target_count();
  if (r.tokens == 0) throw Error("train_step: the step holds no target tokens (every label is masked)");
  const float scale = float(1.0 / double(r.tokens));

  double loss_sum = 0;
  for (size_t i = 0; i + 1 < micro.size(); ++i) {
    AccumulateSink sink(*acc, i == 0, uint32_t(i));
    loss_sum += model.backward(micro[i], scale, sink).loss_sum;
    acc->set_filled(true);
  }
  GradAccumulators* last_acc = micro.size() > 1 ? acc : nullptr;
  float grad_scale = 1.0f;
  if (clip_norm) {
    NormSink norm(model, last_acc);
    model.backward(micro.back(), scale, norm);
    r.grad_norm = std::sqrt(norm.sum_squares());
    if (!std::isfinite(*r.grad_norm)) throw NonFiniteLoss("gradient norm is " + std::to_string(*r.grad_norm));
    if (*r.grad_norm > *clip_norm) grad_scale = float(*clip_norm / (*r.grad_norm + 1e-6));
  }
  UpdateSink update(opt, last_acc, lr, grad_scale);
  loss_sum += model.backward(micro.back(), scale, update).loss_sum;
  if (acc) acc->set_filled(false);
  r.loss = loss_sum / double(r.tokens);
  return r;
}

}  // namespace qft
