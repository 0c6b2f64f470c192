// The layer-input stack at low precision (train.stack_dtype): the forward is untouched, and the gradients move by
// what the measurements in the README say, on every golden fixture. The bounds are the measured worst cases
// (README, "Long context") with a margin of 2x: the errors are those of rounding fixed inputs, so they barely
// change from machine to machine.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "test/helpers.h"
#include "trainer/settings.h"

using namespace qft;

namespace {

struct StackRun {
  double loss_sum;
  std::vector<std::vector<float>> grads;
};

StackRun run_with(const std::string& fixture, StackStorage storage) {
  test::GoldenCase g(fixture);
  g.model.stack_storage = storage;
  test::CaptureSink sink(g.model);
  const double loss = test::backward_loss_sum(g.model, g.batch, 1.0f / float(g.batch.target_count()), sink);
  sink.require_complete();
  return {loss, sink.grads};
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
