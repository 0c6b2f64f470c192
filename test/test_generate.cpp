// Generation: the KV-cache decode against the full forward pass and `qft eval`'s loss, sampling statistics,
// determinism under a seed, and exact-match task scoring.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <nlohmann/json.hpp>

#include "cpu/cpu_backend.h"
#include "text/tokenizer.h"
#include "test/helpers.h"
#include "trainer/evaluate.h"
#include "trainer/generate.h"
#include "trainer/jsonl.h"
#include "trainer/model_source.h"
#include "trainer/task_eval.h"
#include "trainer/train_loop.h"

using namespace qft;

namespace {

// Mean next-token loss of ids, fed to the KV cache one token at a time; log-softmax in double.
double decode_loss(LlamaModel& model, const std::vector<int32_t>& ids) {
  KvCache cache = model.new_kv_cache(int(ids.size()));
  double nll = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    const std::vector<float> logits = model.decode({ids[i]}, cache);
    double mx = -INFINITY, sum = 0;
    for (float z : logits) mx = std::max(mx, double(z));
    for (float z : logits) sum += std::exp(double(z) - mx);
    nll += mx + std::log(sum) - double(logits[size_t(ids[i + 1])]);
  }
  return nll / double(ids.size() - 1);
}

// The logits (V,) of the last token of a prefix, by the full forward pass (no cache).
std::vector<float> last_logits(LlamaModel& model, const std::vector<int32_t>& prefix) {
  const Batch b = Batch::sequence(prefix);
  const std::vector<float> all = model.forward_logits(b);
  const size_t V = size_t(model.config().vocab_size);
  return {all.end() - std::ptrdiff_t(V), all.end()};
}

GenerateOptions sampling(double temperature, int max_new_tokens) {
  GenerateOptions o;
  o.temperature = temperature;
  o.max_new_tokens = max_new_tokens;
  return o;
}

std::string first_text() { return read_jsonl_strings(test::source_path("data/eval.jsonl"), "text").front(); }

}  // namespace

TEST_CASE("decoding token by token through the KV cache gives qft eval's loss, for fp32 and INT8 weights", "[generate]") {
  test::TempDir tmp;
  run_training(test::short_run_config(tmp / "run", 2));  // an INT8 checkpoint, dequantized per layer when decoding
  for (const std::string path : {test::fixture("gqa_tied"), tmp / "run/step_00000002"}) {
    INFO(path);
    CpuBackend be;
    const auto model = load_model(open_model_source(path), be);
    const Tokenizer tok(path);
    const std::string text = first_text();
    const double expect = evaluate_texts(*model, tok, {text}, 4096).loss;
    const double got = decode_loss(*model, tok.encode(text));
    CHECK(std::abs(got - expect) <= 1e-5 * std::abs(expect));
  }
}

TEST_CASE("a prompt decoded at once and token by token gives the full forward pass's logits", "[generate]") {
  test::GoldenCase c("mha_untied");
  const Tokenizer tok(test::fixture("mha_untied"));
  const std::vector<int32_t> ids = tok.encode(first_text());
  const std::vector<float> reference = last_logits(c.model, ids);
  KvCache at_once = c.model.new_kv_cache(int(ids.size()));
  CHECK(test::max_rel_error(c.model.decode(ids, at_once), reference) < 1e-5);
  KvCache split = c.model.new_kv_cache(int(ids.size()));
  const size_t half = ids.size() / 2;
  c.model.decode({ids.begin(), ids.begin() + std::ptrdiff_t(half)}, split);
  CHECK(test::max_rel_error(c.model.decode({ids.begin() + std::ptrdiff_t(half), ids.end()}, split), reference) < 1e-5);
  CHECK_THROWS_WITH(c.model.decode({1}, split), Catch::Contains("exceed the cache"));
}

TEST_CASE("decoding holds no (prompt, prompt) scores, and queries against the cache in chunks give the same bits",
          "[generate][attention]") {
  std::mt19937_64 rng(test::fresh_seed());
  const HfModel hf(test::fixture("gqa_tied"));
  // Bytes a prompt of n tokens adds at its peak, decoded at once into a fresh cache (RoPE takes positions past
  // the fixture's context).
  auto peak_of = [&](int n) {
    CpuBackend be;
    LlamaModel model(hf, be);
    const size_t before = be.memory().current_bytes;
    REQUIRE(be.memory().peak_bytes < before + (size_t(1) << 20));  // what loading held stays below what is measured
    KvCache cache = model.new_kv_cache(n);
    model.decode(test::random_ids(size_t(n), model.config().vocab_size, rng), cache);
    return be.memory().peak_bytes - before;
  };
  const size_t small = peak_of(512), large = peak_of(2048);
  INFO(small << " and " << large << " bytes");
  CHECK(small > (size_t(1) << 20));
  CHECK(large <= 4 * small);

  test::GoldenCase c("mha_untied");
  const std::vector<int32_t> ids = test::random_ids(48, c.model.config().vocab_size, rng);
  auto after_first_ten = [&] {
    KvCache cache = c.model.new_kv_cache(int(ids.size()));
    c.model.decode({ids.begin(), ids.begin() + 10}, cache);
    return c.model.decode({ids.begin() + 10, ids.end()}, cache);
  };
  const std::vector<float> at_once = after_first_ten();
  c.backend.attention_scores_bytes = 1;  // one query at a time
  CHECK(after_first_ten() == at_once);
}

// On a GPU a prompt's attention is cuDNN's fused attention (bf16), and each token after it the decode op's.
TEST_CASE("cuda: a prompt and the tokens after it decode on the GPU as on the CPU", "[cuda][generate]") {
  auto gpu = test::gpu_or_skip(DType::BF16);
  if (!gpu) return;
  INFO(gpu->attention_implementation());
  REQUIRE(gpu->attention_implementation().rfind("cuDNN", 0) == 0);
  std::mt19937_64 rng(test::fresh_seed());
  const HfModel hf(test::fixture("long_positions"));  // head_dim 32, GQA 4:2
  CpuBackend cpu;
  LlamaModel on_cpu(hf, cpu), on_gpu(hf, *gpu);
  const int32_t V = on_cpu.config().vocab_size;
  const std::vector<int32_t> prompt = test::random_ids(200, V, rng);
  KvCache cpu_cache = on_cpu.new_kv_cache(210), gpu_cache = on_gpu.new_kv_cache(210);
  // bf16 activations through two layers and the head: a few bf16 steps of the largest logit; a wrong mask, position
  // or cache row moves logits by their own size.
  const double tol = 5e-2;
  CHECK(test::max_rel_error(on_gpu.decode(prompt, gpu_cache), on_cpu.decode(prompt, cpu_cache)) < tol);
  CHECK(gpu->take_notes().empty());  // no fallback: the prompt went through cuDNN
  for (int32_t t : test::random_ids(10, V, rng)) {
    CHECK(test::max_rel_error(on_gpu.decode({t}, gpu_cache), on_cpu.decode({t}, cpu_cache)) < tol);
  }
}

// Generation holds one dequantized copy of the INT8 model instead of dequantizing every matrix for every token:
// the same logits bit for bit, each matrix dequantized once, and nothing held once the hold ends.
TEST_CASE("generation dequantizes each INT8 matrix once while it holds them, with the same logits", "[generate][quant]") {
  std::mt19937_64 rng(test::fresh_seed());
  const HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be;
  LlamaModel model(hf, be, WeightStorage{true, 0.02});
  int64_t matrices = 0;
  for (const Param& p : model.params()) matrices += p.quantized();
  REQUIRE(matrices > 0);
  const std::vector<int32_t> prompt = test::random_ids(20, model.config().vocab_size, rng);
  const std::vector<int32_t> next = test::random_ids(5, model.config().vocab_size, rng);
  auto decode_all = [&] {
    KvCache cache = model.new_kv_cache(25);
    std::vector<std::vector<float>> out{model.decode(prompt, cache)};
    for (int32_t t : next) out.push_back(model.decode({t}, cache));
    return out;
  };
  OpProfile prof;
  be.set_profile(&prof);
  const auto plain = decode_all();
  const int64_t per_use = prof.ops["dequantize_hybrid"].calls;
  CHECK(per_use >= 6 * matrices);  // every matrix at every decode call (a tied one twice)
  {
    const LlamaModel::DenseHold hold = model.hold_dense_weights();
    REQUIRE(hold.holds());
    CHECK_FALSE(model.hold_dense_weights().holds());  // one hold at a time
    CHECK(decode_all() == plain);
    CHECK(prof.ops["dequantize_hybrid"].calls == per_use + matrices);
  }
  const size_t live = be.memory().current_bytes;
  CHECK(decode_all() == plain);  // dequantized per use again, and nothing left held
  CHECK(prof.ops["dequantize_hybrid"].calls == 2 * per_use + matrices);
  CHECK(be.memory().current_bytes == live);
}

TEST_CASE("greedy generation picks the argmax of the uncached forward pass at every step", "[generate]") {
  test::GoldenCase c("gqa_tied");
  const Tokenizer tok(test::fixture("gqa_tied"));
  const GenerateOptions o = sampling(0.0, 12);
  const Generation g = generate(c.model, tok, "The river runs past", o);
  REQUIRE(!g.tokens.empty());
  std::vector<int32_t> prefix = g.prompt;
  for (int32_t t : g.tokens) {
    const std::vector<float> logits = last_logits(c.model, prefix);
    const float best = *std::max_element(logits.begin(), logits.end());
    CHECK(logits[size_t(t)] >= best - 1e-4f * std::abs(best));  // argmax, up to float noise between the two paths
    prefix.push_back(t);
  }
}

TEST_CASE("a fixed seed gives the same text every time; another seed gives another", "[generate]") {
  test::GoldenCase c("gqa_tied");
  const Tokenizer tok(test::fixture("gqa_tied"));
  GenerateOptions o = sampling(1.0, 24);
  o.top_p = 0.95;
  o.seed = test::fresh_seed();
  INFO("seed " << o.seed);
  const Generation a = generate(c.model, tok, "A small boat", o), b = generate(c.model, tok, "A small boat", o);
  CHECK(a.tokens == b.tokens);
  CHECK(a.text == b.text);
  o.seed += 1;
  CHECK(generate(c.model, tok, "A small boat", o).tokens != a.tokens);
}

TEST_CASE("sampling draws from softmax(logits / T), restricted to the top-p nucleus", "[generate]") {
  std::mt19937_64 rng(test::fresh_seed());
  const std::vector<float> logits = test::random_normal(8, rng, 1.5f);
  const double T = 0.7;
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp(double(logits[i]) / T);
  for (double& x : p) x /= sum;
  for (const double top_p : {1.0, 0.6}) {
    INFO("top_p " << top_p);
    // The nucleus: most likely first, until its mass reaches top_p.
    std::vector<size_t> order(p.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
    std::vector<double> expect(p.size(), 0.0);
    double mass = 0;
    for (size_t k = 0; k < order.size() && (k == 0 || mass < top_p); ++k) mass += expect[order[k]] = p[order[k]];
    const int draws = 40000;
    std::vector<int> count(p.size(), 0);
    for (int i = 0; i < draws; ++i) count[size_t(sample_token(logits, T, top_p, rng))] += 1;
    for (size_t i = 0; i < p.size(); ++i) {
      INFO("token " << i);
      CHECK(std::abs(double(count[i]) / draws - expect[i] / mass) < 0.015);  // > 5 standard deviations
    }
  }
  CHECK(sample_token(logits, 0.0, 1.0, rng) == int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin()));
}

TEST_CASE("exact-match scoring counts an answer equal to the reference that ends with EOS", "[generate]") {
  // References are the model's own greedy answers: a stopped answer scores, a truncated or altered one does not.
  test::TempDir tmp;
  CpuBackend be;
  const std::string tiny = test::source_path("models/tiny-llama");
  const auto model = load_model(open_model_source(tiny), be);
  const Tokenizer tok(tiny);
  const std::vector<std::string> prompts = {"What is 2 plus 3?", "Name a color.", "The opposite of up", "Count.",
                                            "Say hello.", "What is the sky?"};
  GenerateOptions o = sampling(0.0, 120);
  o.prompt_template = "plain";
  std::string own, altered;
  int stopped = 0;
  for (const std::string& p : prompts) {
    const Generation g = generate(*model, tok, p, o);
    stopped += g.hit_eos;
    own += nlohmann::json({{"instruction", p}, {"output", g.text}}).dump() + "\n";
    altered += nlohmann::json({{"instruction", p}, {"output", g.text + " x"}}).dump() + "\n";
  }
  INFO("answers that stopped with EOS: " << stopped);
  REQUIRE(stopped > 0);  // the pretrained demo model ends its text with EOS
  test::write_file(tmp / "own.jsonl", own);
  test::write_file(tmp / "altered.jsonl", altered);
  TaskOptions t;
  t.max_new_tokens = 120;
  const TaskResult r = score_exact_match(*model, tok, tmp / "own.jsonl", t);
  CHECK(r.examples == int64_t(prompts.size()));
  CHECK(r.correct == stopped);
  CHECK(score_exact_match(*model, tok, tmp / "altered.jsonl", t).correct == 0);
  test::write_file(tmp / "bad.jsonl", own + "{\"instruction\": 3}\n");
  CHECK_THROWS_WITH(score_exact_match(*model, tok, tmp / "bad.jsonl", t), Catch::Contains("bad.jsonl:7"));
}

TEST_CASE("qft generate streams the same text for the same seed, from an HF directory and a checkpoint", "[generate][cli]") {
  test::TempDir tmp;
  const std::string tiny = test::source_path("models/tiny-llama");
  const std::string args = " --prompt 'The farmer' --max-new-tokens 16 --temperature 0.9 --seed 11 --device cpu";
  const auto a = test::run_qft("generate --json --model " + tiny + args);
  const auto b = test::run_qft("generate --json --model " + tiny + args);
  REQUIRE(a.exit_code == 0);
  REQUIRE(b.exit_code == 0);
  const auto j = nlohmann::json::parse(a.output.substr(a.output.find('{')));
  const auto k = nlohmann::json::parse(b.output.substr(b.output.find('{')));
  CHECK(j["tokens"] == k["tokens"]);
  CHECK(j["text"] == k["text"]);
  CHECK(!j["tokens"].empty());
  const auto streamed = test::run_qft("generate --model " + tiny + args);
  REQUIRE(streamed.exit_code == 0);
  CHECK_THAT(streamed.output, Catch::Contains(j["text"].get<std::string>()));

  run_training(test::short_run_config(tmp / "run", 1));
  CHECK(test::run_qft("generate --model " + tmp / "run/step_00000001" + args).exit_code == 0);
  const auto missing = test::run_qft("generate --model " + tmp / "nope" + args);
  CHECK(missing.exit_code != 0);
  CHECK_THAT(missing.output, Catch::Contains("nope"));
}
