// [cuda] test of a whole INT8 training step on the GPU against the CPU backend with the same storage. Each op of
// the CUDA backend is checked against the reference by the op harness (test_backend_ops.cpp). Without a GPU the
// test prints "SKIPPED:" and ctest reports it as skipped. Run only the GPU tests: ./build/test/qft_tests "[cuda]"
#include <catch2/catch.hpp>
#include <cmath>

#include "cpu/cpu_backend.h"
#include "model/safetensors.h"
#include "test/helpers.h"
#include "trainer/optimizer.h"
#include "trainer/settings.h"
#include "trainer/train_step.h"

using namespace qft;

TEST_CASE("a whole INT8 training step on the GPU matches the CPU backend with the same storage", "[cuda][train]") {
  for (bool bf16 : {false, true}) {
    auto gpu = test::gpu_or_skip(bf16 ? DType::BF16 : DType::F32);
    if (!gpu) return;
    const HfModel hf(test::fixture("gqa_tied"));
    const SafeTensorsFile golden(test::fixture("gqa_tied/golden.safetensors"));
    const Batch batch = test::golden_batch(golden);
    CpuBackend cpu(bf16 ? DType::BF16 : DType::F32);
    const WeightStorage storage{true, 0.01};
    LlamaModel on_cpu(hf, cpu, storage), on_gpu(hf, *gpu, storage);
    OptimizerSettings os;
    os.momentum_int8 = true;
    os.seed = 3;
    Optimizer opt_cpu(on_cpu, os), opt_gpu(on_gpu, os);
    const StepResult rc = train_step(on_cpu, opt_cpu, nullptr, {batch}, 1e-3f, 1.0);
    const StepResult rg = train_step(on_gpu, opt_gpu, nullptr, {batch}, 1e-3f, 1.0);
    INFO((bf16 ? "bf16" : "fp32") << " activations: loss cpu " << rc.loss << " gpu " << rg.loss);
    REQUIRE(rg.loss == Approx(rc.loss).epsilon(bf16 ? 1e-2 : 1e-5));
    REQUIRE(*rg.grad_norm == Approx(*rc.grad_norm).epsilon(bf16 ? 5e-2 : 1e-4));
    // Lion moves each weight by lr * sign(.): where the two backends' gradients differ in sign, the weights
    // differ by 2 lr, plus one quantization step (the row's scale) where stochastic rounding then parts.
    int64_t moved_apart = 0, total = 0;
    for (int i = 0; i < int(on_cpu.params().size()); ++i) {
      const Param& p = on_cpu.params()[size_t(i)];
      const auto a = on_cpu.read_weight(i), b = on_gpu.read_weight(i);
      for (float x : b) REQUIRE(std::isfinite(x));
      std::vector<float> gpu_scale(p.quantized() ? size_t(p.rows) : 0);
      if (p.quantized()) gpu->copy_to_host(gpu_scale.data(), on_gpu.params()[size_t(i)].int8.scale.get(), gpu_scale.size() * 4);
      for (size_t j = 0; j < a.size(); ++j) {
        const size_t r = j / size_t(p.cols);
        const double step = p.quantized() ? 1.01 * std::max(p.int8.scale.f32()[r], gpu_scale[r]) : 0.0;
        REQUIRE(std::fabs(a[j] - b[j]) <= 2 * 1e-3 * 1.001 + step);
        moved_apart += a[j] != b[j];
      }
      total += int64_t(a.size());
    }
    INFO(moved_apart << " of " << total << " weights differ");
    REQUIRE(moved_apart <= total / (bf16 ? 20 : 200));
  }
}

// On a GPU the offloaded stack goes through page-locked memory and copies queued on the stream: the gradients must
// be the same bits as with the stack on the device (fp32 activations: qft's own attention, deterministic).
TEST_CASE("an offloaded layer-input stack on the GPU gives the same gradients bit for bit", "[cuda][stack]") {
  auto gpu = test::gpu_or_skip(DType::F32);
  if (!gpu) return;
  const HfModel hf(test::fixture("gqa_tied"));
  const Batch batch = test::golden_batch(SafeTensorsFile(test::fixture("gqa_tied/golden.safetensors")));
  LlamaModel model(hf, *gpu, {true, 0.01});
  for (StackStorage s : {StackStorage::Activations, StackStorage::Bf16, StackStorage::Int8}) {
    INFO(enum_name(s) << " stack");
    std::vector<std::vector<std::vector<float>>> grads;
    std::vector<double> losses;
    for (bool offload : {false, true}) {
      model.stack_storage = s;
      model.stack_offload = offload;
      test::CaptureSink sink(model);
      losses.push_back(test::backward_loss_sum(model, batch, 1.0f / float(batch.target_count()), sink));
      sink.require_complete();
      grads.push_back(sink.grads);
    }
    REQUIRE(losses[1] == losses[0]);
    REQUIRE(grads[1] == grads[0]);
    REQUIRE(gpu->host_memory().peak_bytes > 0);
  }
}
