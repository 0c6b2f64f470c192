#pragma once
// Shared test utilities: fixture paths, temporary directories, random data, error metrics, running the CLI.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "model/hf_model.h"
#include "model/llama.h"
#include "model/safetensors.h"
#include "trainer/config.h"

namespace qft::test {

std::string source_path(const std::string& rel);   // QFT_SOURCE_DIR/rel
std::string fixture(const std::string& name);      // test/fixtures/name
const std::vector<std::string>& golden_fixtures(); // the model fixtures made by scripts/make_fixtures.py

// A fresh directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A copy of a fixture directory to break things in.
void copy_dir(const std::string& from, const std::string& to);
void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

// Fresh random inputs for each run; the seed is printed by Catch on failure through INFO in the caller.
// The CUDA backend, or nullptr after saying SKIPPED (ctest then reports the test as skipped, never passed).
// fp32 activations and exact fp32 GEMMs unless BF16 is asked for; debug_sync, so that a fault names its op.
std::unique_ptr<Backend> gpu_or_skip(DType activations = DType::F32);

uint64_t fresh_seed();
std::vector<float> random_normal(size_t n, std::mt19937_64& rng, float stddev = 1.0f);
std::vector<int32_t> random_ids(size_t n, int32_t bound, std::mt19937_64& rng);  // uniform in [0, bound)

// bf16 storage on the host: rounding to nearest even, and back to fp32 exactly.
std::vector<bf16> to_bf16(const std::vector<float>& v);
std::vector<float> widen(const std::vector<bf16>& v);
inline std::vector<float> bf16_rounded(const std::vector<float>& v) { return widen(to_bf16(v)); }

// max_i |a_i - b_i| / max_i |b_i|: relative error in the max norm.
// The Lion step over fp32 weights and momentum (rows, cols), as the optimizer builds it for fp32 state.
inline LionRowStep fp32_lion_step(float* theta, float* m, const float* g, int64_t cols, const LionParams& p) {
  LionRowStep st{};
  st.p = p;
  st.g = g;
  st.w32 = theta;
  st.m32 = m;
  st.cols = cols;
  return st;
}

double max_rel_error(const std::vector<float>& a, const std::vector<float>& b);

// The fixed batch a golden fixture recorded (input_ids, labels), in qft's shifted-target form.
Batch golden_batch(const SafeTensorsFile& golden);

// A golden fixture loaded for a test: the HF model on a fresh CPU backend, and what transformers recorded.
struct GoldenCase {
  HfModel hf;
  SafeTensorsFile golden;
  Batch batch;
  CpuBackend backend;
  LlamaModel model;
  explicit GoldenCase(const std::string& name)
      : hf(fixture(name)), golden(fixture(name + "/golden.safetensors")), batch(golden_batch(golden)), model(hf, backend) {}
};

// The view of host-built token groups for vocabulary rows [v0, v0 + rows), in host memory (CPU backends).
inline TokenGroupsView host_view(const TokenGroups& g, int v0, int rows) {
  TokenGroupsView v{g.order.data(), g.start.data(), g.token.data(), 0, 0};
  g.range(v0, rows, v.first, v.count);
  return v;
}

// model.backward, returning the batch's summed loss (read from backend memory).
double backward_loss_sum(LlamaModel& model, const Batch& batch, float loss_scale, GradSink& sink);

// Collects every gradient on the host and checks that each row arrives exactly once.
class CaptureSink final : public GradSink {
 public:
  explicit CaptureSink(const LlamaModel& m);
  void consume(int param, int64_t row0, int64_t rows, const float* g) override;
  void require_complete() const;
  std::vector<std::vector<float>> grads;
  std::vector<std::vector<int>> seen;

 private:
  const LlamaModel& model_;
};

// Small LoRA adapters for the fixtures: rank 4, alpha 8, on every target, A drawn from seed; GSE in groups of 8 at
// `bits` (the rank-4 products have one partial group, the wider ones several), or fp32.
LoraSettings small_lora(bool gse, int bits, uint64_t seed);

// A short CPU run of the embedded tiny model on the tiny instruction data, with INT8 state, gradient
// accumulation, clipping and a constant schedule (so a run of N steps follows the first N of a longer one).
RunConfig short_run_config(const std::string& output_dir, int steps);

// Arguments of `qft train` for the embedded tiny run (configs/tiny.json) without validation, into output_dir.
std::string tiny_train_args(const std::string& output_dir);

struct CliResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};
CliResult run_qft(const std::string& args);
CliResult run_shell(const std::string& command);  // stdout and stderr together
// A failing command exits 1 (not a crash) and prints an error line that contains `what`; returns its output.
std::string expect_cli_error(const std::string& args, const std::string& what);

}  // namespace qft::test
