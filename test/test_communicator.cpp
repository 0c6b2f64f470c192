// The communicator of one process (world size 1, no MPI involved): collectives are copies of the rank's own
// block. Several ranks are tested under mpirun (test/dist/).
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "dist/communicator.h"
#include "model/safetensors.h"
#include "test/helpers.h"
#include "trainer/data_parallel.h"
#include "trainer/optimizer.h"

using namespace qft;

TEST_CASE("one process's communicator copies its own block and sums nothing", "[dist]") {
  CpuBackend be;
  const auto comm = make_communicator(RankLayout{}, be);
  CHECK(comm->world_size() == 1);
  std::mt19937_64 rng(test::fresh_seed());
  const int64_t n = 1 + int64_t(rng() % 300);
  const std::vector<float> in = test::random_normal(size_t(n), rng, 3.0f);
  std::vector<float> out(size_t(n), NAN), scratch(size_t(n), NAN);
  reduce_scatter_sum(*comm, be, out.data(), in.data(), n, scratch.data());
  CHECK(std::memcmp(out.data(), in.data(), size_t(n) * 4) == 0);
  std::fill(out.begin(), out.end(), NAN);
  comm->all_gather(out.data(), in.data(), size_t(n) * 4);
  CHECK(out == in);
  const double v = double(rng() % 1000) / 7.0;
  CHECK(comm->all_gather_host(v) == std::vector<double>{v});
}

// Several ranks need a launcher that started them (test/dist/train_ranks.sh runs qft train under mpirun): a config
// that asks for ranks in one process, or a launcher's variables without the launcher, are refused before any output.
TEST_CASE("qft train refuses ranks that no launcher started", "[dist][cli][bad-input]") {
  test::TempDir tmp;
  const std::string args = test::tiny_train_args(tmp / "run");
  CHECK(test::expect_cli_error(args + " --set dist.world_size=2", "dist.world_size").find("started as one process") !=
        std::string::npos);
  const auto r = test::run_shell("OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 " + std::string(QFT_BINARY) + " " + args);
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("the environment (Open MPI) says rank 0 of 2") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "run"));
}

namespace {

// Bytes of backend memory: fresh random ones, or NaN sentinels (0xff) where a collective must write.
Buffer device_bytes(Backend& be, const std::vector<uint8_t>& host) {
  Buffer b = be.alloc(host.size(), "test");
  be.copy_to_device(b.get(), host.data(), host.size());
  return b;
}
std::vector<uint8_t> host_bytes(Backend& be, const Buffer& b) {
  std::vector<uint8_t> out(b.bytes());
  be.copy_to_host(out.data(), b.get(), out.size());
  return out;
}

}  // namespace

// The NCCL communicator of one rank runs every collective through NCCL as N ranks would (group sends and receives,
// all-gather, broadcast, on the backend's stream): each must leave exactly the one-process result. Then a sharded
// step through it equals the same step through the one-process communicator, bit for bit.
TEST_CASE("cuda: NCCL with one rank: every collective, and a data-parallel step as one process's", "[cuda][dist]") {
  auto gpu = test::gpu_or_skip(DType::F32);
  if (!gpu) return;
  Backend& be = *gpu;
  const auto nccl = make_nccl_communicator(RankLayout{}, be);
  CHECK(nccl->name() == "NCCL");
  std::mt19937_64 rng(test::fresh_seed());
  const size_t n = 1 + rng() % 5000;
  std::vector<uint8_t> in(n);
  for (auto& x : in) x = uint8_t(rng());
  const std::vector<uint8_t> sentinel(n, 0xff);
  const Buffer src = device_bytes(be, in);
  Buffer dst = device_bytes(be, sentinel);
  nccl->all_to_all(dst.get(), src.get(), n);
  CHECK(host_bytes(be, dst) == in);
  dst = device_bytes(be, sentinel);
  nccl->all_gather(dst.get(), src.get(), n);
  CHECK(host_bytes(be, dst) == in);
  dst = device_bytes(be, sentinel);
  nccl->all_to_all_v(dst.get(), {n}, src.get(), {n});
  CHECK(host_bytes(be, dst) == in);
  Buffer same = device_bytes(be, in);
  nccl->all_gather_v(same.get(), {n});  // one rank: its own block is already in place
  nccl->broadcast(same.get(), n, 0);
  CHECK(host_bytes(be, same) == in);
  nccl->barrier();
  CHECK(nccl->all_gather_host(2.5) == std::vector<double>{2.5});

  const HfModel hf(test::fixture("gqa_tied"));
  const SafeTensorsFile golden(test::fixture("gqa_tied/golden.safetensors"));
  const Batch batch = test::golden_batch(golden);
  const auto single = make_communicator(RankLayout{}, be);
  OptimizerSettings os;
  os.momentum_int8 = true;
  os.grad_int8 = true;
  os.seed = rng();
  std::vector<std::vector<float>> weights[2];
  for (int via_nccl = 0; via_nccl < 2; ++via_nccl) {
    LlamaModel model(hf, be, {true, 0.01});
    Optimizer opt(model, os);
    GradAccumulators acc(model, os, {}, false);
    data_parallel_step(via_nccl ? *nccl : *single, model, opt, acc, {batch}, 1e-3f, 1.0);
    for (int i = 0; i < int(model.params().size()); ++i) weights[via_nccl].push_back(model.read_weight(i));
  }
  CHECK(weights[1] == weights[0]);
}
