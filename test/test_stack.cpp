// The layer-input stack at low precision (train.stack_dtype): the forward is untouched, and the gradients move by
// what the measurements in the README say, on every golden fixture. The bounds are the measured worst cases
// (README, "Long context") with a margin of 2x: the errors are those of rounding fixed inputs, so they barely
// change from machine to machine.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "model/hf_model.h"
#include "model/safetensors.h"
#include "test/helpers.h"
#include "trainer/settings.h"

using namespace qft;

namespace {

struct StackRun {
  double loss_sum;
  std::vector<std::vector<float>> grads;
};

StackRun run_model(LlamaModel& model, const Batch& batch, StackStorage storage, bool offload) {
  model.stack_storage = storage;
  model.stack_offload = offload;
  test::CaptureSink sink(model);
  const double loss = test::backward_loss_sum(model, batch, 1.0f / float(batch.target_count()), sink);
  sink.require_complete();
  return {loss, sink.grads};
}

StackRun run_with(const std::string& fixture, StackStorage storage) {
  test::GoldenCase g(fixture);
  return run_model(g.model, g.batch, storage, false);
}

// The worst and the median over parameters of each weight gradient's max-norm relative error.
std::pair<double, double> errors(const StackRun& a, const StackRun& ref) {
  std::vector<double> e;
  for (size_t i = 0; i < a.grads.size(); ++i) e.push_back(test::max_rel_error(a.grads[i], ref.grads[i]));
  std::sort(e.begin(), e.end());
  return {e.back(), e[e.size() / 2]};
}

}  // namespace

TEST_CASE("a narrower layer-input stack leaves the loss alone and moves the gradients by its rounding only",
          "[stack][golden]") {
  // Worst relative error of a weight gradient against the bf16 stack, per storage (README).
  const double int8_bound = 2 * 0.053;
  for (const auto& name : test::golden_fixtures()) {
    const StackRun exact = run_with(name, StackStorage::Activations), bf16 = run_with(name, StackStorage::Bf16);
    const auto [bf16_worst, bf16_median] = errors(bf16, exact);
    WARN(name << ": bf16 stack vs fp32: worst " << bf16_worst << ", median " << bf16_median);
    {
      const StackStorage s = StackStorage::Int8;
      const StackRun r = run_with(name, s);
      CHECK(r.loss_sum == exact.loss_sum);  // the forward runs on exact values
      const auto [worst, median] = errors(r, bf16);
      const auto [worst32, median32] = errors(r, exact);
      WARN(name << ": " << enum_name(s) << " stack vs bf16: worst " << worst << ", median " << median
                << "; vs fp32: worst " << worst32 << ", median " << median32);
      CHECK(worst <= int8_bound);
      CHECK(median32 <= 2 * 0.018);
    }
  }
}

// Offloading moves the stack's bytes and nothing else: the same values come back, so the gradients are the same
// bits, and the device holds one layer's entry while the host holds all of them.
TEST_CASE("an offloaded layer-input stack gives the same gradients bit for bit and keeps one layer on the device",
          "[stack]") {
  const std::string name = "gqa_tied";
  const HfModel hf(test::fixture(name));
  const SafeTensorsFile golden(test::fixture(name + "/golden.safetensors"));
  const Batch batch = test::golden_batch(golden);
  const int64_t values = int64_t(batch.B) * batch.T * hf.config().hidden_size;
  const int layers = hf.config().num_hidden_layers;
  for (DType act : {DType::F32, DType::BF16}) {
    for (StackStorage s : {StackStorage::Activations, StackStorage::Bf16, StackStorage::Int8}) {
      INFO(dtype_name(act) << " activations, " << enum_name(s) << " stack");
      CpuBackend be(act);
      LlamaModel model(hf, be, {true, 0.01});
      const StackRun kept = run_model(model, batch, s, false);
      CHECK(be.host_memory().peak_bytes == 0);
      const StackRun offloaded = run_model(model, batch, s, true);
      CHECK(offloaded.loss_sum == kept.loss_sum);
      CHECK(offloaded.grads == kept.grads);
      const size_t entry = s == StackStorage::Int8 ? size_t(values) + PackedGroups::scale_bytes(values)
                           : s == StackStorage::Bf16 ? size_t(values) * 2
                                                     : be.act_bytes(values);
      CHECK(be.host_memory().peak_bytes == size_t(layers) * entry);
      CHECK(be.host_memory().current_bytes == 0);
    }
  }
}
