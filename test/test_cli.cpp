// The qft binary end to end: outputs, exit codes, and one clear message for each kind of bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test/helpers.h"

using namespace qft;
using test::run_qft;
namespace fs = std::filesystem;

using test::expect_cli_error;

TEST_CASE("qft --version says whether CUDA is compiled in and whether a GPU is visible", "[cli]") {
  const auto r = run_qft("--version");
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.output.find("qft 0.1.0") == 0);
  REQUIRE(r.output.find("CUDA compiled in: ") != std::string::npos);
#ifdef QFT_WITH_CUDA
  REQUIRE(r.output.find("GPU visible: ") != std::string::npos);
#endif
}

TEST_CASE("qft inspect --json reports the parameters of a sharded model", "[cli]") {
  const auto r = run_qft("inspect --json " + test::fixture("mha_untied"));
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.output);
  CHECK(j["parameters"] == 146240);
  CHECK(j["shards"] == 12);
  CHECK(j["tensors"].size() == 1 + 2 * 9 + 2);
  CHECK(j["config"]["num_key_value_heads"] == 4);
  const auto text = run_qft("inspect " + test::fixture("gqa_tied"));
  REQUIRE(text.exit_code == 0);
  CHECK(text.output.find("model.layers.1.self_attn.k_proj.weight") != std::string::npos);
  CHECK(text.output.find("114240") != std::string::npos);
}

TEST_CASE("qft eval --json reports loss, perplexity and tokens", "[cli]") {
  const auto r = run_qft("eval --json --device cpu --model " + test::source_path("models/tiny-llama") + " --data " +
                         test::source_path("data/eval.jsonl") + " --seq-len 64");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.output);
  const double loss = j["loss"];
  CHECK(j["tokens"].get<int64_t>() > 500);
  CHECK(std::fabs(std::exp(loss) - j["perplexity"].get<double>()) < 1e-6 * j["perplexity"].get<double>());
  // The demo model was pretrained on text that includes data/corpus.txt, from which eval.jsonl is made: it
  // predicts it far better than the uniform distribution over its 500 tokens (ln 500 = 6.2).
  CHECK(loss < std::log(500.0) - 3.0);
  CHECK(loss > 0.1);
}

TEST_CASE("bad input gives one clear message and exit code 1", "[cli][bad-input]") {
  test::TempDir tmp;
  const std::string tiny = test::source_path("models/tiny-llama"), data = test::source_path("data/eval.jsonl");

  SECTION("missing model directory") { expect_cli_error("inspect /nonexistent/dir", "/nonexistent/dir"); }
  SECTION("corrupt safetensors") {
    const std::string dir = tmp / "m";
    test::copy_dir(tiny, dir);
    const std::string st = dir + "/model.safetensors";
    fs::resize_file(st, fs::file_size(st) / 2);
    expect_cli_error("inspect " + dir, "model.safetensors");
  }
  SECTION("bad config.json") {
    const std::string dir = tmp / "m";
    test::copy_dir(tiny, dir);
    test::write_file(dir + "/config.json", R"({"hidden_size": 128})");
    expect_cli_error("inspect " + dir, "intermediate_size");
  }
  SECTION("missing tokenizer") {
    const std::string dir = tmp / "m";
    test::copy_dir(tiny, dir);
    fs::remove(dir + "/tokenizer.model");
    expect_cli_error("eval --device cpu --model " + dir + " --data " + data, "tokenizer.model");
  }
  SECTION("malformed data line") {
    test::write_file(tmp / "d.jsonl", "{\"text\": \"fine\"}\n{\"text\": broken}\n");
    expect_cli_error("eval --device cpu --model " + tiny + " --data " + (tmp / "d.jsonl"), "d.jsonl:2");
  }
  SECTION("data line without text") {
    test::write_file(tmp / "d.jsonl", "{\"text\": \"fine\"}\n\n{\"prompt\": \"x\"}\n");
    expect_cli_error("eval --device cpu --model " + tiny + " --data " + (tmp / "d.jsonl"), "d.jsonl:3: missing the \"text\" field");
  }
  SECTION("empty data file") {
    test::write_file(tmp / "empty.jsonl", "");
    expect_cli_error("eval --device cpu --model " + tiny + " --data " + (tmp / "empty.jsonl"), "empty");
  }
  SECTION("data path is a directory") {
    expect_cli_error("eval --device cpu --model " + tiny + " --data " + tmp.path().string(), "is a directory");
  }
  SECTION("model path is a file") {
    expect_cli_error("eval --device cpu --model " + data + " --data " + data, "is not a directory");
  }
  SECTION("missing data file") {
    expect_cli_error("eval --device cpu --model " + tiny + " --data " + (tmp / "nope.jsonl"), "nope.jsonl");
  }
}

TEST_CASE("usage errors exit non-zero", "[cli][bad-input]") {
  CHECK(run_qft("").exit_code != 0);
  CHECK(run_qft("frobnicate").exit_code != 0);
  CHECK(run_qft("eval --model x").exit_code != 0);  // --data is required
  CHECK(run_qft("eval --model x --data y --seq-len 0").exit_code != 0);
}

TEST_CASE("qft inspect lists the tensors and metadata of a single safetensors file", "[cli]") {
  const auto r = run_qft("inspect --json " + test::fixture("gqa_tied/golden.safetensors"));
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.output);
  CHECK(j["metadata"]["fixture"] == "gqa_tied");
  CHECK(j["tensors"].size() == 4 + 2 * 9 + 2);  // batch, logits, loss and one gradient per parameter
}

TEST_CASE("qft train --profile logs each op kind's share of the step time", "[cli][train]") {
  test::TempDir tmp;
  const auto r = test::run_qft("train --config " + test::source_path("configs/tiny.json") + " --set model.path=" +
                               test::source_path("models/tiny-llama") + " --set data.train=" +
                               test::source_path("data/tiny_instruct/train.jsonl") + " --set train.steps=3 --set train.eval_every=0" +
                               " --set data.val= --set device=cpu --set output.dir=" + (tmp / "run") + " --profile");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const std::string log = test::read_file(tmp / "run/train.log");
  const size_t at = log.find("op profile: 3 steps");
  REQUIRE(at != std::string::npos);
  double total = 0;
  for (const char* op : {"matmul_forward", "lion_step_rows", "dequantize_hybrid", "(outside ops)"}) {
    INFO(op);
    const size_t line = log.find(std::string("  ") + op, at);
    REQUIRE(line != std::string::npos);
  }
  std::istringstream rows(log.substr(at));
  std::string row;
  std::getline(rows, row);  // the title
  std::getline(rows, row);  // the header
  while (std::getline(rows, row) && row.find('%') != std::string::npos) {
    const size_t pct = row.find('%'), start = row.rfind(' ', pct) + 1;
    total += std::stod(row.substr(start, pct - start));
  }
  CHECK(total == Approx(100.0).margin(1.0));  // the ops and the time outside them make up the step
}
