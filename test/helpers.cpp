#include "test/helpers.h"

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "cuda/cuda_backend.h"
#include "cuda/device_info.h"
#include "model/llama.h"
#include "model/safetensors.h"

namespace qft::test {

namespace fs = std::filesystem;

std::string source_path(const std::string& rel) { return (fs::path(QFT_SOURCE_DIR) / rel).string(); }
std::string fixture(const std::string& name) { return source_path("test/fixtures/" + name); }

const std::vector<std::string>& golden_fixtures() {
  static const std::vector<std::string> names{"mha_untied", "gqa_tied", "awkward"};
  return names;
}

TempDir::TempDir() {
  std::random_device rd;
  for (int i = 0; i < 100; ++i) {
    path_ = fs::temp_directory_path() / ("qft_test_" + std::to_string(rd()));
    if (fs::create_directory(path_)) return;
  }
  throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void copy_dir(const std::string& from, const std::string& to) {
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::unique_ptr<Backend> gpu_or_skip(DType activations) {
  const DeviceInfo d = probe_cuda();
  if (d.device_count == 0) {
    std::cout << "SKIPPED: no usable GPU (" << (d.compiled ? d.error : "built without CUDA") << ")\n";
    WARN("SKIPPED: no usable GPU");
    return nullptr;
  }
  return make_cuda_backend({0, true, activations});
}

double backward_loss_sum(LlamaModel& model, const Batch& batch, float loss_scale, GradSink& sink) {
  Backend& be = model.backend();
  Buffer total = be.alloc(sizeof(double), "test");
  be.zero(total.get(), total.bytes());
  model.backward(batch, loss_scale, sink, static_cast<double*>(total.get()));
  double host = 0;
  be.copy_to_host(&host, total.get(), sizeof host);
  return host;
}

uint64_t fresh_seed() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd() ^ uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
}

std::vector<float> random_normal(size_t n, std::mt19937_64& rng, float stddev) {
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<int32_t> random_ids(size_t n, int32_t bound, std::mt19937_64& rng) {
  std::vector<int32_t> v(n);
  for (auto& x : v) x = int32_t(rng() % uint64_t(bound));
  return v;
}

std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = from_f32<bf16>(v[i]);
  return out;
}

std::vector<float> widen(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_f32(v[i]);
  return out;
}

double max_rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) throw std::runtime_error("max_rel_error: size mismatch");
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return den > 0 ? num / den : num;
}

CaptureSink::CaptureSink(const LlamaModel& m) : model_(m) {
  for (const Param& p : m.params()) {
    grads.emplace_back(size_t(p.numel()), 0.0f);
    seen.emplace_back(size_t(p.rows), 0);
  }
}

void CaptureSink::consume(int param, int64_t row0, int64_t rows, const float* g) {
  const Param& p = model_.params()[size_t(param)];
  REQUIRE(row0 + rows <= p.rows);
  model_.backend().copy_to_host(grads[size_t(param)].data() + row0 * p.cols, g, size_t(rows * p.cols) * 4);
  for (int64_t r = row0; r < row0 + rows; ++r) seen[size_t(param)][size_t(r)] += 1;
}

void CaptureSink::require_complete() const {
  for (size_t i = 0; i < seen.size(); ++i)
    for (int c : seen[i]) REQUIRE(c == 1);
}

Batch golden_batch(const SafeTensorsFile& golden) {
  auto i32 = [&](const char* name) {
    HostTensor t = golden.read(name);
    if (t.dtype != DType::I32) throw std::runtime_error(std::string(name) + " is not I32");
    return std::vector<int32_t>(t.data<int32_t>(), t.data<int32_t>() + t.numel());
  };
  const auto shape = golden.find("input_ids")->shape;
  return Batch::from_labels(int(shape[0]), int(shape[1]), i32("input_ids"), i32("labels"));
}

LoraSettings small_lora(bool gse, int bits, uint64_t seed) {
  LoraSettings s;
  s.rank = 4;
  s.alpha = 8.0f;
  s.targets.fill(true);
  s.gse = gse;
  s.format = {8, bits};
  s.seed = seed;
  return s;
}

RunConfig short_run_config(const std::string& output_dir, int steps) {
  RunConfig c;
  c.model.path = source_path("models/tiny-llama");
  c.data.train = source_path("data/tiny_instruct/train.jsonl");
  c.data.format = DataFormat::Alpaca;
  c.data.seq_len = 64;
  c.data.packing = true;
  c.train.steps = steps;
  c.train.batch_size = 2;
  c.train.grad_accum = 2;  // INT8 gradient accumulators are part of the exactness
  c.train.clip_grad_norm = 1.0;
  c.train.lr = 1e-3;
  c.train.lr_schedule = LrSchedule::Constant;
  c.train.seed = 11;
  c.device = Device::Cpu;
  c.output.dir = output_dir;
  return c;
}

std::string tiny_train_args(const std::string& output_dir) {
  return "train --config " + source_path("configs/tiny.json") + " --set model.path=" + source_path("models/tiny-llama") +
         " --set data.train=" + source_path("data/tiny_instruct/train.jsonl") +
         " --set data.val= --set train.eval_every=0 --set output.dir=" + output_dir;
}

CliResult run_qft(const std::string& args) { return run_shell(std::string(QFT_BINARY) + " " + args); }

std::string expect_cli_error(const std::string& args, const std::string& what) {
  const auto r = run_qft(args);
  INFO("qft " << args << "\n" << r.output);
  REQUIRE(r.exit_code == 1);
  REQUIRE(r.output.find("qft: error: ") != std::string::npos);
  REQUIRE(r.output.find(what) != std::string::npos);
  return r.output;
}

CliResult run_shell(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed for " + cmd);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, out};
}

}  // namespace qft::test
