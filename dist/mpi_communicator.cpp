// The communicator between CPU ranks: MPI on host memory. MPI is initialized here unless the program did it
// (the distributed tests' main), and finalized by whoever initialized it.
#include <mpi.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "dist/collective_watchdog.h"
#include "dist/communicator.h"

namespace qft {

namespace {

// Counts and displacements of blocks packed in rank order, as MPI's v-collectives take them.
struct Packed {
  std::vector<int> counts, displs;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const RankLayout& layout) : Communicator(layout), watchdog_(layout.rank, layout.world_size) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owns_init_ = true;
    }
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);  // errors come back to check(), which throws
    int rank = -1, size = 0;
    MPI_Comm_rank(comm_, &rank);
    MPI_Comm_size(comm_, &size);
    if (rank != layout.rank || size != layout.world_size) {
      release();  // a constructor that throws runs no destructor
      throw Error("MPI sees rank " + std::to_string(rank) + " of " + std::to_string(size) + " but the environment (" +
                  layout.launcher + ") says rank " + std::to_string(layout.rank) + " of " +
                  std::to_string(layout.world_size));
    }
  }
  ~MpiCommunicator() override { release(); }

  std::string name() const override { return "MPI"; }
  void all_to_all(void* recv, const void* send, size_t bytes) override {
    const auto watch = watched("MPI_Alltoall");
    check(MPI_Alltoall(send, count(bytes), MPI_BYTE, recv, count(bytes), MPI_BYTE, comm_), "MPI_Alltoall");
  }
  void all_gather(void* recv, const void* send, size_t bytes) override {
    const auto watch = watched("MPI_Allgather");
    check(MPI_Allgather(send, count(bytes), MPI_BYTE, recv, count(bytes), MPI_BYTE, comm_), "MPI_Allgather");
  }
  void all_to_all_v(void* recv, const std::vector<size_t>& recv_bytes, const void* send,
                    const std::vector<size_t>& send_bytes) override {
    const Packed in = packed(send_bytes), out = packed(recv_bytes);
    const auto watch = watched("MPI_Alltoallv");
    check(MPI_Alltoallv(send, in.counts.data(), in.displs.data(), MPI_BYTE, recv, out.counts.data(), out.displs.data(),
                        MPI_BYTE, comm_),
          "MPI_Alltoallv");
  }
  // MPI_Ialltoallv: its counts live in the exchange until MPI_Wait. Open MPI moves the bytes while this rank is
  // inside MPI (the start, the wait) or with a progress thread, so the overlap is what the start and the network
  // do on their own.
  class Ialltoallv final : public Exchange {
   public:
    Ialltoallv(MpiCommunicator& comm, Packed in, Packed out) : comm_(comm), in_(std::move(in)), out_(std::move(out)) {}
    ~Ialltoallv() override {
      if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);  // never left in flight
    }
    void wait() override {
      const auto watch = comm_.watched("MPI_Ialltoallv");
      comm_.check(MPI_Wait(&request_, MPI_STATUS_IGNORE), "MPI_Wait");
    }
    MpiCommunicator& comm_;
    Packed in_, out_;
    MPI_Request request_ = MPI_REQUEST_NULL;
  };
  std::unique_ptr<Exchange> start_all_to_all_v(void* recv, const std::vector<size_t>& recv_bytes, const void* send,
                                               const std::vector<size_t>& send_bytes) override {
    auto x = std::make_unique<Ialltoallv>(*this, packed(send_bytes), packed(recv_bytes));
    check(MPI_Ialltoallv(send, x->in_.counts.data(), x->in_.displs.data(), MPI_BYTE, recv, x->out_.counts.data(),
                         x->out_.displs.data(), MPI_BYTE, comm_, &x->request_),
          "MPI_Ialltoallv");
    return x;
  }
  void all_gather_v(void* data, const std::vector<size_t>& bytes) override {
    const Packed blocks = packed(bytes);
    const auto watch = watched("MPI_Allgatherv");
    check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, data, blocks.counts.data(), blocks.displs.data(), MPI_BYTE, comm_),
          "MPI_Allgatherv");
  }
  void broadcast(void* data, size_t bytes, int root) override {
    const auto watch = watched("MPI_Bcast");
    check(MPI_Bcast(data, count(bytes), MPI_BYTE, root, comm_), "MPI_Bcast");
  }
  void barrier() override {
    const auto watch = watched("MPI_Barrier");
    check(MPI_Barrier(comm_), "MPI_Barrier");
  }
  std::vector<double> all_gather_host(double value) override {
    std::vector<double> out(static_cast<size_t>(world_size()));
    const auto watch = watched("MPI_Allgather");
    check(MPI_Allgather(&value, 1, MPI_DOUBLE, out.data(), 1, MPI_DOUBLE, comm_), "MPI_Allgather");
    return out;
  }
  void broadcast_host(std::string& text, int root) override {
    uint64_t size = text.size();
    const auto watch = watched("MPI_Bcast");
    check(MPI_Bcast(&size, 1, MPI_UINT64_T, root, comm_), "MPI_Bcast");
    text.resize(size_t(size));
    check(MPI_Bcast(text.data(), count(text.size()), MPI_CHAR, root, comm_), "MPI_Bcast");
  }
  void set_timeout(int seconds) override { watchdog_.set_timeout(seconds); }
  void end_every_rank(int exit_code) override { MPI_Abort(MPI_COMM_WORLD, exit_code); }

 private:
  // MPI counts are ints: callers send in chunks (a weight gradient's rows arrive in chunks of at most 32 MiB).
  static int count(size_t bytes) {
    if (bytes > size_t(INT_MAX)) throw Error("MPI: " + std::to_string(bytes) + " bytes in one block; at most 2 GiB");
    return int(bytes);
  }
  Packed packed(const std::vector<size_t>& bytes) const {
    if (int(bytes.size()) != world_size()) throw Error("MPI: " + std::to_string(bytes.size()) + " block sizes for " +
                                                       std::to_string(world_size()) + " ranks");
    Packed p;
    size_t at = 0;
    for (size_t b : bytes) {
      p.counts.push_back(count(b));
      p.displs.push_back(count(at));
      at += b;
    }
    count(at);
    return p;
  }
  // Marks a blocking collective for the watchdog, for the guard's life.
  CollectiveWatchdog::Watch watched(const char* call) { return CollectiveWatchdog::Watch(watchdog_, call); }
  void check(int rc, const char* call) const {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw Error(std::string(call) + " on rank " + std::to_string(rank()) + ": " + std::string(text, size_t(len)));
  }

  void release() {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    if (owns_init_) MPI_Finalize();
    owns_init_ = false;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owns_init_ = false;
  CollectiveWatchdog watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const RankLayout& layout) {
  return std::make_unique<MpiCommunicator>(layout);
}

}  // namespace qft
