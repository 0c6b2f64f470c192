// LoRA adapters on a frozen base (model/lora.h): the base receives no gradient, an adapter with B = 0 leaves the
// model as it was, fp32 adapter gradients agree with finite differences, GSE adapter gradients approach the fp32
// ones as bits grow, and a LoRA run resumes bit for bit under Lion and AdamW.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cpu/cpu_backend.h"
#include "model/hf_model.h"
#include "model/llama.h"
#include "test/helpers.h"
#include "trainer/checkpoint.h"
#include "trainer/train_loop.h"

using namespace qft;
namespace fs = std::filesystem;

namespace {

Batch random_batch(std::mt19937_64& rng, int B, int T, int V) {
  const std::vector<int32_t> ids = test::random_ids(size_t(B) * T, V, rng);
  Batch b = Batch::from_labels(B, T, ids, ids);
  b.targets[3] = kIgnoreIndex;
  return b;
}

// Every B drawn at random too (B = 0 would leave A without a gradient), then read back as stored.
void randomize_adapters(LlamaModel& m, std::mt19937_64& rng) {
  for (size_t i = 0; i < m.params().size(); ++i) {
    const Param& p = m.params()[i];
    if (p.role != ParamRole::Adapter) continue;
    m.load_weight(int(i), test::random_normal(size_t(p.numel()), rng, 0.06f).data());
  }
}

// The adapters of `from` copied into `to` (the same settings but their format).
void copy_adapters(const LlamaModel& from, LlamaModel& to) {
  for (size_t i = 0; i < from.params().size(); ++i) {
    if (from.params()[i].role == ParamRole::Adapter) to.load_weight(int(i), from.read_weight(int(i)).data());
  }
}

}  // namespace

TEST_CASE("LoRA: only adapters receive gradients, and B = 0 leaves the base model's logits bit for bit", "[lora]") {
  std::mt19937_64 rng(test::fresh_seed());
  const HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be;
  for (const bool gse : {false, true}) {
    INFO((gse ? "GSE" : "fp32") << " adapters");
    WeightStorage storage{true, 0.01, test::small_lora(gse, 8, rng())};
    LlamaModel base(hf, be, WeightStorage{true, 0.01, {}});
    LlamaModel adapted(hf, be, storage);
    REQUIRE(adapted.params().size() == base.params().size() + 2 * 7 * size_t(hf.config().num_hidden_layers));
    const Batch batch = random_batch(rng, 2, 9, hf.config().vocab_size);
    REQUIRE(adapted.forward_logits(batch) == base.forward_logits(batch));
    randomize_adapters(adapted, rng);
    REQUIRE(adapted.forward_logits(batch) != base.forward_logits(batch));
    test::CaptureSink sink(adapted);
    adapted.backward(batch, 0.1f, sink, nullptr);
    for (size_t i = 0; i < adapted.params().size(); ++i) {
      const Param& p = adapted.params()[i];
      INFO(p.name);
      const int want = p.role == ParamRole::Adapter ? 1 : 0;
      for (int c : sink.seen[i]) REQUIRE(c == want);
      REQUIRE(p.frozen == (want == 0));
    }
  }
}

TEST_CASE("LoRA: fp32 adapter gradients agree with central finite differences", "[lora]") {
  std::mt19937_64 rng(test::fresh_seed());
  const HfModel hf(test::fixture("mha_untied"));
  CpuBackend be;
  LlamaModel model(hf, be, WeightStorage{false, 0.01, test::small_lora(false, 8, rng())});
  randomize_adapters(model, rng);
  const Batch batch = random_batch(rng, 2, 7, hf.config().vocab_size);
  test::CaptureSink sink(model);
  const float scale = float(1.0 / double(batch.target_count()));
  model.backward(batch, scale, sink, nullptr);
  int checked = 0;
  for (size_t pi = 0; pi < model.params().size(); ++pi) {
    const Param& p = model.params()[pi];
    if (p.role != ParamRole::Adapter) continue;
    const auto& g = sink.grads[pi];
    size_t at = 0;  // the element with the largest gradient: the best signal-to-noise in fp32
    for (size_t i = 0; i < g.size(); ++i) at = std::fabs(g[i]) > std::fabs(g[at]) ? i : at;
    std::vector<float> v = model.read_weight(int(pi));
    const float orig = v[at], eps = 1e-2f;
    auto loss_at = [&](float x) {
      v[at] = x;
      model.load_weight(int(pi), v.data());
      return model.forward_loss(batch).mean();
    };
    const double fd = (loss_at(orig + eps) - loss_at(orig - eps)) / (2.0 * eps);
    loss_at(orig);
    INFO(p.name << "[" << at << "]: analytic " << g[at] << " finite difference " << fd);
    REQUIRE(std::fabs(fd - g[at]) <= 2e-2 * std::fabs(g[at]) + 1e-4);
    checked += 1;
  }
  REQUIRE(checked == 2 * 7 * hf.config().num_hidden_layers);
}

TEST_CASE("LoRA: GSE adapter gradients approach the fp32 adapters' as mantissa bits grow", "[lora]") {
  std::mt19937_64 rng(test::fresh_seed());
  const HfModel hf(test::fixture("mha_untied"));
  CpuBackend be;
  const uint64_t seed = rng();
  const Batch batch = random_batch(rng, 2, 16, hf.config().vocab_size);
  const float scale = float(1.0 / double(batch.target_count()));
  // Bounds at 2-3x what runs measured (worst tensor's max-norm relative error 2.0-2.6%, 10-17%, 33-53%; relative
  // L2 over every adapter gradient 1.3-1.6%, 5.1-6.9%, 23-27%): each bit fewer doubles the rounding step, and the
  // errors grow 4x per 2 bits, as rounding noise does. Adapters are drawn so that they move the logits by ~40%.
  double previous = 0;
  for (const auto& [bits, worst_bound, l2_bound] : {std::tuple{8, 0.07, 0.04}, std::tuple{6, 0.4, 0.17},
                                                    std::tuple{4, 1.2, 0.7}}) {
    INFO(bits << " bits");
    LlamaModel gse(hf, be, WeightStorage{false, 0.01, test::small_lora(true, bits, seed)});
    randomize_adapters(gse, rng);
    LlamaModel ref(hf, be, WeightStorage{false, 0.01, test::small_lora(false, bits, seed)});
    copy_adapters(gse, ref);  // the same (GSE-representable) adapter values
    test::CaptureSink gs(gse), rs(ref);
    gse.backward(batch, scale, gs, nullptr);
    ref.backward(batch, scale, rs, nullptr);
    double worst = 0, total_err = 0, total_ref = 0;
    for (size_t i = 0; i < gse.params().size(); ++i) {
      if (gse.params()[i].role != ParamRole::Adapter) continue;
      worst = std::max(worst, test::max_rel_error(gs.grads[i], rs.grads[i]));
      for (size_t j = 0; j < rs.grads[i].size(); ++j) {
        total_err += std::pow(double(gs.grads[i][j]) - rs.grads[i][j], 2);
        total_ref += std::pow(double(rs.grads[i][j]), 2);
      }
    }
    UNSCOPED_INFO(bits << " bits: worst tensor's max-norm relative error " << worst << ", overall relative L2 "
                       << std::sqrt(total_err / total_ref));
    const double l2 = std::sqrt(total_err / total_ref);
    CHECK(worst <= worst_bound);
    CHECK(l2 <= l2_bound);
    CHECK(l2 > 2 * previous);  // fewer bits, larger errors: the differences are the format's rounding
    previous = l2;
  }
}

TEST_CASE("LoRA: N steps, a resume and N more equal 2N steps bit for bit (GSE with Lion, fp32 with AdamW)",
          "[lora][checkpoint]") {
  for (const bool gse : {true, false}) {
    INFO((gse ? "GSE, Lion" : "fp32, AdamW"));
    test::TempDir tmp;
    auto config = [&](const std::string& dir, int steps) {
      RunConfig c = test::short_run_config(tmp / dir, steps);
      c.train.method = TrainMethod::Lora;
      c.lora.format = gse ? LoraFormat::Gse : LoraFormat::Fp32;
      c.train.optimizer = gse ? OptimizerKind::Lion : OptimizerKind::Adamw;
      return c;
    };
    run_training(config("straight", 4));
    run_training(config("resumed", 2));
    run_training(config("resumed", 4), std::string());
    for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
      INFO(f);
      REQUIRE(test::read_file(tmp / ("straight/step_00000004/" + std::string(f))) ==
              test::read_file(tmp / ("resumed/step_00000004/" + std::string(f))));
    }
    // the adapters moved, and the base did not
    const HfModel hf(test::source_path("models/tiny-llama"));
    CpuBackend be;
    const WeightStorage storage = config("x", 1).weight_storage();
    LlamaModel start(hf, be, storage), trained(hf, be, storage);
    load_checkpoint_weights(tmp / "straight/step_00000004", trained);
    int moved = 0;
    for (size_t i = 0; i < start.params().size(); ++i) {
      const bool same = start.read_weight(int(i)) == trained.read_weight(int(i));
      if (start.params()[i].role != ParamRole::Adapter) REQUIRE(same);
      moved += same ? 0 : 1;
    }
    REQUIRE(moved == 2 * 7 * hf.config().num_hidden_layers);
  }
}
