// Hostile and careless input to the CLI (issue 15, classes 4 and 13-18): outputs never clobber a file qft did not
// create; absurd sizes, special files, symlink loops and folders where files belong are refused with exit 1 and the
// path or key named, before anything is allocated; silently accepted values are refused; messages say what is wrong
// in the user's terms; stdout carries only results.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/safetensors.h"
#include "test/helpers.h"

using namespace qft;
using test::expect_cli_error;
using test::run_qft;
namespace fs = std::filesystem;

namespace {

const std::string& tiny() {
  static const std::string path = test::source_path("models/tiny-llama");
  return path;
}

std::string plan_with(const std::string& sets) {
  return "plan --config " + test::source_path("configs/tiny.json") + " --set model.path=" + tiny() + " " + sets;
}

}  // namespace

TEST_CASE("outputs never replace a file qft did not create", "[cli][bad-input]") {
  test::TempDir tmp;
  const std::string data = test::source_path("data/eval.jsonl");
  SECTION("eval --save-logits refuses an existing file, the model's own weights included") {
    const std::string model = tmp / "m";
    test::copy_dir(tiny(), model);
    const std::string weights = test::read_file(model + "/model.safetensors");
    expect_cli_error("eval --model " + model + " --data " + data + " --save-logits " + model + "/model.safetensors",
                     "already exists");
    CHECK(test::read_file(model + "/model.safetensors") == weights);
    test::write_file(tmp / "logits.safetensors", "mine");
    CHECK(run_qft("eval --model " + model + " --data " + data + " --save-logits " + (tmp / "logits.safetensors") + " --force").exit_code == 0);
    CHECK(SafeTensorsFile(tmp / "logits.safetensors").find("logits") != nullptr);
  }
  SECTION("export's temporary folder is its own: a user's folder of the old fixed name survives") {
    const std::string ckpt_run = tmp / "run";
    REQUIRE(run_qft(test::tiny_train_args(ckpt_run) + " --set train.steps=1").exit_code == 0);
    fs::create_directories(tmp / "x/.tmp_export_hf");
    test::write_file(tmp / "x/.tmp_export_hf/notes.txt", "keep me");
    const auto r = run_qft("export --checkpoint " + ckpt_run + "/step_00000001 --out " + (tmp / "x/hf"));
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    CHECK(test::read_file(tmp / "x/.tmp_export_hf/notes.txt") == "keep me");
    for (const auto& e : fs::directory_iterator(tmp / "x")) CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
  }
}

TEST_CASE("absurd sizes are refused by key and limit before anything is allocated", "[cli][bad-input]") {
  const std::string arch = R"(--set 'model.path=' --set 'model.arch={"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":)";
  expect_cli_error(plan_with(arch + R"(2147483647}')"), "'vocab_size': must be an integer in [1, 4194304]");
  expect_cli_error(plan_with(R"(--set 'model.path=' --set 'model.arch={"hidden_size":1000000000,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100}')"),
                   "'hidden_size': must be an integer in [1, 131072]");
  expect_cli_error(plan_with(R"(--set 'model.path=' --set 'model.arch={"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1000000,"num_attention_heads":4,"vocab_size":100}')"),
                   "'num_hidden_layers'");
  expect_cli_error(plan_with("--set data.seq_len=1000000000"), "tokens per micro-batch");
  expect_cli_error(plan_with("--set train.batch_size=2147483647"), "tokens per micro-batch");
  const auto accum = run_qft(plan_with("--set train.grad_accum=2147483647 --cpu"));
  INFO(accum.output);
  CHECK(accum.exit_code == 0);  // any number of micro-batches needs the memory of two
  expect_cli_error("generate --model " + tiny() + " --prompt hi --max-new-tokens 2147483647", "exceed the model's context of 512");
}

TEST_CASE("special files, symlink loops and folders where files belong are bad input, named, exit 1",
          "[cli][bad-input]") {
  test::TempDir tmp;
  const std::string data = test::source_path("data/eval.jsonl");
  REQUIRE(::mkfifo((tmp / "fifo").c_str(), 0600) == 0);
  // `timeout` turns a hang into exit 124, which fails the exit-1 check below instead of hanging the suite.
  expect_cli_error("eval --model " + tiny() + " --data " + (tmp / "fifo"), "fifo");
  expect_cli_error("config --config /dev/zero", "/dev/zero");
  expect_cli_error("train --config " + (tmp / "fifo"), "fifo");
  const std::string fifo_model = tmp / "fifo_model";
  test::copy_dir(tiny(), fifo_model);
  fs::remove(fifo_model + "/model.safetensors");
  REQUIRE(::mkfifo((fifo_model + "/model.safetensors").c_str(), 0600) == 0);
  expect_cli_error("inspect " + fifo_model, "model.safetensors");
  fs::create_symlink(tmp / "loop_b", tmp / "loop_a");
  fs::create_symlink(tmp / "loop_a", tmp / "loop_b");
  expect_cli_error("inspect " + (tmp / "loop_a"), "loop_a");
  expect_cli_error(test::tiny_train_args(tmp / "loop_a") + " --set train.steps=1", "loop_a");
  for (const char* file : {"tokenizer.model", "model.safetensors", "config.json"}) {
    const std::string dir = tmp / (std::string("dir_for_") + file);
    test::copy_dir(tiny(), dir);
    fs::remove(dir + "/" + file);
    fs::create_directory(dir + "/" + file);
    expect_cli_error("eval --model " + dir + " --data " + data, dir + "/" + file);
  }
  expect_cli_error("train --config " + tmp.path().string(), "is a directory");
}

TEST_CASE("input that used to be accepted silently is refused", "[cli][bad-input]") {
  test::TempDir tmp;
  const std::string data = test::source_path("data/eval.jsonl");
  SECTION("trailing bytes after a config") {
    test::write_file(tmp / "c.json", test::read_file(test::source_path("configs/tiny.json")) + "\n{}");
    expect_cli_error("config --config " + (tmp / "c.json"), "c.json");
  }
  SECTION("a model with NaN weights gives no loss of null and exit 0") {
    const std::string model = tmp / "m";
    test::copy_dir(tiny(), model);
    std::vector<HostTensor> tensors;
    std::vector<NamedTensor> named;
    {
      const SafeTensorsFile f(model + "/model.safetensors");
      tensors.reserve(f.tensors().size());
      for (const auto& t : f.tensors()) tensors.push_back(f.read(t.name));
      for (size_t i = 0; i < tensors.size(); ++i) named.emplace_back(f.tensors()[i].name, &tensors[i]);
    }
    for (auto& t : tensors) {
      if (t.dtype == DType::BF16) t.data<uint16_t>()[0] = 0x7fc0;  // NaN
      if (t.dtype == DType::F32) t.data<float>()[0] = NAN;
    }
    write_safetensors(model + "/model.safetensors", named);
    expect_cli_error("eval --json --model " + model + " --data " + data, "NaN or infinite");
  }
  SECTION("NaN sampling settings and ranges print short bounds") {
    const auto r = run_qft("generate --model " + tiny() + " --prompt hi --temperature nan");
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("nan is not a number >= 0") != std::string::npos);
    const auto p = run_qft("generate --model " + tiny() + " --prompt hi --top-p nan");
    CHECK(p.exit_code == 1);
    const auto big = run_qft("eval --model " + tiny() + " --data " + data + " --seq-len -3");
    CHECK(big.exit_code == 1);
    CHECK(big.output.find("179769") == std::string::npos);  // no 309-digit bound
  }
  SECTION("config --docs takes no --set") { expect_cli_error("config --docs --set bogus=1", "--docs"); }
  SECTION("an ill-typed tokenizer_config.json") {
    const std::string model = tmp / "m";
    test::copy_dir(tiny(), model);
    auto cfg = nlohmann::json::parse(test::read_file(model + "/tokenizer_config.json"));
    cfg["add_bos_token"] = "yes";
    test::write_file(model + "/tokenizer_config.json", cfg.dump());
    expect_cli_error("eval --model " + model + " --data " + data, "'add_bos_token': must be true or false");
    cfg["add_bos_token"] = true;
    cfg["tokenizer_class"] = 5;
    test::write_file(model + "/tokenizer_config.json", cfg.dump());
    expect_cli_error("eval --model " + model + " --data " + data, "'tokenizer_class': must be a string");
  }
}

TEST_CASE("messages say what is wrong in the user's terms", "[cli][bad-input]") {
  test::TempDir tmp;
  const std::string data = test::source_path("data/eval.jsonl");
  SECTION("a tokenizer larger than the model's vocabulary, at load") {
    const std::string model = tmp / "m";
    test::copy_dir(tiny(), model);
    auto cfg = nlohmann::json::parse(test::read_file(model + "/config.json"));
    cfg["vocab_size"] = 400;
    test::write_file(model + "/config.json", cfg.dump());
    expect_cli_error("eval --model " + model + " --data " + data, "tokenizer.model: has 500 tokens");
  }
  SECTION("every example truncated away") {
    std::string lines;
    for (int i = 0; i < 3; ++i) lines += R"({"instruction": ")" + std::string(400, 'a') + R"(", "input": "", "output": "b"})" "\n";
    test::write_file(tmp / "long.jsonl", lines);
    expect_cli_error(test::tiny_train_args(tmp / "run") + " --set data.train=" + (tmp / "long.jsonl") + " --set data.seq_len=16",
                     "lost every answer token to truncation at data.seq_len=16");
  }
  SECTION("a run folder where a model or checkpoint belongs, an HF folder given to --resume") {
    REQUIRE(run_qft(test::tiny_train_args(tmp / "run") + " --set train.steps=1").exit_code == 0);
    expect_cli_error("inspect " + (tmp / "run"), "is a qft run directory");
    expect_cli_error("export --checkpoint " + (tmp / "run") + " --out " + (tmp / "e"), "the newest is " + (tmp / "run/step_00000001"));
    expect_cli_error(test::tiny_train_args(tmp / "fork") + " --resume " + tiny(), "is not a qft checkpoint");
  }
  SECTION("an unknown command is named") { expect_cli_error("trian --config x", "unknown command 'trian'"); }
  SECTION("LoRA settings out of range, unknown or contradictory") {
    const std::string run = test::tiny_train_args(tmp / "run") + " --set train.method=lora";
    expect_cli_error(run + " --set lora.targets='[\"q\",\"qkv\"]'", "'qkv' is not one of: q, k, v, o, gate, up, down");
    expect_cli_error(run + " --set lora.targets='[\"q\",\"q\"]'", "'q' is listed twice");
    expect_cli_error(run + " --set lora.targets='[]'", "lora.targets");
    expect_cli_error(run + " --set lora.bits=5", "lora.bits': must be 4, 6 or 8");
    expect_cli_error(run + " --set lora.rank=0", "lora.rank': must lie in [1, 4096]");
    expect_cli_error(run + " --set lora.group=2000", "lora.group': must lie in [1, 1024]");
    expect_cli_error(test::tiny_train_args(tmp / "run") + " --set train.optimizer=adamw",
                     "adamw keeps two fp32 moments per parameter; qft offers it for train.method=lora");
    REQUIRE_FALSE(fs::exists(tmp / "run"));
  }
  SECTION("export --lora of a checkpoint without adapters") {
    REQUIRE(run_qft(test::tiny_train_args(tmp / "run") + " --set train.steps=1").exit_code == 0);
    expect_cli_error("export --checkpoint " + (tmp / "run/step_00000001") + " --out " + (tmp / "e") + " --lora adapter",
                     "has no LoRA adapters");
    REQUIRE_FALSE(fs::exists(tmp / "e"));
  }
}

TEST_CASE("stdout carries only the result, for every command", "[cli]") {
  test::TempDir tmp;
  REQUIRE(run_qft(test::tiny_train_args(tmp / "run") + " --set train.steps=1").exit_code == 0);
  const std::string ckpt = tmp / "run/step_00000001";
  const auto gen = test::run_shell("(" + std::string(QFT_BINARY) + " generate --model " + ckpt + " --prompt hi --max-new-tokens 4 2>/dev/null)");
  CHECK(gen.output.find("[info]") == std::string::npos);
  CHECK(gen.output.find("checkpoint") == std::string::npos);
  const auto train = test::run_shell("(" + std::string(QFT_BINARY) + " " + test::tiny_train_args(tmp / "run2") + " --set train.steps=1 2>/dev/null)");
  CHECK(train.output.empty());
  const auto eval = test::run_shell("(" + std::string(QFT_BINARY) + " eval --json --model " + ckpt + " --data " +
                                    test::source_path("data/eval.jsonl") + " 2>/dev/null)");
  CHECK(nlohmann::json::parse(eval.output).contains("loss"));
}
