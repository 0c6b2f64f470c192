// The memory planner against the allocator's measured peak, the 7B targets, and the refusal to start.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "cpu/cpu_backend.h"
#include "model/hf_model.h"
#include "model/llama.h"
#include "test/helpers.h"
#include "trainer/plan.h"
#include "trainer/train_step.h"

using namespace qft;

// The CUDA plan assumes bf16 activations; the CPU backend storing bf16 measures what the GPU allocates.
TEST_CASE("the plan matches the CPU allocator's measured peak within 5%, fp32 and bf16 activations", "[plan]") {
  std::mt19937_64 rng(test::fresh_seed());
  for (const auto& name : test::golden_fixtures()) {
    for (const auto& [quant, accum, act] : std::vector<std::tuple<std::string, int, DType>>{
             {"int8", 1, DType::F32}, {"int8", 2, DType::F32}, {"fp32", 1, DType::F32}, {"int8", 2, DType::BF16}}) {
      const bool as_cuda = act == DType::BF16;
      RunConfig cfg;
      cfg.model.path = test::fixture(name);
      cfg.data.seq_len = 40;
      cfg.data.packing = true;
      cfg.train.batch_size = 3;
      cfg.train.grad_accum = accum;
      cfg.quant.weights = cfg.quant.momentum = cfg.quant.grad_dtype = *parse_enum<StateStorage>(quant);
      const HfModel hf(cfg.model.path);
      const MemoryPlan plan = plan_memory(cfg, plan_architecture(cfg), plan_target(as_cuda ? Device::Cuda : Device::Cpu));

      CpuBackend be(act);
      Buffer workspace;  // what the CUDA backend holds from its start
      if (as_cuda) workspace = be.alloc(plan_target(Device::Cuda).workspace_bytes, "GEMM workspace");
      LlamaModel model(hf, be, WeightStorage{quant == "int8", cfg.quant.outlier_fraction});
      OptimizerSettings os;
      os.momentum_int8 = os.grad_int8 = quant == "int8";
      Optimizer opt(model, os);
      std::unique_ptr<GradAccumulators> acc;
      if (accum > 1) acc = std::make_unique<GradAccumulators>(model, os);
      std::uniform_int_distribution<int32_t> tok(3, hf.config().vocab_size - 1);
      std::vector<Batch> micro;
      for (int m = 0; m < accum; ++m) {
        std::vector<int32_t> ids(size_t(cfg.train.batch_size * cfg.data.seq_len));
        for (auto& t : ids) t = tok(rng);
        Batch b = Batch::from_labels(cfg.train.batch_size, cfg.data.seq_len, ids, ids);
        b.doc_start.assign(ids.size(), 0);
        micro.push_back(b);
      }
      train_step(model, opt, acc.get(), micro, 1e-3f, std::nullopt);
      const double measured = double(be.memory().peak_bytes);
      INFO(name << " " << quant << " grad_accum " << accum << " " << dtype_name(act) << ": plan " << plan.peak_bytes
                << " measured " << measured);
      REQUIRE(plan.total_bytes == plan.peak_bytes + (as_cuda ? plan.allowance_bytes : 0));
      REQUIRE(std::fabs(double(plan.peak_bytes) - measured) <= 0.05 * measured);
      REQUIRE(plan.state_bytes == model.weight_bytes() + opt.state_bytes() + (acc ? acc->bytes() : 0));
    }
  }
}

TEST_CASE("qft plan for LLaMA-2-7B at seq_len 2048 meets the targets", "[plan][cli]") {
  const auto r = test::run_qft("plan --json --config " + test::source_path("configs/llama7b.json") +
                               " --set model.path=/nonexistent/before-download");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.output);
  CHECK(j["parameters"] == 6738415616LL);
  CHECK(j["state_bytes_per_param"].get<double>() <= 2.2);
  CHECK(j["total_bytes"].get<double>() <= 16.0 * (1ull << 30));
  CHECK(j["allowance_bytes"].get<double>() > 0);
  std::set<std::string> names;
  for (const auto& b : j["buffers"]) names.insert(b["name"].get<std::string>());
  // (The peak falls in attention's backward, its scratch and fp32 dk, dv live, with no dequantized matrix.)
  for (const char* want : {"weights", "weight outliers", "Lion momentum", "layer-input stack", "layer activations",
                           "layer gradients", "GEMM workspace", "CUDA context + libraries"}) {
    INFO(want);
    CHECK(names.count(want) == 1);
  }
  for (const char* cfg : {"configs/llama13b.json", "configs/llama3-8b.json", "configs/llama3.2-1b.json", "configs/llama3.2-3b.json",
                          "configs/llama3.1-8b.json", "configs/smollm2-135m.json"}) {
    const auto p = test::run_qft("plan --config " + test::source_path(cfg));
    CHECK(p.exit_code == 0);
    CHECK(p.output.find("bytes/parameter") != std::string::npos);
  }
  const auto none = test::run_qft("plan --config " + test::source_path("configs/llama7b.json") +
                                  " --set model.arch=null --set model.path=/nonexistent");
  CHECK(none.exit_code == 1);
  CHECK(none.output.find("model.arch") != std::string::npos);
}

// Issue targets for long context (README, "Long context"): qft plan, CUDA, batch 1, each config's defaults.
TEST_CASE("qft plan meets the long-context targets", "[plan][cli]") {
  auto plan = [](const std::string& config, const std::string& extra) {
    const auto r = test::run_qft("plan --json --config " + test::source_path(config) +
                                 " --set model.path=/nonexistent/before-download --set train.batch_size=1" + extra);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    return nlohmann::json::parse(r.output);
  };
  const double gib = double(1ull << 30);
  CHECK(plan("configs/llama3.1-8b.json", " --set data.seq_len=8192")["total_bytes"].get<double>() <= 20 * gib);
  CHECK(plan("configs/llama7b.json", " --set data.seq_len=32768")["total_bytes"].get<double>() <= 24 * gib);
  // The MLP in pieces (model/llama_mlp.cpp) brings Llama-3.1-8B at 32k onto a 24 GiB card without the offload.
  const auto long8b = plan("configs/llama3.1-8b.json", " --set data.seq_len=32768 --gpu-memory 24");
  CHECK(long8b["fits"] == true);
  CHECK(long8b["host_bytes"] == 0);
  bool pieces = false;
  for (const auto& b : long8b["buffers"]) pieces |= b["name"] == "down-projection gradient";
  CHECK(pieces);
  // At 2048 tokens the model state and the CUDA allowance leave 0.42 GiB: the stack goes to host memory, and on a
  // 14 GiB card the backward dequantizes each matrix again rather than keep a layer's.
  const auto small = plan("configs/llama7b.json", " --set train.stack_offload=true --gpu-memory 14");
  CHECK(small["fits"] == true);
  CHECK(small["total_bytes"].get<double>() <= 14 * gib);
  CHECK(small["keep_layer_weights"] == false);
  CHECK(small["host_bytes"].get<double>() >= 32.0 * 2048 * 4096);  // the int8 stack: a byte per value, 32 layers
  const auto kept = plan("configs/llama7b.json", " --gpu-memory 14");
  CHECK(kept["fits"] == false);
  CHECK(kept["host_bytes"] == 0);
}

// dist.world_size=N plans one rank of N: its share of the momentum and accumulators (the last rank's, which holds
// the most rows), and what it receives per step: (N - 1) / N of the fp32 gradient and of the INT8 rows.
TEST_CASE("qft plan with dist.world_size plans one rank's memory and traffic", "[plan][cli][dist]") {
  auto plan = [](int world, int accum = 1) {
    const auto r = test::run_qft("plan --json --config " + test::source_path("configs/llama7b.json") +
                                 " --set model.path=/nonexistent --set dist.world_size=" + std::to_string(world) +
                                 " --set train.grad_accum=" + std::to_string(accum));
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    return nlohmann::json::parse(r.output);
  };
  auto item = [](const nlohmann::json& j, const std::string& name) {
    for (const auto& b : j["buffers"]) {
      if (b["name"] == name) return b["bytes"].get<double>();
    }
    return 0.0;
  };
  const auto one = plan(1), eight = plan(8);
  const double P = one["parameters"].get<double>();
  CHECK(one["world_size"] == 1);
  CHECK(one["gradient_bytes_per_step"] == 0);
  CHECK(eight["world_size"] == 8);
  CHECK(item(eight, "Lion momentum") == Approx(item(one, "Lion momentum") / 8).epsilon(0.01));
  // One micro-batch per rank: the ranks' partials are folded chunk by chunk, no accumulator persists.
  CHECK(item(eight, "gradient accumulators") < 1 << 20);
  CHECK(item(plan(8, 2), "gradient accumulators") == Approx(item(plan(1, 2), "gradient accumulators") / 8).epsilon(0.01));
  CHECK(eight["gradient_bytes_per_step"].get<double>() == Approx(4 * P * 7 / 8).epsilon(0.01));
  CHECK(eight["weight_bytes_per_step"].get<double>() == Approx(P * 7 / 8).epsilon(0.06));  // + scales, outliers
  CHECK(eight["total_bytes"].get<double>() < one["total_bytes"].get<double>());
  const auto text = test::run_qft("plan --config " + test::source_path("configs/llama7b.json") +
                                  " --set model.path=/nonexistent --set dist.world_size=8");
  CHECK(text.output.find("for each of 8 ranks") != std::string::npos);
  CHECK(text.output.find("at 100 Gb/s") != std::string::npos);
  CHECK(test::run_qft("plan --config " + test::source_path("configs/llama7b.json") +
                      " --set dist.world_size=-1").exit_code == 1);
}

// Offloaded on the CPU, the stack is in the memory it would have used anyway: the plan counts it, and still
// equals what the allocator measures.
TEST_CASE("an offloaded stack on the CPU is counted in the plan's total", "[plan][stack]") {
  RunConfig cfg;
  cfg.model.path = test::fixture("gqa_tied");
  cfg.data.seq_len = 40;
  cfg.train.batch_size = 3;
  const LlamaConfig arch = plan_architecture(cfg);
  const MemoryPlan on_device = plan_memory(cfg, arch, plan_target(Device::Cpu));
  cfg.train.stack_offload = true;
  const MemoryPlan offloaded = plan_memory(cfg, arch, plan_target(Device::Cpu));
  CHECK(on_device.host_bytes == 0);
  REQUIRE(offloaded.host_bytes > 0);
  CHECK_FALSE(offloaded.host_apart);
  CHECK(offloaded.total_bytes == offloaded.peak_bytes + offloaded.host_bytes);
  CHECK(offloaded.total_bytes >= on_device.total_bytes);
  CHECK(format_plan(offloaded, cfg, arch).find("layer-input stack (offloaded)") != std::string::npos);
  {
    const HfModel hf(cfg.model.path);
    CpuBackend be;
    LlamaModel model(hf, be, cfg.weight_storage());
    model.stack_storage = cfg.train.stack_dtype;
    model.stack_offload = true;
    Optimizer opt(model, cfg.optimizer_settings());
    std::mt19937_64 rng(test::fresh_seed());
    std::uniform_int_distribution<int32_t> tok(3, arch.vocab_size - 1);
    std::vector<int32_t> ids(size_t(cfg.train.batch_size * cfg.data.seq_len));
    for (auto& t : ids) t = tok(rng);
    train_step(model, opt, nullptr, {Batch::from_labels(cfg.train.batch_size, cfg.data.seq_len, ids, ids)}, 1e-3f,
               std::nullopt);
    CHECK(be.host_memory().peak_bytes == offloaded.host_bytes);
    const double measured = double(be.memory().peak_bytes);
    CHECK(std::fabs(double(offloaded.peak_bytes) - measured) <= 0.05 * measured);
  }
  const MemoryPlan gpu = plan_memory(cfg, arch, plan_target(Device::Cuda));  // on a GPU it spares the device
  CHECK(gpu.host_apart);
  CHECK(gpu.host_bytes > 0);
  CHECK(gpu.total_bytes == gpu.peak_bytes + gpu.allowance_bytes);
}

TEST_CASE("qft train refuses to start when the plan exceeds the memory available", "[plan][train][bad-input]") {
  test::TempDir tmp;
  const auto r = test::run_qft("train --config " + test::source_path("configs/tiny.json") + " --set data.seq_len=1000000 --set train.batch_size=16" +
                               " --set model.path=" + test::source_path("models/tiny-llama") +
                               " --set output.dir=" + (tmp / "run"));
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("MiB available") != std::string::npos);
  CHECK(r.output.find("Lower data.seq_len") != std::string::npos);
}

TEST_CASE("qft plan plans for the CPU with --cpu or device=cpu, for the GPU otherwise", "[plan][cli]") {
  const std::string base = "plan --json --config " + test::source_path("configs/llama7b.json") + " --set model.path=/nonexistent";
  auto allowance = [&](const std::string& extra) {
    const auto r = test::run_qft(base + extra);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    return nlohmann::json::parse(r.output)["allowance_bytes"].get<int64_t>();
  };
  CHECK(allowance("") > 0);
  CHECK(allowance(" --set device=cuda") > 0);
  CHECK(allowance(" --cpu") == 0);
  CHECK(allowance(" --set device=cpu") == 0);
}

TEST_CASE("the plan keeps a layer's dequantized matrices for backward only when the run fits with them", "[plan]") {
  RunConfig cfg;
  cfg.model.path = test::fixture("gqa_tied");
  cfg.data.seq_len = 32;
  cfg.train.batch_size = 2;
  LlamaConfig arch = plan_architecture(cfg);
  arch.vocab_size = 64;           // a small head: a layer's backward sets the peak
  arch.intermediate_size = 1024;  // with matrices large enough to show
  const PlanTarget cpu = plan_target(Device::Cpu);
  const MemoryPlan roomy = plan_memory(cfg, arch, cpu);
  INFO(format_plan(roomy, cfg, arch));
  REQUIRE(roomy.keep_layer_weights);
  REQUIRE(roomy.kept_weights_bytes > 0);
  CHECK(format_plan(roomy, cfg, arch).find("backward keeps a layer's dequantized matrices") != std::string::npos);

  const MemoryPlan tight = plan_memory(cfg, arch, cpu, roomy.total_bytes - 1);
  CHECK_FALSE(tight.keep_layer_weights);
  CHECK(tight.total_bytes == roomy.total_bytes - roomy.kept_weights_bytes);
  CHECK(format_plan(tight, cfg, arch).find("backward dequantizes each matrix again") != std::string::npos);
  CHECK(plan_memory(cfg, arch, cpu, tight.total_bytes).total_bytes == tight.total_bytes);  // the least it needs

  cfg.quant.weights = StateStorage::Fp32;  // fp32 weights on fp32 activations: nothing is dequantized
  CHECK(plan_memory(cfg, arch, cpu).kept_weights_bytes == 0);
}
