// Gradients against transformers and finite differences, the sink contract, Lion against fp64, and the
// fused step against "whole gradient first, then step".
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <map>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "model/hf_model.h"
#include "model/llama.h"
#include "model/safetensors.h"
#include "model/batch.h"
#include "ops/planning_backend.h"
#include "test/helpers.h"
#include "trainer/train_step.h"

using namespace qft;

namespace {

std::vector<float> read_param(const LlamaModel& m, int i) {
  const Param& p = m.params()[size_t(i)];
  std::vector<float> v(size_t(p.numel()));
  m.backend().copy_to_host(v.data(), p.fp32.get(), v.size() * 4);
  return v;
}

Batch random_batch(std::mt19937_64& rng, int B, int T, int V) {
  std::uniform_int_distribution<int32_t> tok(3, V - 1);
  std::vector<int32_t> ids(size_t(B) * T);
  for (auto& t : ids) t = tok(rng);
  return Batch::from_labels(B, T, ids, ids);
}

}  // namespace

TEST_CASE("every parameter's gradient matches transformers", "[golden][backward]") {
  for (const auto& name : test::golden_fixtures()) {
    INFO("fixture " << name);
    test::GoldenCase g(name);
    const Batch& batch = g.batch;
    const SafeTensorsFile& golden = g.golden;
    LlamaModel& model = g.model;
    model.logits_chunk_tokens = 16;  // several token chunks
    model.vocab_chunk_rows = 96;     // several vocabulary chunks, the last one partial
    test::CaptureSink sink(model);
    const double loss_sum = test::backward_loss_sum(model, batch, float(1.0 / double(batch.target_count())), sink);
    sink.require_complete();
    CHECK(std::fabs(loss_sum / double(batch.target_count()) - golden.read_f32("loss")[0]) <= 1e-5);
    double worst = 0;
    for (size_t i = 0; i < model.params().size(); ++i) {
      const std::string& pname = model.params()[i].name;
      const double rel = test::max_rel_error(sink.grads[i], golden.read_f32("grad." + pname));
      INFO(pname << ": max rel error " << rel);
      CHECK(rel <= 1e-4);
      worst = std::max(worst, rel);
    }
    UNSCOPED_INFO(name << ": worst gradient max rel error " << worst);
  }
}

TEST_CASE("gradients agree with central finite differences", "[backward]") {
  std::mt19937_64 rng(test::fresh_seed());
  HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be;
  LlamaModel model(hf, be);
  Batch batch = random_batch(rng, 2, 7, 500);
  batch.targets[3] = kIgnoreIndex;
  test::CaptureSink sink(model);
  const float scale = float(1.0 / double(batch.target_count()));
  model.backward(batch, scale, sink, nullptr);
  // For a few parameters, perturb the element with the largest gradient (best signal-to-noise in fp32).
  for (int pi : {0, 1, 2, 5, 9, 18, 19}) {
    const Param& p = model.params()[size_t(pi)];
    const auto& g = sink.grads[size_t(pi)];
    size_t at = 0;
    for (size_t i = 0; i < g.size(); ++i)
      if (std::fabs(g[i]) > std::fabs(g[at])) at = i;
    auto v = read_param(model, pi);
    const float orig = v[at], eps = 1e-2f;
    auto loss_at = [&](float x) {
      v[at] = x;
      be.copy_to_device(p.fp32.get(), v.data(), v.size() * 4);
      return model.forward_loss(batch).mean();
    };
    const double fd = (loss_at(orig + eps) - loss_at(orig - eps)) / (2.0 * eps);
    loss_at(orig);
    INFO(p.name << "[" << at << "]: analytic " << g[at] << " finite difference " << fd);
    REQUIRE(std::fabs(fd - g[at]) <= 2e-2 * std::fabs(g[at]) + 1e-4);
  }
}

TEST_CASE("the Lion step matches an fp64 implementation of the formula, clipped by the step's totals", "[lion]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  const int64_t n = 5000;
  auto theta = test::random_normal(n, rng), m = test::random_normal(n, rng, 0.01f), g = test::random_normal(n, rng, 0.01f);
  g[7] = 0.0f;
  m[7] = 0.0f;  // c = 0: sign(0) = 0, only weight decay moves theta
  const LionParams p{3e-3f, 0.9f, 0.99f, 0.1f, 1.0};
  const double norm = 1.5 + std::uniform_real_distribution<double>(0, 1)(rng);
  StepTotals totals{2.5, norm * norm};  // host memory is backend memory on the CPU
  const double scale = 1.0 / (norm + 1e-6);  // clipped to norm 1
  auto step = [&](std::vector<float>& t, std::vector<float>& mm) {
    LionRowStep st = test::fp32_lion_step(t.data(), mm.data(), g.data(), 100, p);
    st.totals = &totals;
    be.lion_step_rows(st, n / 100);
  };
  auto t2 = theta, m2 = m;
  step(t2, m2);
  for (int64_t i = 0; i < n; ++i) {
    const double gi = double(g[i]) * scale, c = 0.9 * m[i] + 0.1 * gi;
    const double sgn = c > 0 ? 1 : (c < 0 ? -1 : 0);
    const double want_t = theta[i] - 3e-3 * (sgn + 0.1 * theta[i]), want_m = 0.99 * m[i] + 0.01 * gi;
    REQUIRE(std::fabs(t2[i] - want_t) <= 1e-6 * (1 + std::fabs(want_t)));
    REQUIRE(std::fabs(m2[i] - want_m) <= 1e-6 * std::fabs(want_m) + 1e-9);
  }
  REQUIRE(t2[7] == Approx(theta[7] * (1 - 3e-3 * 0.1)).epsilon(1e-6));

  // A step whose loss or gradient norm is not finite skips itself: nothing changes.
  for (const StepTotals bad : {StepTotals{NAN, 1.0}, StepTotals{1.0, INFINITY}}) {
    totals = bad;
    auto t3 = theta, m3 = m;
    step(t3, m3);
    REQUIRE(t3 == theta);
    REQUIRE(m3 == m);
  }
}

TEST_CASE("the fused per-layer step equals computing the whole gradient first and then stepping", "[backward][lion]") {
  std::mt19937_64 rng(test::fresh_seed());
  HfModel hf(test::fixture("mha_untied"));
  CpuBackend be_a, be_b;
  LlamaModel fused(hf, be_a), reference(hf, be_b);
  const Batch batch = random_batch(rng, 2, 12, 500);
  OptimizerSettings os;
  os.weight_decay = 0.1f;
  Optimizer opt_a(fused, os), opt_b(reference, os);
  const float lr = 1e-3f;
  for (int step = 0; step < 3; ++step) {
    train_step(fused, opt_a, nullptr, {batch}, lr, std::nullopt);
    // Reference: whole gradient into buffers, then one Lion step per parameter.
    GradAccumulators acc(reference, os);
    AccumulateSink sink(acc, true, 0);
    reference.backward(batch, float(1.0 / double(batch.target_count())), sink, nullptr);
    for (size_t i = 0; i < reference.params().size(); ++i) {
      const std::vector<float> g = acc.to_host(int(i));  // host memory is backend memory on the CPU
      opt_b.step_rows(int(i), 0, reference.params()[i].rows, g.data(), {lr});
    }
  }
  for (size_t i = 0; i < fused.params().size(); ++i) {
    INFO(fused.params()[i].name);
    REQUIRE(test::max_rel_error(read_param(fused, int(i)), read_param(reference, int(i))) <= 1e-6);
  }
}

TEST_CASE("accumulating two micro-batches of B equals one batch of 2B", "[backward]") {
  std::mt19937_64 rng(test::fresh_seed());
  HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be_a, be_b;
  LlamaModel accum(hf, be_a), whole(hf, be_b);
  Batch big = random_batch(rng, 4, 10, 500);
  for (int t = 0; t < 6; ++t) big.targets[size_t(t)] = kIgnoreIndex;  // uneven target counts across halves
  auto half = [&](int h) {
    Batch b;
    b.B = 2;
    b.T = 10;
    auto slice = [&](const std::vector<int32_t>& v) { return std::vector<int32_t>(v.begin() + h * 20, v.begin() + h * 20 + 20); };
    b.tokens = slice(big.tokens);
    b.targets = slice(big.targets);
    b.positions = slice(big.positions);
    return b;
  };
  // Gradients: accumulated over the halves, with the step's total token count, equal the whole batch's.
  GradAccumulators acc(accum, OptimizerSettings{});
  const float scale = float(1.0 / double(big.target_count()));
  {
    AccumulateSink first(acc, true, 0);
    accum.backward(half(0), scale, first, nullptr);
    AccumulateSink second(acc, false, 1);
    accum.backward(half(1), scale, second, nullptr);
  }
  test::CaptureSink whole_grads(whole);
  whole.backward(big, scale, whole_grads, nullptr);
  for (size_t i = 0; i < whole.params().size(); ++i) {
    const std::vector<float> a = acc.to_host(int(i));
    INFO(whole.params()[i].name);
    REQUIRE(test::max_rel_error(a, whole_grads.grads[i]) <= 1e-5);
  }
  // Steps: train_step over two micro-batches matches one step on the whole batch, up to rare sign flips of
  // near-zero Lion directions caused by fp32 summation order.
  OptimizerSettings os;
  Optimizer opt_a(accum, os), opt_b(whole, os);
  const auto ra = train_step(accum, opt_a, &acc, {half(0), half(1)}, 1e-3f, 1.0);
  const auto rb = train_step(whole, opt_b, nullptr, {big}, 1e-3f, 1.0);
  REQUIRE(ra.tokens == rb.tokens);
  REQUIRE(std::fabs(ra.loss - rb.loss) <= 1e-5 * rb.loss);
  REQUIRE(std::fabs(*ra.grad_norm - *rb.grad_norm) <= 1e-4 * *rb.grad_norm);
  int64_t total = 0, differ = 0;
  for (size_t i = 0; i < whole.params().size(); ++i) {
    auto a = read_param(accum, int(i)), b = read_param(whole, int(i));
    for (size_t j = 0; j < a.size(); ++j) differ += std::fabs(a[j] - b[j]) > 1e-6f;
    total += int64_t(a.size());
  }
  REQUIRE(differ <= total / 1000);
}

TEST_CASE("gradient clipping scales the update and a NaN loss changes no weight", "[backward]") {
  std::mt19937_64 rng(test::fresh_seed());
  HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be;
  LlamaModel model(hf, be);
  Optimizer opt(model, OptimizerSettings{});
  const Batch batch = random_batch(rng, 1, 8, 500);
  const auto r = train_step(model, opt, nullptr, {batch}, 1e-3f, 1e-3);
  REQUIRE(r.grad_norm.has_value());
  REQUIRE(*r.grad_norm > 1e-3);  // so clipping was active

  // Poison the final norm weight: the loss becomes NaN; no weight may change.
  const int final_norm = int(model.params().size()) - 1;
  auto w = read_param(model, final_norm);
  w[0] = NAN;
  be.copy_to_device(model.params()[size_t(final_norm)].fp32.get(), w.data(), w.size() * 4);
  const auto before = read_param(model, 1);
  REQUIRE_THROWS_AS(train_step(model, opt, nullptr, {batch}, 1e-3f, std::nullopt), NonFiniteLoss);
  REQUIRE(read_param(model, 1) == before);
}

// The hot path never waits on the host: the loss and the gradient norm stay on the device until the step's end.
TEST_CASE("a training step reads from the device once, with clipping and accumulation", "[backward]") {
  std::mt19937_64 rng(test::fresh_seed());
  HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be;
  LlamaModel model(hf, be, WeightStorage{true, 0.01});  // INT8 weights: rescale counters
  model.vocab_chunk_rows = 96;  // several vocabulary chunks
  Optimizer opt(model, OptimizerSettings{});
  GradAccumulators acc(model, OptimizerSettings{});
  const std::vector<Batch> micro = {random_batch(rng, 2, 9, 500), random_batch(rng, 2, 9, 500), random_batch(rng, 2, 9, 500)};
  const int64_t before = be.host_reads();
  const auto r = train_step(model, opt, &acc, micro, 1e-3f, 1e-2);
  CHECK(be.host_reads() - before == 1);
  CHECK(std::isfinite(r.loss));
  CHECK(*r.grad_norm > 0);
  // What a log line reads: every INT8 matrix's rescale counters at once.
  const int64_t at_log = be.host_reads();
  opt.total_rescales();
  CHECK(be.host_reads() - at_log == 1);
}

TEST_CASE("keeping a layer's dequantized matrices from recompute to backward changes no bit and saves dequantizations",
          "[backward][quant]") {
  std::mt19937_64 rng(test::fresh_seed());
  HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be_keep, be_lean;
  LlamaModel keep(hf, be_keep, WeightStorage{true, 0.02}), lean(hf, be_lean, WeightStorage{true, 0.02});
  keep.keep_layer_weights = true;
  lean.keep_layer_weights = false;
  OptimizerSettings os;
  os.momentum_int8 = true;
  Optimizer opt_keep(keep, os), opt_lean(lean, os);
  OpProfile prof_keep, prof_lean;
  be_keep.set_profile(&prof_keep);
  be_lean.set_profile(&prof_lean);
  const int steps = 2;
  for (int step = 0; step < steps; ++step) {
    const Batch batch = random_batch(rng, 2, 11, 500);
    opt_keep.set_step(uint32_t(step));
    opt_lean.set_step(uint32_t(step));
    train_step(keep, opt_keep, nullptr, {batch}, 1e-3f, std::nullopt);
    train_step(lean, opt_lean, nullptr, {batch}, 1e-3f, std::nullopt);
  }
  for (size_t i = 0; i < keep.params().size(); ++i) {
    INFO(keep.params()[i].name);
    REQUIRE(keep.read_weight(int(i)) == lean.read_weight(int(i)));
    const StateTensor &mk = opt_keep.momentum(int(i)), &ml = opt_lean.momentum(int(i));
    REQUIRE(mk.bytes() == ml.bytes());
    const Buffer& qk = mk.quantized() ? mk.int8.q : mk.fp32;
    const Buffer& ql = ml.quantized() ? ml.int8.q : ml.fp32;
    REQUIRE(std::memcmp(qk.get(), ql.get(), qk.bytes()) == 0);
  }
  // The backward pass reuses the six matrices each layer's recompute dequantized (all but w_down).
  const int64_t saved = prof_lean.ops["dequantize_hybrid"].calls - prof_keep.ops["dequantize_hybrid"].calls;
  CHECK(saved == int64_t(6) * hf.config().num_hidden_layers * steps);
}

// Long sequences take the MLP in pieces (model/llama_mlp.cpp). Forced here on 256 tokens with small pieces: the
// loss and every gradient equal the whole MLP's within fp32 rounding (the pieces sum d xn over the intermediate
// dimension in blocks), with fp32 and INT8 weights, a tied and an untied head, sizes that leave a partial piece;
// the peak is lower, and the planner (the same code on the planning backend) counts it within 5%.
TEST_CASE("the MLP in pieces gives the whole MLP's loss and gradients, and holds less", "[backward][long]") {
  std::mt19937_64 rng(test::fresh_seed());
  for (const std::string name : {"gqa_tied", "awkward"}) {
    for (bool int8 : {false, true}) {
      INFO(name << (int8 ? ", INT8 weights" : ", fp32 weights"));
      const HfModel hf(test::fixture(name));
      const Batch batch = random_batch(rng, 2, 128, hf.config().vocab_size);
      struct Run {
        double loss;
        std::vector<std::vector<float>> grads;
        size_t peak;
        int64_t gemms, swiglus;
      };
      auto run = [&](size_t chunk_bytes) {
        CpuBackend be;
        LlamaModel m(hf, be, WeightStorage{int8, 0.02});
        m.mlp_chunk_bytes = chunk_bytes;
        OpProfile prof;
        be.set_profile(&prof);
        const size_t before = be.memory().current_bytes;
        test::CaptureSink sink(m);
        const double loss = test::backward_loss_sum(m, batch, 1.0f / 256, sink);
        sink.require_complete();
        return Run{loss, sink.grads, be.memory().peak_bytes - before, prof.ops["matmul_forward"].calls,
                   prof.ops["swiglu_forward"].calls};
      };
      const Run whole = run(size_t(1) << 30), pieces = run(size_t(24) << 10);
      {
        PlanningBackend be;
        LlamaModel m(hf.config(), be, WeightStorage{int8, 0.02});
        m.mlp_chunk_bytes = size_t(24) << 10;
        struct Discard final : GradSink {
          void consume(int, int64_t, int64_t, const float*) override {}
        } sink;
        const size_t before = be.memory().current_bytes;
        m.backward(batch, 1.0f / 256, sink, nullptr);
        const double planned = double(be.memory().peak_bytes - before);
        INFO("planned " << planned << " bytes, measured " << pieces.peak);
        CHECK(std::fabs(planned - double(pieces.peak)) <= 0.05 * double(pieces.peak));
      }
      // One product per layer in the forward and one in the backward's: an MLP that fits is never split (an
      // intermediate size that is not a multiple of 64 once was, into a piece and a remainder).
      CHECK(whole.swiglus == 2 * hf.config().num_hidden_layers);
      CHECK(pieces.gemms > whole.gemms);  // the pieces ran
      CHECK(pieces.peak < whole.peak);
      INFO("peak " << pieces.peak << " bytes in pieces, " << whole.peak << " whole");
      CHECK(std::abs(pieces.loss - whole.loss) <= 1e-6 * std::abs(whole.loss));
      for (size_t i = 0; i < whole.grads.size(); ++i) {
        INFO(hf.config().num_hidden_layers << " layers, parameter " << i);
        CHECK(test::max_rel_error(pieces.grads[i], whole.grads[i]) < 1e-5);
      }
    }
  }
}
