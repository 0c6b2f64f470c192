#pragma once
// The collectives data-parallel training needs, on backend memory and queued with the backend's work: the same
// interface over MPI (CPU ranks; dist/mpi_communicator.cpp) and over one process (world size 1: copies, no
// engine at all). Reductions are not among them: reduce_scatter_sum below sums the ranks' partials itself, in
// rank order, so that the result does not depend on an engine's reduction algorithm or on the world size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "dist/rank_layout.h"

namespace qft {

class Backend;

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  const RankLayout& layout() const { return layout_; }
  int rank() const { return layout_.rank; }
  int world_size() const { return layout_.world_size; }
  virtual std::string name() const = 0;

  // send and recv hold world_size blocks of `bytes`: rank s's block r goes to rank r's block s.
  virtual void all_to_all(void* recv, const void* send, size_t bytes) = 0;
  // recv holds world_size blocks of `bytes`: block r is rank r's send.
  virtual void all_gather(void* recv, const void* send, size_t bytes) = 0;
  // Blocks of different sizes, packed in rank order: send_bytes[r] of send go to rank r, and recv gets
  // recv_bytes[s] from each rank s. Every size must be what the other side expects.
  virtual void all_to_all_v(void* recv, const std::vector<size_t>& recv_bytes, const void* send,
                            const std::vector<size_t>& send_bytes) = 0;
  // all_to_all_v started, to be finished by the returned exchange's wait(), so that the caller computes while the
  // bytes move: neither buffer may be touched before then, and every rank starts the same exchanges in the same
  // order. The engines without non-blocking calls finish it here.
  class Exchange {
   public:
    virtual ~Exchange() = default;
    virtual void wait() {}
  };
  virtual std::unique_ptr<Exchange> start_all_to_all_v(void* recv, const std::vector<size_t>& recv_bytes,
                                                       const void* send, const std::vector<size_t>& send_bytes) {
    all_to_all_v(recv, recv_bytes, send, send_bytes);
    return std::make_unique<Exchange>();
  }
  // In place: data holds every rank's block, packed in rank order, bytes[r] each; this rank's is already there
  // and the others' arrive.
  virtual void all_gather_v(void* data, const std::vector<size_t>& bytes) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Every rank's value, in rank order, on every rank, in host memory (a loss, a count, a config hash).
  virtual std::vector<double> all_gather_host(double value) = 0;
  // Root's text on every rank, in host memory (a path that root alone resolved).
  virtual void broadcast_host(std::string& text, int root) = 0;
  // A rank that waits longer than this in one collective reports it and ends the job (0: never), where the
  // engine allows: MPI's calls are watched by a thread of this rank; NCCL's queued ones are not.
  virtual void set_timeout(int /*seconds*/) {}
  // Ends every rank of the job now, with this exit code: what a rank that fails alone must do, since the others
  // may be waiting for it in a collective (and a rank that simply returned would wait for them in MPI_Finalize).
  [[noreturn]] void abort_job(int exit_code) {
    end_every_rank(exit_code);
    std::_Exit(exit_code);  // this rank ends in any case; the launcher then ends the others
  }

  // Bytes this rank received from the others, by kind of collective: what the planning communicator counts.
  struct Traffic {
    size_t all_to_all = 0, all_gather = 0;
  };
  virtual Traffic traffic() const { return {}; }

 protected:
  explicit Communicator(RankLayout layout) : layout_(std::move(layout)) {}
  // The engine's way of ending every rank (MPI_Abort), if it has one.
  virtual void end_every_rank(int /*exit_code*/) {}

 private:
  RankLayout layout_;
};

// The communicator of a job: one process when the layout says so, MPI between ranks whose backend memory is the
// host's, NCCL between GPU ranks. Throws Error when the build or the machine cannot serve the layout.
std::unique_ptr<Communicator> make_communicator(const RankLayout& layout, Backend& be);
// NCCL on a GPU backend's stream, for any world size (one rank too: the [cuda] tests run it so). Throws
// UnsupportedError in a build without CUDA or nccl.h (or, for several ranks, MPI), and Error when libnccl cannot
// be loaded.
std::unique_ptr<Communicator> make_nccl_communicator(const RankLayout& layout, Backend& be);
// One rank of a job that runs nothing (the memory planner, on a PlanningBackend): collectives move nothing, and
// every rank is said to hold what this one holds.
std::unique_ptr<Communicator> make_planning_communicator(const RankLayout& layout);

// Reduce-scatter of fp32 partials: in (world_size * per_rank) holds this rank's partial of every rank's block;
// out (per_rank) gets the sum over ranks of their partials of block rank(), added in rank order (rank 0 first,
// as ((p0 + p1) + p2) ...). scratch: world_size * per_rank floats of backend memory.
void reduce_scatter_sum(Communicator& comm, Backend& be, float* out, const float* in, int64_t per_rank, float* scratch);

}  // namespace qft
