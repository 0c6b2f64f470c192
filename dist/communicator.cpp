#include "dist/communicator.h"

#include "core/error.h"
#include "ops/backend.h"

namespace qft {

namespace {

// World size 1: every collective is a copy of this rank's own block, or nothing.
class SingleProcess final : public Communicator {
 public:
  SingleProcess(const RankLayout& layout, Backend& be) : Communicator(layout), be_(be) {}
  std::string name() const override { return "one process"; }
  void all_to_all(void* recv, const void* send, size_t bytes) override { be_.copy(recv, send, bytes); }
  void all_gather(void* recv, const void* send, size_t bytes) override { be_.copy(recv, send, bytes); }
  void all_to_all_v(void* recv, const std::vector<size_t>& recv_bytes, const void* send,
                    const std::vector<size_t>&) override {
    be_.copy(recv, send, recv_bytes.at(0));
  }
  void all_gather_v(void*, const std::vector<size_t>&) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::vector<double> all_gather_host(double value) override { return {value}; }
  void broadcast_host(std::string&, int) override {}

 private:
  Backend& be_;
};

class PlanningCommunicator final : public Communicator {
 public:
  explicit PlanningCommunicator(const RankLayout& layout) : Communicator(layout) {}
  std::string name() const override { return "plan"; }
  void all_to_all(void*, const void*, size_t bytes) override { traffic_.all_to_all += bytes * size_t(world_size() - 1); }
  void all_gather(void*, const void*, size_t bytes) override { traffic_.all_gather += bytes * size_t(world_size() - 1); }
  void all_to_all_v(void*, const std::vector<size_t>& recv, const void*, const std::vector<size_t>&) override {
    traffic_.all_to_all += others(recv);
  }
  void all_gather_v(void*, const std::vector<size_t>& bytes) override { traffic_.all_gather += others(bytes); }
  Traffic traffic() const override { return traffic_; }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::vector<double> all_gather_host(double value) override {
    return std::vector<double>(static_cast<size_t>(world_size()), value);
  }
  void broadcast_host(std::string&, int) override {}

 private:
  size_t others(const std::vector<size_t>& blocks) const {  // what this rank receives: every block but its own
    size_t n = 0;
    for (size_t r = 0; r < blocks.size(); ++r) n += r == size_t(rank()) ? 0 : blocks[r];
    return n;
  }
  Traffic traffic_;
};

}  // namespace

#ifdef QFT_WITH_MPI
std::unique_ptr<Communicator> make_mpi_communicator(const RankLayout& layout);  // dist/mpi_communicator.cpp
#endif

#ifndef QFT_WITH_NCCL  // else dist/nccl_communicator.cpp
std::unique_ptr<Communicator> make_nccl_communicator(const RankLayout& layout, Backend&) {
  throw UnsupportedError("rank " + std::to_string(layout.rank) + " of " + std::to_string(layout.world_size) +
                         ": ranks on GPUs communicate through NCCL, and this build has none (it needs the CUDA "
                         "toolkit's nccl.h)");
}
#endif

std::unique_ptr<Communicator> make_communicator(const RankLayout& layout, Backend& be) {
  if (!layout.distributed()) return std::make_unique<SingleProcess>(layout, be);
  if (be.host_memory_is_apart()) return make_nccl_communicator(layout, be);
#ifdef QFT_WITH_MPI
  return make_mpi_communicator(layout);
#else
  throw Error("rank " + std::to_string(layout.rank) + " of " + std::to_string(layout.world_size) + " (" +
              layout.launcher + "): qft was built without MPI; install libopenmpi-dev (scripts/setup.sh) and rebuild");
#endif
}

void reduce_scatter_sum(Communicator& comm, Backend& be, float* out, const float* in, int64_t per_rank, float* scratch) {
  const size_t bytes = size_t(per_rank) * sizeof(float);
  comm.all_to_all(scratch, in, bytes);  // block r: rank r's partial of this rank's block
  be.copy(out, scratch, bytes);
  for (int r = 1; r < comm.world_size(); ++r) be.residual_add(out, scratch + int64_t(r) * per_rank, per_rank);
}

std::unique_ptr<Communicator> make_planning_communicator(const RankLayout& layout) {
  return std::make_unique<PlanningCommunicator>(layout);
}

}  // namespace qft
