// The communicator of one process (world size 1, no MPI involved): collectives are copies of the rank's own
// block. Several ranks are tested under mpirun (test/dist/).
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "dist/communicator.h"
#include "test/helpers.h"

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
