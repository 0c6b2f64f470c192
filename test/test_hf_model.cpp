#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/hf_model.h"
#include "test/helpers.h"

using namespace qft;
namespace fs = std::filesystem;

namespace {

// Rewrites the single-file fixture's model.safetensors through `edit`, which may add, drop or reshape tensors.
template <class Edit>
std::string edited_copy(const test::TempDir& tmp, Edit edit) {
  const std::string dir = tmp / "model";
  test::copy_dir(test::fixture("gqa_tied"), dir);
  std::vector<std::pair<std::string, HostTensor>> tensors;
  {
    SafeTensorsFile f(dir + "/model.safetensors");
    for (const auto& t : f.tensors()) tensors.emplace_back(t.name, f.read(t.name));
  }
  edit(tensors);
  std::vector<NamedTensor> named;
  for (auto& [n, t] : tensors) named.emplace_back(n, &t);
  write_safetensors(dir + "/model.safetensors", named);
  return dir;
}

}  // namespace

TEST_CASE("every fixture loads and its tensors match config.json", "[hf]") {
  for (const auto& name : test::golden_fixtures()) {
    HfModel m(test::fixture(name));
    int64_t stored = 0;
    for (const auto& s : llama_tensor_specs(m.config())) stored += int64_t(m.read_f32(s.name).size());
    CHECK(stored == m.config().parameter_count());
  }
  HfModel sharded(test::fixture("mha_untied"));
  CHECK(sharded.sharded());
  CHECK(sharded.shards().size() == 12);
  CHECK(sharded.config().parameter_count() == 146240);  // transformers' count, printed by make_fixtures.py
}

TEST_CASE("a missing tensor is named", "[hf][bad-input]") {
  test::TempDir tmp;
  auto dir = edited_copy(tmp, [](auto& ts) {
    std::erase_if(ts, [](const auto& p) { return p.first == "model.layers.1.mlp.up_proj.weight"; });
  });
  REQUIRE_THROWS_WITH(HfModel(dir), Catch::Contains("model.layers.1.mlp.up_proj.weight") && Catch::Contains("missing"));
}

TEST_CASE("an unexpected tensor is named", "[hf][bad-input]") {
  test::TempDir tmp;
  auto dir = edited_copy(tmp, [](auto& ts) { ts.emplace_back("model.layers.7.extra.weight", HostTensor(DType::F32, {2})); });
  REQUIRE_THROWS_WITH(HfModel(dir), Catch::Contains("model.layers.7.extra.weight") && Catch::Contains("not a LlamaForCausalLM"));
}

TEST_CASE("a tensor whose shape disagrees with config.json is named with both shapes", "[hf][bad-input]") {
  test::TempDir tmp;
  auto dir = edited_copy(tmp, [](auto& ts) {
    for (auto& [n, t] : ts)
      if (n == "model.layers.0.self_attn.k_proj.weight") t = HostTensor(DType::F32, {64, 64});
  });
  REQUIRE_THROWS_WITH(HfModel(dir), Catch::Contains("k_proj") && Catch::Contains("[64, 64]") && Catch::Contains("[16, 64]"));
}

TEST_CASE("a pickle-only model is refused and safetensors is named", "[hf][bad-input]") {
  test::TempDir tmp;
  const std::string dir = tmp / "m";
  fs::create_directory(dir);
  fs::copy(test::fixture("gqa_tied/config.json"), dir + "/config.json");
  test::write_file(dir + "/pytorch_model.bin", "PK\x03\x04 not really a pickle");
  REQUIRE_THROWS_AS(HfModel(dir), UnsupportedError);
  REQUIRE_THROWS_WITH(HfModel(dir), Catch::Contains("safetensors") && Catch::Contains("pickle"));
}

TEST_CASE("a shard index that names a tensor its shard lacks is refused", "[hf][bad-input]") {
  test::TempDir tmp;
  const std::string dir = tmp / "m";
  test::copy_dir(test::fixture("mha_untied"), dir);
  auto index = nlohmann::json::parse(test::read_file(dir + "/model.safetensors.index.json"));
  index["weight_map"]["model.norm.weight"] = "model-00001-of-00012.safetensors";  // the wrong shard
  test::write_file(dir + "/model.safetensors.index.json", index.dump());
  REQUIRE_THROWS_WITH(HfModel(dir), Catch::Contains("model.norm.weight") && Catch::Contains("model-00001-of-00012"));
}

TEST_CASE("a missing or broken model directory is named", "[hf][bad-input]") {
  REQUIRE_THROWS_WITH(HfModel("/nonexistent/model"), Catch::Contains("/nonexistent/model"));
  test::TempDir tmp;
  const std::string dir = tmp / "m";
  fs::create_directory(dir);
  REQUIRE_THROWS_WITH(HfModel(dir), Catch::Contains("config.json"));
  test::write_file(dir + "/config.json", "{\"hidden_size\": 64,");
  REQUIRE_THROWS_WITH(HfModel(dir), Catch::Contains("config.json") && Catch::Contains("invalid JSON"));
  fs::copy(test::fixture("gqa_tied/config.json"), dir + "/config.json", fs::copy_options::overwrite_existing);
  REQUIRE_THROWS_WITH(HfModel(dir), Catch::Contains("no model.safetensors"));
}
