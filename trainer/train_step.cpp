#include "trainer/train_step.h"

#include <cmath>
#include <string>

#include "core/error.h"

namespace qft {

StepResult train_step(LlamaModel& model, Optimizer& opt, GradAccumulators* acc, const std::vector<Batch>& micro,
                      float lr, std::optional<double> clip_norm) {
  if (micro.empty()) throw Error("train_step: no micro-batches");
  if (micro.size() > 1 && !acc) throw Error("train_step: gradient accumulation needs accumulators");
  StepResult r;
  for (const Batch& b : micro) r.tokens += b.target_count();
  if (r.tokens == 0) throw Error("train_step: the step holds no target tokens (every label is masked)");
  const float scale = float(1.0 / double(r.tokens));

  // The step's loss and gradient norm stay in backend memory until the step is queued: one read at its end.
  Backend& be = model.backend();
  Buffer totals_buffer = be.alloc(sizeof(StepTotals), "step totals");
  be.zero(totals_buffer.get(), totals_buffer.bytes());  // 0.0 in both doubles
  auto* totals = static_cast<StepTotals*>(totals_buffer.get());

  for (size_t i = 0; i + 1 < micro.size(); ++i) {
    model.gradient_rounding_step = accumulation_step(opt.step(), uint32_t(i));
    AccumulateSink sink(*acc, i == 0, uint32_t(i));
    model.backward(micro[i], scale, sink, &totals->loss_sum);
    acc->set_filled(true);
  }
  GradAccumulators* last_acc = micro.size() > 1 ? acc : nullptr;
  model.gradient_rounding_step = accumulation_step(opt.step(), uint32_t(micro.size() - 1));
  if (clip_norm) {
    NormSink norm(model, last_acc, &totals->grad_sum_squares);
    model.backward(micro.back(), scale, norm, nullptr);  // its loss is added by the update pass below
    norm.finish();
  }
  UpdateSink update(opt, last_acc, {lr, totals, clip_norm.value_or(0.0)});
  model.backward(micro.back(), scale, update, &totals->loss_sum);
  if (acc) acc->set_filled(false);

  read_step_totals(be, totals, clip_norm.has_value(), r);
  return r;
}

void read_step_totals(Backend& be, const StepTotals* totals, bool clipped, StepResult& r) {
  StepTotals host;
  be.copy_to_host(&host, totals, sizeof host);
  r.loss = host.loss_sum / double(r.tokens);
  if (clipped) r.grad_norm = std::sqrt(host.grad_sum_squares);
  // The update skipped itself on the device (LionRowStep): every weight and momentum is as it was.
  if (!std::isfinite(host.loss_sum)) throw NonFiniteLoss("loss is " + std::to_string(host.loss_sum));
  if (!std::isfinite(host.grad_sum_squares)) throw NonFiniteLoss("gradient norm is " + std::to_string(*r.grad_norm));
}

}  // namespace qft
