#pragma once
// One rank of the job the distributed tests run under (mpirun): its layout, a CPU backend, the communicator, and a
// seed drawn fresh by rank 0 and shared, so that every rank can rebuild every rank's inputs.
#include <cstdint>
#include <memory>

#include "cpu/cpu_backend.h"
#include "dist/communicator.h"
#include "test/helpers.h"

namespace qft::test {

struct World {
  RankLayout layout = rank_layout_from_environment();
  CpuBackend be;
  std::unique_ptr<Communicator> comm = make_communicator(layout, be);
  uint64_t seed = 0;
  World() {
    if (comm->rank() == 0) seed = fresh_seed();
    comm->broadcast(&seed, sizeof seed, 0);
  }
  int n() const { return comm->world_size(); }
  int me() const { return comm->rank(); }
};

}  // namespace qft::test
