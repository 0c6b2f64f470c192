// INT8 checkpoints: exact resume, refused config changes, pruning, incomplete or foreign checkpoints, and a
// process killed while it writes.
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test/helpers.h"
#include "trainer/checkpoint.h"
#include "trainer/train_loop.h"

using namespace qft;
namespace fs = std::filesystem;

namespace {

std::vector<double> step_losses(const std::string& dir) {
  std::vector<double> out;
  const std::string text = test::read_file(dir + "/metrics.jsonl");
  for (size_t at = 0, nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) {
    const auto j = nlohmann::json::parse(text.substr(at, nl - at));
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

}  // namespace

TEST_CASE("2N steps equal N steps, a resume and N more, bit for bit", "[checkpoint]") {
  test::TempDir tmp;
  run_training(test::short_run_config(tmp / "straight", 6));
  run_training(test::short_run_config(tmp / "resumed", 3));
  REQUIRE(fs::exists(tmp / "resumed/step_00000003/DONE"));
  run_training(test::short_run_config(tmp / "resumed", 6), std::string());  // "" = the latest checkpoint
  for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
    INFO(f);
    REQUIRE(test::read_file(tmp / ("straight/step_00000006/" + std::string(f))) ==
            test::read_file(tmp / ("resumed/step_00000006/" + std::string(f))));
  }
  const auto a = step_losses(tmp / "straight"), b = step_losses(tmp / "resumed");
  REQUIRE(a.size() == 6);
  REQUIRE(a == b);  // exactly, not approximately
}

TEST_CASE("a resume that changes the model, data shape or quantization is refused", "[checkpoint][bad-input]") {
  test::TempDir tmp;
  run_training(test::short_run_config(tmp / "run", 2));
  RunConfig changed = test::short_run_config(tmp / "run", 4);
  changed.data.seq_len = 96;
  REQUIRE_THROWS_WITH(run_training(changed, std::string()), Catch::Contains("data.seq_len: 64 -> 96"));
  changed = test::short_run_config(tmp / "run", 4);
  changed.quant.weights = StateStorage::Fp32;
  REQUIRE_THROWS_WITH(run_training(changed, std::string()), Catch::Contains("model.safetensors"));
  // A harmless change (more steps, evaluation) is allowed.
  RunConfig harmless = test::short_run_config(tmp / "run", 3);
  harmless.train.log_every = 2;
  REQUIRE(run_training(harmless, std::string()).steps == 1);
}

TEST_CASE("keep_last prunes old checkpoints", "[checkpoint]") {
  test::TempDir tmp;
  RunConfig c = test::short_run_config(tmp / "run", 8);
  c.train.save_every = 2;
  c.train.keep_last = 2;
  c.train.grad_accum = 1;
  run_training(c);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(tmp / "run"))
    if (e.path().filename().string().rfind("step_", 0) == 0) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  REQUIRE(left == std::vector<std::string>{"step_00000006", "step_00000008"});
}

TEST_CASE("incomplete, truncated or foreign checkpoints are refused; resume takes the newest complete one",
          "[checkpoint][bad-input]") {
  test::TempDir tmp;
  RunConfig c = test::short_run_config(tmp / "run", 2);
  c.train.grad_accum = 1;
  run_training(c);
  const std::string good = tmp / "run/step_00000002";
  // A checkpoint whose writing was cut short has no DONE: --resume skips it.
  test::copy_dir(good, tmp / "run/step_00000003");
  fs::remove(tmp / "run/step_00000003/DONE");
  REQUIRE(latest_checkpoint(tmp / "run") == good);
  REQUIRE_THROWS_WITH(run_training(c, tmp / "run/step_00000003"), Catch::Contains("no DONE marker"));

  const std::string bad = tmp / "bad";
  test::copy_dir(good, bad);
  auto state = nlohmann::json::parse(test::read_file(bad + "/trainer_state.json"));
  state["format_version"] = 99;
  test::write_file(bad + "/trainer_state.json", state.dump());
  REQUIRE_THROWS_WITH(run_training(c, bad), Catch::Contains("format version 99"));

  test::copy_dir(good, bad);
  const std::string st = bad + "/model.safetensors";
  fs::resize_file(st, fs::file_size(st) - 100);
  REQUIRE_THROWS_WITH(run_training(c, bad), Catch::Contains("model.safetensors"));
  REQUIRE_THROWS_WITH(latest_checkpoint(tmp / "nothing-here"), Catch::Contains("no complete checkpoint"));
}

TEST_CASE("a run killed while it writes checkpoints leaves the last complete one, and --resume uses it",
          "[checkpoint][cli]") {
  test::TempDir tmp;
  const std::string out = tmp / "run";
  const std::string args = test::tiny_train_args(out) + " --set train.save_every=1 --set train.steps=400";
  // SIGKILL shortly after the second checkpoint: with one every step, the kill usually lands inside a write.
  const auto killed = test::run_shell(std::string(QFT_BINARY) + " " + args + " >/dev/null 2>&1 & pid=$!; " +
                                      "for i in $(seq 1200); do [ -e " + out + "/step_00000002/DONE ] && break; sleep 0.1; done; " +
                                      "sleep 0.3; kill -9 $pid; wait $pid");
  REQUIRE(killed.exit_code == 137);
  const std::string last = latest_checkpoint(out);
  const int step = std::stoi(fs::path(last).filename().string().substr(5));
  INFO("killed after checkpoint " << last);
  const auto resumed = test::run_qft(args + " --set train.steps=" + std::to_string(step + 2) + " --resume");
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  REQUIRE(resumed.output.find("resumed from " + last) != std::string::npos);
}
