// Leaving qft and coming back: export to HF format, model.path naming a checkpoint (init-from), eval and
// inspect of checkpoints, and a checkpoint write that fails.
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "text/tokenizer.h"
#include "test/helpers.h"
#include "trainer/evaluate.h"
#include "trainer/export.h"
#include "trainer/jsonl.h"
#include "trainer/model_source.h"
#include "trainer/train_loop.h"

using namespace qft;
namespace fs = std::filesystem;

namespace {

// Mean eval loss of any model qft can open (HF directory or checkpoint), with weights as stored there.
double eval_loss(const std::string& path) {
  CpuBackend be;
  const auto model = load_model(open_model_source(path), be);
  const Tokenizer tok(path);
  return evaluate_texts(*model, tok, read_jsonl_strings(test::source_path("data/eval.jsonl"), "text"), 64).loss;
}

nlohmann::json json_file(const std::string& path) { return nlohmann::json::parse(test::read_file(path)); }

}  // namespace

TEST_CASE("an export loads in qft with the checkpoint's eval loss: exactly in fp32, within bf16 rounding", "[export]") {
  test::TempDir tmp;
  run_training(test::short_run_config(tmp / "run", 3));
  const std::string ckpt = tmp / "run/step_00000003";
  export_hf(ckpt, tmp / "fp32", {DType::F32, 5'000'000'000});
  const ExportSummary bf16 = export_hf(ckpt, tmp / "bf16", {DType::BF16, 300'000});

  const double want = eval_loss(ckpt);
  // fp32 holds every dequantized INT8 weight exactly, so the loss is the same to the last bit.
  REQUIRE(eval_loss(tmp / "fp32") == want);
  // bf16 keeps 8 significant bits (relative rounding <= 2^-9 per weight); the loss moves by far less.
  const double got = eval_loss(tmp / "bf16");
  INFO("checkpoint " << want << ", bf16 export " << got);
  REQUIRE(std::fabs(got - want) <= 2e-3 * want);

  // HF layout: shards with an index that lists every tensor, torch_dtype set, tokenizer files copied.
  REQUIRE(bf16.shards > 1);
  const HfModel hf(tmp / "bf16");
  REQUIRE(hf.sharded());
  REQUIRE(int(hf.shards().size()) == bf16.shards);
  const auto index = json_file(tmp / "bf16/model.safetensors.index.json");
  const auto specs = llama_tensor_specs(hf.config());
  REQUIRE(index["weight_map"].size() == specs.size());
  REQUIRE(index["metadata"]["total_size"].get<size_t>() == bf16.bytes);
  for (const auto& spec : specs) REQUIRE(hf.dtype_of(spec.name) == DType::BF16);
  REQUIRE(json_file(tmp / "bf16/config.json")["torch_dtype"] == "bfloat16");
  REQUIRE(json_file(tmp / "fp32/config.json")["torch_dtype"] == "float32");
  REQUIRE(fs::exists(tmp / "fp32/model.safetensors"));
  REQUIRE_FALSE(fs::exists(tmp / "fp32/model.safetensors.index.json"));
  REQUIRE(test::read_file(tmp / "bf16/tokenizer.model") == test::read_file(ckpt + "/tokenizer.model"));
  REQUIRE(fs::exists(tmp / "bf16/generation_config.json"));

  // Refusals: a non-empty target, an incomplete checkpoint, a size that is not one.
  REQUIRE_THROWS_WITH(export_hf(ckpt, tmp / "bf16", {}), Catch::Contains("not an empty directory"));
  test::copy_dir(ckpt, tmp / "partial");
  fs::remove(tmp / "partial/DONE");
  REQUIRE_THROWS_WITH(export_hf(tmp / "partial", tmp / "out", {}), Catch::Contains("no DONE marker"));
  REQUIRE_FALSE(fs::exists(tmp / "out"));
  REQUIRE(parse_byte_size("5GB", "x") == 5'000'000'000u);
  REQUIRE(parse_byte_size("2GiB", "x") == size_t(2) << 30);
  REQUIRE(parse_byte_size("1.5mb", "x") == 1'500'000u);
  REQUIRE_THROWS_WITH(parse_byte_size("5XB", "--shard-size"), Catch::Contains("'5XB' is not a size"));
  REQUIRE_THROWS(parse_byte_size("-1GB", "x"));
}

TEST_CASE("a tied-embedding, GQA checkpoint exports without lm_head and matches transformers' layout", "[export]") {
  test::TempDir tmp;
  RunConfig c = test::short_run_config(tmp / "run", 1);
  c.model.path = test::fixture("gqa_tied");
  run_training(c);
  export_hf(tmp / "run/step_00000001", tmp / "hf", {DType::F32, 5'000'000'000});
  const SafeTensorsFile exported(tmp / "hf/model.safetensors");
  REQUIRE(exported.find("lm_head.weight") == nullptr);
  REQUIRE(exported.metadata().at("format") == "pt");
  const HfModel original(test::fixture("gqa_tied"));
  for (const auto& spec : llama_tensor_specs(original.config())) {
    const SafeTensorInfo* t = exported.find(spec.name);
    REQUIRE(t != nullptr);
    REQUIRE(t->shape == spec.shape);
  }
  REQUIRE(exported.tensors().size() == llama_tensor_specs(original.config()).size());
  REQUIRE(eval_loss(tmp / "hf") == eval_loss(tmp / "run/step_00000001"));
}

TEST_CASE("model.path may name a checkpoint: its weights, with a fresh optimizer and schedule", "[export][train]") {
  test::TempDir tmp;
  run_training(test::short_run_config(tmp / "a", 3));
  const std::string ckpt = tmp / "a/step_00000003";
  const double want = eval_loss(ckpt);

  // An lr far below every weight's float spacing leaves fp32 weights untouched (w - 1e-30 == w), so B's weights
  // stay the checkpoint's INT8 weights, dequantized.
  RunConfig b = test::short_run_config(tmp / "b", 2);
  b.model.path = ckpt;
  b.quant.weights = StateStorage::Fp32;
  b.train.lr = 1e-30;
  run_training(b);
  REQUIRE(eval_loss(tmp / "b/step_00000002") == want);
  REQUIRE(test::read_file(tmp / "b/train.log").find("initialized from qft checkpoint " + ckpt + " (step 3)") !=
          std::string::npos);
  REQUIRE(json_file(tmp / "b/step_00000002/trainer_state.json")["step"] == 2);  // a fresh schedule

  // INT8 to INT8 copies the weights bit for bit; the step then re-rounds each value to itself or a neighbour
  // only when q * s / s is not exactly q in float arithmetic, which moves the loss by rounding noise at most.
  RunConfig c = test::short_run_config(tmp / "c", 1);
  c.model.path = ckpt;
  c.train.lr = 1e-30;
  run_training(c);
  const double got = eval_loss(tmp / "c/step_00000001");
  INFO("checkpoint " << want << ", after init-from " << got);
  REQUIRE(std::fabs(got - want) <= 1e-4 * want);
}

TEST_CASE("qft inspect and qft eval accept checkpoints; inspect's rescale count is the metrics' sum", "[export][cli]") {
  test::TempDir tmp;
  const std::string out = tmp / "run";
  const auto trained = test::run_qft(test::tiny_train_args(out) +
                                     " --set train.steps=6 --set train.log_every=1 --set quant.reselect_every=3");
  INFO(trained.output);
  REQUIRE(trained.exit_code == 0);
  int64_t logged = 0;
  const std::string metrics = test::read_file(out + "/metrics.jsonl");
  for (size_t at = 0, nl; (nl = metrics.find('\n', at)) != std::string::npos; at = nl + 1) {
    const auto j = nlohmann::json::parse(metrics.substr(at, nl - at));
    if (j.contains("rescaled_rows")) logged += j["rescaled_rows"].get<int64_t>();
  }

  const auto inspected = test::run_qft("inspect --json " + out + "/step_00000006");
  INFO(inspected.output);
  REQUIRE(inspected.exit_code == 0);
  const auto j = nlohmann::json::parse(inspected.output);
  REQUIRE(j["step"] == 6);
  REQUIRE(j["outlier_reselections"] == 2);
  REQUIRE(j["rescales"].get<int64_t>() == logged);
  REQUIRE(logged > 0);
  const HfModel tiny(test::source_path("models/tiny-llama"));
  REQUIRE(j["matrices"].size() == llama_tensor_specs(tiny.config()).size() - size_t(2 * tiny.config().num_hidden_layers + 1));
  for (const auto& m : j["matrices"]) {
    const int64_t cols = m["shape"][1].get<int64_t>();
    // Outliers per row: round(0.01 * cols), the configured quant.outlier_fraction.
    REQUIRE(m["outlier_fraction"].get<double>() == Approx(std::round(0.01 * double(cols)) / double(cols)));
    REQUIRE(m["scale_min"].get<double>() > 0);
    REQUIRE(m["scale_min"].get<double>() <= m["scale_max"].get<double>());
  }
  const auto text = test::run_qft("inspect " + out + "/step_00000006");
  REQUIRE(text.output.find("row scale min..max") != std::string::npos);

  const auto evaluated = test::run_qft("eval --json --model " + out + "/step_00000006 --data " +
                                       test::source_path("data/eval.jsonl") + " --seq-len 64");
  INFO(evaluated.output);
  REQUIRE(evaluated.exit_code == 0);
  REQUIRE(nlohmann::json::parse(evaluated.output)["loss"].get<double>() ==
          Approx(eval_loss(out + "/step_00000006")).epsilon(1e-12));
}

TEST_CASE("a checkpoint write that fails stops the run with a clear error and keeps the previous checkpoint",
          "[checkpoint][bad-input][cli]") {
  test::TempDir tmp;
  const std::string out = tmp / "run";
  const std::string args = test::tiny_train_args(out) + " --set train.save_every=2";
  REQUIRE(test::run_qft(args + " --set train.steps=2").exit_code == 0);
  // A file-size limit stands in for a full disk: writes past 256 KiB fail with EFBIG (SIGXFSZ ignored).
  const auto failed = test::run_shell("trap '' XFSZ; ulimit -f 256; " + std::string(QFT_BINARY) + " " + args +
                                      " --set train.steps=4 --resume");
  INFO(failed.output);
  REQUIRE(failed.exit_code == 1);
  REQUIRE(failed.output.find("qft: error: ") != std::string::npos);
  REQUIRE(failed.output.find("write failed") != std::string::npos);
  REQUIRE(failed.output.find("the previous checkpoint " + out + "/step_00000002 is intact") != std::string::npos);
  REQUIRE(latest_checkpoint(out) == out + "/step_00000002");
  for (const auto& e : fs::directory_iterator(out)) REQUIRE(e.path().filename().string().find(".tmp") == std::string::npos);
  const auto resumed = test::run_qft(args + " --set train.steps=4 --resume");
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  REQUIRE(latest_checkpoint(out) == out + "/step_00000004");
}
