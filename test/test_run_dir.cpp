// Run directories (issue 15, classes 1-3, 6-8 and 19): a run writes only into a new or empty directory or its own,
// one process at a time; resumes never replace a checkpoint nor mix runs; a stop request saves; pruning and a run
// stopped before its first checkpoint leave nothing damaged; metrics never repeat a step.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "test/helpers.h"
#include "trainer/checkpoint.h"
#include "trainer/run_dir.h"
#include "trainer/train_loop.h"

using namespace qft;
namespace fs = std::filesystem;

namespace {

// Every file under dir (relative path -> contents): a directory's state, to show that nothing changed.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = test::read_file(e.path().string());
  }
  return out;
}

RunConfig quick_run(const std::string& dir, int steps, int save_every = 0) {
  RunConfig c = test::short_run_config(dir, steps);
  c.train.grad_accum = 1;
  c.train.save_every = save_every;
  c.train.log_every = 1;
  return c;
}

std::vector<int> metric_steps(const std::string& dir) {
  std::vector<int> steps;
  std::istringstream in(test::read_file(dir + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) steps.push_back(j["step"].get<int>());
  }
  return steps;
}

}  // namespace

TEST_CASE("a run refuses an output.dir that holds anything but a qft run, and writes nothing into it",
          "[run-dir][bad-input]") {
  test::TempDir tmp;
  const std::string model = tmp / "model";
  test::copy_dir(test::source_path("models/tiny-llama"), model);
  const auto before = snapshot(model);
  SECTION("output.dir = model.path") {
    RunConfig c = quick_run(model, 1);
    c.model.path = model;
    REQUIRE_THROWS_WITH(run_training(c), Catch::Contains(model) && Catch::Contains("not a qft run"));
  }
  SECTION("a folder holding a config.json") {
    REQUIRE_THROWS_WITH(run_training(quick_run(model, 1)), Catch::Contains("config.json"));
  }
  SECTION("a checkpoint") {
    run_training(quick_run(tmp / "run", 1));
    const std::string ckpt = tmp / "run/step_00000001";
    const auto ckpt_before = snapshot(ckpt);
    REQUIRE_THROWS_WITH(run_training(quick_run(ckpt, 1)), Catch::Contains("not a qft run"));
    REQUIRE(snapshot(ckpt) == ckpt_before);
  }
  CHECK(snapshot(model) == before);  // not even a lock file or a log
}

TEST_CASE("a run directory is written by one process at a time", "[run-dir][bad-input]") {
  test::TempDir tmp;
  const std::string dir = tmp / "run";
  run_training(quick_run(dir, 1));
  const auto before = snapshot(dir);
  {
    const RunDirectory held(dir, std::string());  // holds the lock, as a live run does
    REQUIRE_THROWS_WITH(run_training(quick_run(dir, 2), std::string()),
                        Catch::Contains("in use by another qft process (pid " + std::to_string(::getpid()) + ")"));
    const auto r = test::run_qft(test::tiny_train_args(dir) + " --set train.steps=2 --resume");
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("in use by another qft process") != std::string::npos);
    REQUIRE_NOTHROW(RunDirectory(tmp / "other", std::nullopt));  // the lock is the directory's, not the process's
  }
  auto after = snapshot(dir), expected = before;
  after.erase(".lock");  // holds the pid of its last holder
  expected.erase(".lock");
  CHECK(after == expected);
  run_training(quick_run(dir, 2), std::string());  // released: the run continues
  REQUIRE(fs::exists(dir + "/step_00000002/DONE"));
}

TEST_CASE("a resume never replaces a checkpoint, never mixes two runs, and writes nothing when refused",
          "[run-dir][checkpoint][bad-input]") {
  test::TempDir tmp;
  const std::string x = tmp / "x", y = tmp / "y";
  run_training(quick_run(x, 4, 2));  // step_2 and step_4
  run_training(quick_run(y, 2));
  const auto x_before = snapshot(x), y_before = snapshot(y);
  auto unchanged = [&] {
    auto a = snapshot(x), b = snapshot(y);
    auto xa = x_before, yb = y_before;
    for (auto* m : {&a, &b, &xa, &yb}) m->erase(".lock");
    CHECK(a == xa);
    CHECK(b == yb);
  };
  // An older checkpoint of the same run: continuing from it would write step_3 and replace step_4.
  REQUIRE_THROWS_WITH(run_training(quick_run(x, 6, 2), x + "/step_00000002/"),
                      Catch::Contains("step_00000004 is newer") && Catch::Contains("--set output.dir=NEW"));
  // Another run's checkpoint into this run's directory.
  REQUIRE_THROWS_WITH(run_training(quick_run(y, 6, 2), x + "/step_00000004"), Catch::Contains("mix two runs"));
  // A refused config change: config.json keeps the run's own values.
  RunConfig changed = quick_run(x, 6, 2);
  changed.data.seq_len = 96;
  REQUIRE_THROWS_WITH(run_training(changed, std::string()), Catch::Contains("data.seq_len"));
  // A checkpoint already at train.steps: nothing to do is an error, not "done: 0 steps".
  REQUIRE_THROWS_WITH(run_training(quick_run(x, 3, 2), std::string()),
                      Catch::Contains("already at step 4") && Catch::Contains("Raise train.steps"));
  unchanged();
  // The older checkpoint continues in a new directory (a fork), and the original run is untouched.
  run_training(quick_run(tmp / "fork", 3, 2), x + "/step_00000002/");  // a trailing slash names the same folder
  CHECK(fs::exists(tmp / "fork/step_00000003/DONE"));
  CHECK(metric_steps(tmp / "fork") == std::vector<int>{3});
  unchanged();
}

TEST_CASE("a run stopped before its first checkpoint is taken over by a new run, and cannot be resumed",
          "[run-dir]") {
  test::TempDir tmp;
  const std::string dir = tmp / "run";
  run_training(quick_run(dir, 2));
  fs::remove_all(dir + "/step_00000002");  // as if killed before its first save
  fs::create_directory(dir + "/.step_00000002.tmp.999");  // and in the middle of it
  REQUIRE_THROWS_WITH(run_training(quick_run(dir, 2), std::string()), Catch::Contains("stopped before its first save"));
  const auto r = test::run_qft(test::tiny_train_args(dir) + " --set train.steps=1");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("taken over") != std::string::npos);
  CHECK(r.output.find("metrics.jsonl") != std::string::npos);
  CHECK(!fs::exists(dir + "/.step_00000002.tmp.999"));
  CHECK(metric_steps(dir) == std::vector<int>{1});
  CHECK(fs::exists(dir + "/step_00000001/DONE"));
}

TEST_CASE("a resumed run logs every step once: records after its checkpoint are dropped", "[run-dir][checkpoint]") {
  test::TempDir tmp;
  const std::string dir = tmp / "run";
  run_training(quick_run(dir, 4, 2));
  discard_checkpoint(dir + "/step_00000004");  // as if killed after logging steps 3 and 4 but before saving 4
  REQUIRE(metric_steps(dir) == std::vector<int>{1, 2, 3, 4});
  run_training(quick_run(dir, 5, 2), std::string());
  CHECK(metric_steps(dir) == std::vector<int>{1, 2, 3, 4, 5});
}

TEST_CASE("pruning a checkpoint never leaves a step folder with DONE but without its files, whenever it is killed",
          "[run-dir][checkpoint]") {
  test::TempDir tmp;
  std::mt19937 rng(std::random_device{}());
  int interrupted = 0;
  for (int attempt = 0; attempt < 8; ++attempt) {
    const fs::path dir = tmp / ("run" + std::to_string(attempt));
    for (const char* name : {"step_00000001", "step_00000002", "step_00000003"}) {
      fs::create_directories(dir / name);
      // Many files make the deletion long enough for the kill to land inside it.
      for (int f = 0; f < 4000; ++f) test::write_file((dir / name / ("f" + std::to_string(f))).string(), "x");
      test::write_file((dir / name / "DONE").string(), "");
    }
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      prune_checkpoints(dir.string(), 2, "");
      _exit(0);
    }
    ::usleep(useconds_t(std::uniform_int_distribution<int>(0, 30000)(rng)));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    interrupted += WIFSIGNALED(status);
    const fs::path old = dir / "step_00000001";
    INFO("attempt " << attempt);
    // Either still whole (not yet pruned) or no longer a step folder at all.
    if (fs::exists(old)) CHECK(std::distance(fs::directory_iterator(old), fs::directory_iterator()) == 4001);
    CHECK(complete_checkpoints(dir.string()).size() >= 2);
  }
  INFO(interrupted << " of 8 prunes were killed");
}

TEST_CASE("SIGTERM and a first Ctrl-C finish the step, save a checkpoint and exit 128 + signal; --resume continues",
          "[run-dir][cli]") {
  test::TempDir tmp;
  for (const auto& [sig, code] : {std::pair{"TERM", 143}, std::pair{"INT", 130}}) {
    const std::string out = tmp / (std::string("run_") + sig);
    const std::string args = test::tiny_train_args(out) + " --set train.log_every=1";
    // The shell starts qft in the background, waits for its first logged step, and signals it.
    const auto stopped = test::run_shell("exec 2>&1; set -m; " + std::string(QFT_BINARY) + " " + args + " --set train.steps=100000 & pid=$!; " +
                                         "for i in $(seq 600); do grep -q loss " + out + "/metrics.jsonl 2>/dev/null && break; sleep 0.1; done; " +
                                         "kill -" + sig + " $pid; wait $pid");
    INFO(stopped.output);
    REQUIRE(stopped.exit_code == code);
    CHECK(stopped.output.find(std::string("stopped by SIG") + sig) != std::string::npos);
    CHECK(stopped.output.find("--resume") != std::string::npos);
    const std::string last = latest_checkpoint(out);
    const int step = *checkpoint_step(fs::path(last).filename().string());
    const auto resumed = test::run_qft(args + " --set train.steps=" + std::to_string(step + 1) + " --resume");
    INFO(resumed.output);
    CHECK(resumed.exit_code == 0);
    CHECK(resumed.output.find("resumed from " + last) != std::string::npos);
  }
}
