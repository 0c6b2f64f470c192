// The communicator between CPU ranks, under mpirun -np 2 and -np 3 (ctest): every collective delivers each
// rank's blocks where they belong, and reduce_scatter_sum gives the same bits as one process adding the partials
// in rank order. Inputs are fresh each run: rank 0 draws the seed and broadcasts it.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "core/error.h"
#include "test/dist/world.h"

using namespace qft;
using test::World;

namespace {

// What rank `from` holds for block `to`: values of mixed magnitudes, so that the order of a sum shows.
std::vector<float> block_of(uint64_t seed, int from, int to, int64_t count) {
  std::mt19937_64 rng(seed ^ (uint64_t(from) * 1000003u + uint64_t(to) * 7919u + 1));
  std::normal_distribution<float> z(0.0f, 1.0f);
  std::uniform_int_distribution<int> scale(-20, 20);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = std::ldexp(z(rng), scale(rng));
  return v;
}

bool same_bits(const float* a, const float* b, int64_t n) { return std::memcmp(a, b, size_t(n) * 4) == 0; }

}  // namespace

TEST_CASE("the ranks are MPI's, as the launcher's environment says", "[dist]") {
  World w;
  INFO("rank " << w.me() << " of " << w.n() << " from " << w.layout.launcher);
  CHECK(w.n() >= 2);
  CHECK(w.comm->name() == "MPI");
  CHECK(w.layout.launcher != "none");
}

TEST_CASE("all_to_all, all_gather and broadcast put every rank's blocks where they belong", "[dist]") {
  World w;
  const int64_t count = 1 + int64_t(w.seed % 97);  // per block, odd sizes included
  std::vector<float> send, recv(size_t(w.n() * count), NAN);
  for (int to = 0; to < w.n(); ++to) {
    const auto b = block_of(w.seed, w.me(), to, count);
    send.insert(send.end(), b.begin(), b.end());
  }
  w.comm->all_to_all(recv.data(), send.data(), size_t(count) * 4);
  for (int from = 0; from < w.n(); ++from) {
    INFO("all_to_all block from rank " << from << " on rank " << w.me());
    CHECK(same_bits(recv.data() + from * count, block_of(w.seed, from, w.me(), count).data(), count));
  }

  const auto mine = block_of(w.seed, w.me(), -1, count);
  std::fill(recv.begin(), recv.end(), NAN);
  w.comm->all_gather(recv.data(), mine.data(), size_t(count) * 4);
  for (int from = 0; from < w.n(); ++from) {
    INFO("all_gather block of rank " << from << " on rank " << w.me());
    CHECK(same_bits(recv.data() + from * count, block_of(w.seed, from, -1, count).data(), count));
  }

  const int root = w.n() - 1;
  std::vector<float> data = w.me() == root ? block_of(w.seed, root, -2, count) : std::vector<float>(size_t(count), NAN);
  w.comm->broadcast(data.data(), size_t(count) * 4, root);
  CHECK(same_bits(data.data(), block_of(w.seed, root, -2, count).data(), count));
  w.comm->barrier();
}

TEST_CASE("reduce_scatter_sum adds the ranks' partials in rank order: one process's left fold, bit for bit",
          "[dist]") {
  World w;
  const int64_t per_rank = 1000 + int64_t(w.seed % 61);
  std::vector<float> in, out(size_t(per_rank), NAN), scratch(size_t(w.n() * per_rank), NAN);
  for (int block = 0; block < w.n(); ++block) {
    const auto b = block_of(w.seed, w.me(), block, per_rank);
    in.insert(in.end(), b.begin(), b.end());
  }
  reduce_scatter_sum(*w.comm, w.be, out.data(), in.data(), per_rank, scratch.data());

  std::vector<float> fold = block_of(w.seed, 0, w.me(), per_rank), reversed = block_of(w.seed, w.n() - 1, w.me(), per_rank);
  for (int r = 1; r < w.n(); ++r) {
    const auto p = block_of(w.seed, r, w.me(), per_rank), q = block_of(w.seed, w.n() - 1 - r, w.me(), per_rank);
    for (int64_t i = 0; i < per_rank; ++i) {
      fold[size_t(i)] += p[size_t(i)];
      reversed[size_t(i)] += q[size_t(i)];
    }
  }
  CHECK(same_bits(out.data(), fold.data(), per_rank));
  // With three or more ranks the order shows in the bits, so the check above can tell a wrong order.
  if (w.n() >= 3) CHECK_FALSE(same_bits(fold.data(), reversed.data(), per_rank));
}

TEST_CASE("all_gather_host gives every rank every rank's value, in rank order", "[dist]") {
  World w;
  const double mine = double(w.seed % 1000) + 0.25 * w.me();
  const std::vector<double> all = w.comm->all_gather_host(mine);
  CHECK(int(all.size()) == w.n());
  for (int r = 0; r < w.n() && r < int(all.size()); ++r) CHECK(all[size_t(r)] == double(w.seed % 1000) + 0.25 * r);
}

// A process that thinks it is one of two ranks but was not started by mpirun (ctest runs this case alone, without
// mpirun): MPI sees a world of one, and the communicator says so instead of waiting for a peer that never comes.
TEST_CASE("a rank layout that MPI does not share is refused, not waited on", "[not-launched][bad-input]") {
  CpuBackend be;
  RankLayout two;
  two.world_size = 2;
  two.launcher = "a test";
  try {
    make_communicator(two, be);
    FAIL("accepted");
  } catch (const Error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK((what.find("MPI sees rank 0 of 1") != std::string::npos || what.find("built without MPI") != std::string::npos));
  }
}
