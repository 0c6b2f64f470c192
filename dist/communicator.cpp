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

 private:
  Backend& be_;
};

}  // namespace

#ifdef QFT_WITH_MPI
std::unique_ptr<Communicator> make_mpi_communicator(const RankLayout& layout);  // dist/mpi_communicator.cpp
#endif

std::unique_ptr<Communicator> make_communicator(const RankLayout& layout, Backend& be) {
  if (!layout.distributed()) return std::make_unique<SingleProcess>(layout, be);
  if (be.host_memory_is_apart()) {
    throw Error("rank " + std::to_string(layout.rank) + " of " + std::to_string(layout.world_size) + " on " +
                be.name() + ": ranks on GPUs communicate through NCCL, which this build does not have yet");
  }
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

std::vector<double> all_gather_values(Communicator& comm, Backend& be, double value) {
  const int n = comm.world_size();
  Buffer mine = be.alloc(sizeof(double), "collectives");
  Buffer all = be.alloc(sizeof(double) * size_t(n), "collectives");
  be.copy_to_device(mine.get(), &value, sizeof(double));
  comm.all_gather(all.get(), mine.get(), sizeof(double));
  std::vector<double> out(static_cast<size_t>(n));
  be.copy_to_host(out.data(), all.get(), sizeof(double) * size_t(n));
  return out;
}

}  // namespace qft
