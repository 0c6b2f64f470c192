// qft's CPU forward pass against logits and losses recorded by HuggingFace transformers (scripts/make_fixtures.py).
#include <catch2/catch.hpp>
#include <cmath>

#include "cpu/cpu_backend.h"
#include "model/hf_model.h"
#include "model/llama.h"
#include "model/safetensors.h"
#include "model/batch.h"
#include "test/helpers.h"

using namespace qft;

TEST_CASE("forward logits and loss match transformers", "[golden][forward]") {
  for (const auto& name : test::golden_fixtures()) {
    INFO("fixture " << name);
    test::GoldenCase g(name);
    const auto logits = g.model.forward_logits(g.batch);
    const double rel = test::max_rel_error(logits, g.golden.read_f32("logits"));
    const double loss = g.model.forward_loss(g.batch).mean();
    const double want_loss = g.golden.read_f32("loss")[0];
    UNSCOPED_INFO(name << ": logits max rel error " << rel << ", loss " << loss << " vs " << want_loss);
    CHECK(rel <= 1e-4);
    CHECK(std::fabs(loss - want_loss) <= 1e-5);
  }
}

TEST_CASE("the chunked LM head gives the same loss for any chunk size", "[forward]") {
  test::GoldenCase g("awkward");
  const Batch& batch = g.batch;
  LlamaModel& model = g.model;
  const LossSum full = model.forward_loss(batch);
  for (int chunk : {1, 7, 48, 1000}) {
    model.logits_chunk_tokens = chunk;
    const LossSum l = model.forward_loss(batch);
    REQUIRE(l.tokens == full.tokens);
    REQUIRE(std::fabs(l.loss_sum - full.loss_sum) <= 1e-5 * std::fabs(full.loss_sum));
  }
}

TEST_CASE("packed documents do not attend to each other and restart positions", "[forward]") {
  HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be;
  LlamaModel model(hf, be);
  std::mt19937_64 rng(test::fresh_seed());
  std::uniform_int_distribution<int32_t> tok(3, 499);
  const int L1 = 9, L2 = 11, T = L1 + L2;
  std::vector<int32_t> doc1(L1), doc2(L2);
  for (auto& t : doc1) t = tok(rng);
  for (auto& t : doc2) t = tok(rng);

  auto single = [&](const std::vector<int32_t>& d) {
    const int n = int(d.size());
    return model.forward_logits(Batch::from_labels(1, n, d, d));
  };
  Batch packed;
  packed.B = 1;
  packed.T = T;
  packed.tokens = doc1;
  packed.tokens.insert(packed.tokens.end(), doc2.begin(), doc2.end());
  packed.targets.assign(T, kIgnoreIndex);
  for (int t = 0; t < T; ++t) {
    packed.positions.push_back(t < L1 ? t : t - L1);
    packed.doc_start.push_back(t < L1 ? 0 : L1);
  }
  const auto both = model.forward_logits(packed);
  const auto a = single(doc1), b = single(doc2);
  const size_t V = 500;
  REQUIRE(test::max_rel_error(std::vector<float>(both.begin(), both.begin() + L1 * V), a) < 1e-5);
  REQUIRE(test::max_rel_error(std::vector<float>(both.begin() + L1 * V, both.end()), b) < 1e-5);

  // Without the mask the second document sees the first, and its logits change.
  packed.doc_start.clear();
  const auto leaky = model.forward_logits(packed);
  REQUIRE(test::max_rel_error(std::vector<float>(leaky.begin() + L1 * V, leaky.end()), b) > 1e-3);
}

TEST_CASE("a batch with out-of-vocabulary tokens is refused", "[forward][bad-input]") {
  HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be;
  LlamaModel model(hf, be);
  Batch b = Batch::from_labels(1, 3, {1, 2, 500}, {1, 2, 3});
  REQUIRE_THROWS_WITH(model.forward_loss(b), Catch::Contains("outside the vocabulary"));
}

// Llama-3.1's RoPE scaling at positions 9000 and 100000 on: the band the scaling stretches is what a long context
// reads (scripts/make_long_position_fixture.py). Both sides compute angles in fp32, as transformers does.
TEST_CASE("logits at positions past 8192 with llama3 RoPE scaling match transformers", "[golden][forward]") {
  const HfModel hf(test::fixture("long_positions"));
  const SafeTensorsFile golden(test::fixture("long_positions/golden.safetensors"));
  CpuBackend be;
  LlamaModel model(hf, be);
  auto i32 = [&](const char* name) {
    const HostTensor t = golden.read(name);
    return std::vector<int32_t>(t.data<int32_t>(), t.data<int32_t>() + t.numel());
  };
  Batch batch;
  batch.B = 2;
  batch.T = int(golden.find("input_ids")->shape[1]);
  batch.tokens = i32("input_ids");
  batch.positions = i32("position_ids");
  batch.targets.assign(batch.tokens.size(), kIgnoreIndex);
  REQUIRE(batch.positions.front() > 8192);
  const double rel = test::max_rel_error(model.forward_logits(batch), golden.read_f32("logits"));
  UNSCOPED_INFO("logits max rel error " << rel);
  CHECK(rel <= 1e-4);
}
