#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test/helpers.h"
#include "trainer/config.h"
#include "trainer/train_loop.h"

using namespace qft;

namespace {

const std::string kMinimal = R"({"model": {"path": "m"}, "data": {"train": "t.jsonl"}})";

}  // namespace

TEST_CASE("defaults, nested sections and the effective config round-trip", "[config]") {
  RunConfig c = RunConfig::from_json_text(
      R"({"model": {"path": "m"}, "data": {"train": "t.jsonl", "seq_len": 64, "packing": true},
          "train": {"lr": 3e-5, "betas": [0.95, 0.98], "clip_grad_norm": 1.0, "seed": 7}, "device": "cpu"})", "c.json");
  CHECK(c.data.seq_len == 64);
  CHECK(c.data.packing);
  CHECK(c.train.lr == 3e-5);
  CHECK(c.train.betas[1] == 0.98);
  CHECK(*c.train.clip_grad_norm == 1.0);
  CHECK(c.train.seed == 7);
  CHECK(c.train.batch_size == 4);  // default
  CHECK(c.device == Device::Cpu);
  c.validate();
  RunConfig again = RunConfig::from_json_text(c.to_json(), "effective");
  CHECK(again.to_json() == c.to_json());
}

TEST_CASE("overrides with --set parse JSON values and fall back to strings", "[config]") {
  RunConfig c = RunConfig::from_json_text(kMinimal, "c.json");
  c.apply_override("train.lr=2e-4");
  c.apply_override("data.packing=true");
  c.apply_override("train.clip_grad_norm=0.5");
  c.apply_override("train.betas=[0.8,0.9]");
  c.apply_override("output.dir=runs/sweep-3");  // not JSON: taken as a string
  c.apply_override("quant.weights=fp32");
  c.apply_override("data.val=\"v.jsonl\"");
  CHECK(c.train.lr == 2e-4);
  CHECK(c.data.packing);
  CHECK(*c.train.clip_grad_norm == 0.5);
  CHECK(c.train.betas[0] == 0.8);
  CHECK(c.output.dir == "runs/sweep-3");
  CHECK(c.data.val == "v.jsonl");
  c.apply_override("train.clip_grad_norm=null");
  CHECK(!c.train.clip_grad_norm.has_value());
}

TEST_CASE("config errors name the key and suggest the closest one", "[config][bad-input]") {
  auto fails = [](const std::string& text, const std::string& msg) {
    INFO(text);
    REQUIRE_THROWS_WITH(RunConfig::from_json_text(text, "run.json"), Catch::Contains("run.json") && Catch::Contains(msg));
  };
  fails(R"({"train": {"learning_rate": 1e-4}})", "'train.learning_rate': unknown key");
  fails(R"({"train": {"lrr": 1e-4}})", "did you mean 'train.lr'?");
  fails(R"({"trian": {"steps": 10}})", "did you mean 'train.steps'?");
  fails(R"({"train": {"steps": "ten"}})", "'train.steps': expected an integer");
  fails(R"({"train": {"steps": 1.5}})", "'train.steps': expected an integer");
  fails(R"({"data": {"seq_len": 18446744073709551615}})", "'data.seq_len': integer out of range");  // not -1
  fails(R"({"data": {"packing": "yes"}})", "expected true or false");
  fails(R"({"data": {"format": "sharegpt"}})", "'sharegpt' is not one of");
  fails(R"({"train": {"betas": [0.9]}})", "list of two numbers");
  fails(R"({"model": {"path": "m"},)", "invalid JSON");
  REQUIRE_THROWS_WITH(RunConfig().apply_override("train.lr"), Catch::Contains("KEY=VALUE"));
  // Found by fuzz/fuzz_run_config: a value that is neither JSON nor UTF-8 ended in an uncaught exception.
  REQUIRE_THROWS_WITH(RunConfig().apply_override("train.seed={\"hidden\x8a\x8a"), Catch::Contains("not valid UTF-8"));
  REQUIRE_THROWS_WITH(RunConfig().apply_override("output.dir=runs/\xff"), Catch::Contains("not valid UTF-8"));
  REQUIRE_THROWS_WITH(RunConfig().apply_override("train.l=1"), Catch::Contains("--set") && Catch::Contains("train.lr"));
  REQUIRE_THROWS_WITH(RunConfig::load("/nonexistent/run.json"), Catch::Contains("/nonexistent/run.json"));
}

TEST_CASE("JSON inputs are bounded: depth, repeated keys, special files", "[config][bad-input]") {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  REQUIRE_THROWS_WITH(RunConfig::from_json_text(R"({"model": {"arch": )" + deep + "}}", "deep.json"),
                      Catch::Contains("deep.json") && Catch::Contains("nested deeper than"));
  REQUIRE_THROWS_WITH(RunConfig().apply_override("model.arch=" + deep), Catch::Contains("--set model.arch") && Catch::Contains("nested"));
  // A repeated key would silently drop the first section's keys.
  REQUIRE_THROWS_WITH(RunConfig::from_json_text(R"({"train": {"steps": 5}, "train": {"lr": 1e-4}})", "dup.json"),
                      Catch::Contains("dup.json") && Catch::Contains("\"train\" appears twice"));
  test::TempDir tmp;
  REQUIRE_THROWS_WITH(RunConfig::load(tmp.path().string()), Catch::Contains("is a directory"));
  const std::string fifo = tmp / "fifo.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE_THROWS_WITH(RunConfig::load(fifo), Catch::Contains("fifo.json") && Catch::Contains("not a regular file"));
  REQUIRE_THROWS_WITH(RunConfig::load("/dev/zero"), Catch::Contains("/dev/zero") && Catch::Contains("not a regular file"));
  // What a config read may consume is bounded: 16 MiB, where real configs are a few KiB.
  test::write_file(tmp / "huge.json", "{\"model\": {\"path\": \"" + std::string(size_t(17) << 20, 'm') + "\"}}");
  REQUIRE_THROWS_WITH(RunConfig::load(tmp / "huge.json"), Catch::Contains("huge.json") && Catch::Contains("bytes, more than"));
}

TEST_CASE("validation catches values no run can use", "[config][bad-input]") {
  auto invalid = [](const std::string& set, const std::string& msg) {
    RunConfig c = RunConfig::from_json_text(kMinimal, "c.json");
    c.apply_override(set);
    INFO(set);
    REQUIRE_THROWS_WITH(c.validate(), Catch::Contains(msg));
  };
  invalid("train.steps=0", "train.steps");
  invalid("train.lr=0", "train.lr");
  invalid("train.betas=[1.0, 0.9]", "train.betas");
  invalid("data.seq_len=1", "data.seq_len");
  invalid("train.eval_every=10", "needs data.val");
  invalid("train.save_every=-1", "train.save_every");
  invalid("train.clip_grad_norm=-1", "train.clip_grad_norm");
  REQUIRE_THROWS_WITH(RunConfig().validate(), Catch::Contains("model.path"));
}

TEST_CASE("docs/config.md documents every key with its default", "[config]") {
  const std::string docs = test::read_file(test::source_path("docs/config.md"));
  for (const auto& k : config_key_docs()) {
    INFO(k.key);
    REQUIRE(docs.find("| `" + k.key + "` | `" + k.default_json + "` | " + k.doc + " |") != std::string::npos);
  }
}

TEST_CASE("learning-rate schedules: warmup, then constant, linear or cosine decay", "[config]") {
  TrainSection t;
  t.steps = 110;
  t.warmup_steps = 10;
  t.lr = 1.0;
  t.lr_schedule = LrSchedule::Cosine;
  CHECK(learning_rate(t, 0) == Approx(0.1));
  CHECK(learning_rate(t, 9) == Approx(1.0));
  CHECK(learning_rate(t, 10) == Approx(1.0));
  CHECK(learning_rate(t, 60) == Approx(0.5));
  CHECK(learning_rate(t, 109) > 0.0);
  t.lr_schedule = LrSchedule::Linear;
  CHECK(learning_rate(t, 60) == Approx(0.5));
  CHECK(learning_rate(t, 35) == Approx(0.75));
  t.lr_schedule = LrSchedule::Constant;
  CHECK(learning_rate(t, 100) == Approx(1.0));
}
