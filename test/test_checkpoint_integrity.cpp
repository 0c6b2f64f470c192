// Checkpoint integrity (issue 15, classes 9-11): any byte changed in any file is refused on load by the manifest's
// content hashes; behind the hashes (a forger can rewrite DONE), every index structure and value is validated, the
// architecture must match the tensors exactly, and trainer_state.json is checked field by field.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "model/safetensors.h"
#include "test/helpers.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_manifest.h"
#include "trainer/train_loop.h"

using namespace qft;
namespace fs = std::filesystem;

namespace {

// One short INT8 run's checkpoint, made once per test case.
struct Checkpoint {
  test::TempDir tmp;
  RunConfig cfg;
  std::string dir;
  Checkpoint() : cfg(test::short_run_config(tmp / "run", 2)) {
    cfg.train.grad_accum = 1;
    cfg.train.save_every = 1;  // step_1 too: a file from another step
    run_training(cfg);
    dir = tmp / "run/step_00000002";
  }
  // A copy to damage, and the run config that resumes it into a new directory (a fork).
  std::string copy(const std::string& name) const {
    const std::string to = tmp / name;
    fs::remove_all(to);
    test::copy_dir(dir, to);
    return to;
  }
  void resume(const std::string& from) const {
    RunConfig c = cfg;
    c.train.steps = 3;
    c.output.dir = from + "_resumed";
    run_training(c, from);
  }
};

// Rewrites one tensor of a safetensors file (all others kept) with `edit` applied to a copy of it.
void edit_tensor(const std::string& path, const std::string& name, const std::function<void(HostTensor&)>& edit) {
  std::vector<HostTensor> tensors;
  std::vector<std::string> names;
  {
    const SafeTensorsFile f(path);
    for (const SafeTensorInfo& t : f.tensors()) {
      names.push_back(t.name);
      tensors.push_back(f.read(t.name));
      if (t.name == name) edit(tensors.back());
    }
  }
  REQUIRE(std::find(names.begin(), names.end(), name) != names.end());
  std::vector<NamedTensor> named;
  for (size_t i = 0; i < names.size(); ++i) named.emplace_back(names[i], &tensors[i]);
  write_safetensors(path, named, {{"format", "qft"}});
}

// What a forger does after an edit: a fresh manifest, so that only the validation behind the hashes can refuse.
void rehash(const std::string& dir) {
  fs::remove(dir + "/DONE");
  write_manifest(dir);
}

const std::string kMatrix = "model.layers.0.mlp.down_proj.weight";

}  // namespace

TEST_CASE("a checkpoint with any single byte changed in any file is refused on load", "[checkpoint][integrity][bad-input]") {
  const Checkpoint ck;
  const uint64_t seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (const auto& e : fs::directory_iterator(ck.dir)) {
    const std::string name = e.path().filename().string();
    const std::string bad = ck.copy("flip_" + name);
    std::string bytes = test::read_file(bad + "/" + name);
    if (bytes.empty()) continue;
    const size_t at = std::uniform_int_distribution<size_t>(0, bytes.size() - 1)(rng);
    bytes[at] = char(bytes[at] ^ (1 << std::uniform_int_distribution<int>(0, 7)(rng)));
    test::write_file(bad + "/" + name, bytes);
    INFO(name << ", byte " << at);
    REQUIRE_THROWS_AS(ck.resume(bad), Error);
  }
  // A file added, removed or taken from another step is refused too.
  const std::string added = ck.copy("added");
  test::write_file(added + "/tokenizer.json", "{}");
  REQUIRE_THROWS_WITH(ck.resume(added), Catch::Contains("tokenizer.json is not one of the checkpoint's files"));
  const std::string removed = ck.copy("removed");
  fs::remove(removed + "/optimizer.safetensors");
  REQUIRE_THROWS_WITH(ck.resume(removed), Catch::Contains("optimizer.safetensors is missing"));
  const std::string older = ck.copy("older");
  fs::copy_file(ck.tmp / "run/step_00000001/model.safetensors", older + "/model.safetensors", fs::copy_options::overwrite_existing);
  REQUIRE_THROWS_WITH(ck.resume(older), Catch::Contains("model.safetensors's contents differ"));
  ck.resume(ck.copy("intact"));  // an unchanged copy is accepted: the refusals above are not vacuous
}

TEST_CASE("tampered outlier structures are refused before any kernel indexes memory with them",
          "[checkpoint][integrity][bad-input]") {
  const Checkpoint ck;
  auto refused = [&](const std::string& part, const std::function<void(HostTensor&)>& edit, const std::string& what) {
    const std::string bad = ck.copy("bad");
    edit_tensor(bad + "/model.safetensors", kMatrix + "." + part, edit);
    rehash(bad);
    INFO(part);
    REQUIRE_THROWS_WITH(ck.resume(bad), Catch::Contains(kMatrix) && Catch::Contains(what));
    // eval, export, generate and inspect load the same way: exit 1 naming the tensor, never a crash.
    for (const std::string& args : {"eval --model " + bad + " --data " + test::source_path("data/eval.jsonl"),
                                    "export --checkpoint " + bad + " --out " + (ck.tmp / "export"),
                                    "generate --model " + bad + " --prompt hi --max-new-tokens 2", "inspect " + bad}) {
      const auto r = test::run_qft(args);
      INFO(args << "\n" << r.output);
      CHECK(r.exit_code == 1);
      CHECK(r.output.find(kMatrix) != std::string::npos);
    }
  };
  refused("row_ptr", [](HostTensor& t) { t.data<int32_t>()[3] = 1 << 30; }, "row_ptr");
  refused("row_ptr", [](HostTensor& t) { t.data<int32_t>()[1] = -5; }, "row_ptr");
  refused("col", [](HostTensor& t) { t.bytes[0] = 0xff, t.bytes[1] = 0xff; }, "outlier column");
  refused("scale", [](HostTensor& t) { t.data<float>()[0] = -t.data<float>()[0]; }, "not positive and finite");
  refused("scale", [](HostTensor& t) { t.data<float>()[2] = NAN; }, "not positive and finite");
  refused("val", [](HostTensor& t) { t.data<float>()[0] = INFINITY; }, "outlier value of row 0 is not finite");
  refused("q", [](HostTensor& t) { t.data<int8_t>()[0] = t.data<int8_t>()[0] == -128 ? 1 : -128; }, "outlier slots");
}

TEST_CASE("non-finite state, a shape-[0] tensor, and an architecture that does not match the tensors are refused",
          "[checkpoint][integrity][bad-input]") {
  const Checkpoint ck;
  SECTION("NaN momentum") {
    const std::string bad = ck.copy("bad");
    const SafeTensorsFile f(bad + "/optimizer.safetensors");
    std::string name;
    for (const auto& t : f.tensors()) {
      if (t.dtype == DType::F32 && name.empty()) name = t.name;
    }
    edit_tensor(bad + "/optimizer.safetensors", name, [](HostTensor& t) { t.data<float>()[0] = NAN; });
    rehash(bad);
    REQUIRE_THROWS_WITH(ck.resume(bad), Catch::Contains(name));
  }
  SECTION("NaN norm weights") {
    const std::string bad = ck.copy("bad");
    edit_tensor(bad + "/model.safetensors", "model.norm.weight", [](HostTensor& t) { t.data<float>()[0] = NAN; });
    rehash(bad);
    REQUIRE_THROWS_WITH(ck.resume(bad), Catch::Contains("model.norm.weight") && Catch::Contains("NaN"));
  }
  SECTION("rescale counts of shape [0]: inspect reads no further") {
    const std::string bad = ck.copy("bad");
    edit_tensor(bad + "/optimizer.safetensors", "rescales." + kMatrix, [](HostTensor& t) {
      t.shape = {0};
      t.bytes.clear();
    });
    rehash(bad);
    const auto r = test::run_qft("inspect " + bad);
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("rescales." + kMatrix) != std::string::npos);
  }
  SECTION("config.json edited to fewer layers") {
    const std::string bad = ck.copy("bad");
    auto config = nlohmann::json::parse(test::read_file(bad + "/config.json"));
    config["num_hidden_layers"] = config["num_hidden_layers"].get<int>() - 1;
    test::write_file(bad + "/config.json", config.dump());
    REQUIRE_THROWS_WITH(ck.resume(bad), Catch::Contains("config.json has"));
    rehash(bad);  // even with a matching manifest, the extra layer's tensors do not belong to the model
    const auto r = test::run_qft("export --checkpoint " + bad + " --out " + (ck.tmp / "export"));
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("is not part of the model its config.json describes") != std::string::npos);
    CHECK(!fs::exists(ck.tmp / "export"));
  }
}

TEST_CASE("trainer_state.json is validated field by field and against its folder", "[checkpoint][integrity][bad-input]") {
  const Checkpoint ck;
  const std::string where = ck.dir + "/trainer_state.json";
  const nlohmann::json good = nlohmann::json::parse(test::read_file(where));
  REQUIRE(parse_trainer_state(good.dump(), where, 2).state.step == 2);
  auto refused = [&](const std::string& key, const nlohmann::json& value, const std::string& what, int folder = 2) {
    nlohmann::json j = good;
    if (value.is_discarded()) j.erase(key);
    else j[key] = value;
    INFO(key << " = " << value.dump());
    REQUIRE_THROWS_WITH(parse_trainer_state(j.dump(), where, folder), Catch::Contains(where) && Catch::Contains(what));
  };
  refused("step", -1, "'step' is -1");
  refused("step", 2.5, "'step' is 2.5");
  refused("step", "2", "'step'");
  refused("step", 4294967298ull, "'step'");
  refused("step", 3, "says step 3 but its folder is step_2");
  refused("step", 2, "says step 2 but its folder is step_5", 5);
  refused("tokens", -10, "'tokens'");
  refused("epoch", -1, "'epoch'");
  refused("row", 0.5, "'row'");
  refused("outlier_reselections", -2, "'outlier_reselections'");
  refused("settings_hash", "0000000000000000", "'settings_hash' does not match");
  refused("seed", 12345, "'seed' differs");
  refused("step", nlohmann::json(nlohmann::json::value_t::discarded), "lacks 'step'");
  refused("config", nlohmann::json::array(), "lacks its run's 'config'");
  nlohmann::json beyond = good;
  beyond["config"]["train"]["steps"] = 1;
  beyond["settings_hash"] = good["settings_hash"];
  REQUIRE_THROWS_WITH(parse_trainer_state(beyond.dump(), where, 2), Catch::Contains("beyond its run's train.steps"));
  // A config without its train section (found by fuzz_trainer_state): refused, never read past its end.
  nlohmann::json no_train = good;
  no_train["config"].erase("train");
  REQUIRE_THROWS_WITH(parse_trainer_state(no_train.dump(), where, 2), Catch::Contains(where));
  // Through the loader: a state that would make step 3 overwrite step_5 is refused by folder name.
  const std::string renamed = ck.tmp / "run/step_00000005";
  fs::rename(ck.dir, renamed);
  REQUIRE_THROWS_WITH(read_checkpoint_info(renamed), Catch::Contains("its folder is step_5"));
}
