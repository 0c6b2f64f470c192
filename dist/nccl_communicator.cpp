// The communicator between GPU ranks: NCCL on device memory, queued on the backend's stream, so that a collective
// is ordered with the kernels around it and no host waits for it. libnccl is loaded at run time, as libcudnn is:
// a CUDA build runs on machines without NCCL until several GPU ranks are asked for. MPI carries what NCCL does
// not: the unique id that rank 0 creates (as llm.c shares it), and the host-side collectives.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"
#include "ops/backend.h"

namespace qft {

#ifdef QFT_WITH_MPI
std::unique_ptr<Communicator> make_mpi_communicator(const RankLayout& layout);  // dist/mpi_communicator.cpp
#endif

namespace {

// The NCCL calls qft makes: the member that holds each, and its symbol.
#define QFT_NCCL_CALLS(X)                                                                                    \
  X(get_unique_id, ncclGetUniqueId) X(comm_init_rank, ncclCommInitRank) X(comm_destroy, ncclCommDestroy)     \
  X(comm_abort, ncclCommAbort) X(error_string, ncclGetErrorString) X(last_error, ncclGetLastError)            \
  X(group_start, ncclGroupStart) X(group_end, ncclGroupEnd) X(send, ncclSend) X(recv, ncclRecv)               \
  X(all_gather, ncclAllGather) X(broadcast, ncclBroadcast)

// Those calls, from the library loaded at run time.
struct NcclLibrary {
#define QFT_NCCL_MEMBER(member, symbol) decltype(&symbol) member = nullptr;
  QFT_NCCL_CALLS(QFT_NCCL_MEMBER)
#undef QFT_NCCL_MEMBER

  // QFT_NCCL_LIBRARY names another file than libnccl.so.2. Throws Error naming what is missing.
  static NcclLibrary open() {
    const char* env = std::getenv("QFT_NCCL_LIBRARY");
    const std::string name = env && *env ? env : "libnccl.so.2";
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);  // kept for the process's life, as libcudnn's
    if (!handle) {
      throw Error("several GPU ranks need NCCL, and " + name + " cannot be loaded (" + dlerror() +
                  "); install NCCL (libnccl2) or set QFT_NCCL_LIBRARY to its path");
    }
    NcclLibrary lib;
#define QFT_NCCL_BIND(member, symbol)                                                                  \
  lib.member = reinterpret_cast<decltype(&symbol)>(dlsym(handle, #symbol));                            \
  if (!lib.member) throw Error(name + " lacks " #symbol ": NCCL 2.18 or newer is needed");
    QFT_NCCL_CALLS(QFT_NCCL_BIND)
#undef QFT_NCCL_BIND
    return lib;
  }
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const RankLayout& layout, Backend& be)
      : Communicator(layout), lib_(NcclLibrary::open()), stream_(static_cast<cudaStream_t>(be.device_stream())) {
    if (!stream_) throw Error("NCCL runs on a GPU backend; " + be.name() + " has no CUDA stream");
    if (layout.distributed()) {
#ifdef QFT_WITH_MPI
      host_ = make_mpi_communicator(layout);
#else
      throw UnsupportedError("several GPU ranks share NCCL's id over MPI, and qft was built without it: install "
                             "libopenmpi-dev (scripts/setup.sh) and rebuild");
#endif
    }
    ncclUniqueId id{};
    if (rank() == 0) check(lib_.get_unique_id(&id), "ncclGetUniqueId");
    if (host_) {
      std::string bytes(reinterpret_cast<const char*>(&id), sizeof id);  // rank 0's id, to every rank
      host_->broadcast_host(bytes, 0);
      std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(&id));
    }
    check(lib_.comm_init_rank(&comm_, world_size(), id, rank()), "ncclCommInitRank");
  }
  ~NcclCommunicator() override {
    if (comm_) lib_.comm_destroy(comm_);
  }

  std::string name() const override { return "NCCL"; }
  void all_to_all(void* recv, const void* send, size_t bytes) override {
    group([&] {
      for (int r = 0; r < world_size(); ++r) {
        check(lib_.send(at(send, size_t(r) * bytes), bytes, ncclUint8, r, comm_, stream_), "ncclSend");
        check(lib_.recv(at(recv, size_t(r) * bytes), bytes, ncclUint8, r, comm_, stream_), "ncclRecv");
      }
    });
  }
  void all_gather(void* recv, const void* send, size_t bytes) override {
    check(lib_.all_gather(send, recv, bytes, ncclUint8, comm_, stream_), "ncclAllGather");
  }
  void all_to_all_v(void* recv, const std::vector<size_t>& recv_bytes, const void* send,
                    const std::vector<size_t>& send_bytes) override {
    check_blocks(recv_bytes);
    check_blocks(send_bytes);
    group([&] {
      size_t in = 0, out = 0;
      for (int r = 0; r < world_size(); ++r) {  // an empty block is skipped on both sides, as the sizes agree
        const size_t s = send_bytes[size_t(r)], g = recv_bytes[size_t(r)];
        if (s) check(lib_.send(at(send, out), s, ncclUint8, r, comm_, stream_), "ncclSend");
        if (g) check(lib_.recv(at(recv, in), g, ncclUint8, r, comm_, stream_), "ncclRecv");
        out += s;
        in += g;
      }
    });
  }
  void all_gather_v(void* data, const std::vector<size_t>& bytes) override {
    check_blocks(bytes);
    std::vector<size_t> offset(bytes.size(), 0);
    for (size_t r = 1; r < bytes.size(); ++r) offset[r] = offset[r - 1] + bytes[r - 1];
    const size_t me = size_t(rank());
    group([&] {
      for (int r = 0; r < world_size(); ++r) {
        if (r == rank()) continue;
        if (bytes[me]) check(lib_.send(at(data, offset[me]), bytes[me], ncclUint8, r, comm_, stream_), "ncclSend");
        if (bytes[size_t(r)]) {
          check(lib_.recv(at(data, offset[size_t(r)]), bytes[size_t(r)], ncclUint8, r, comm_, stream_), "ncclRecv");
        }
      }
    });
  }
  void broadcast(void* data, size_t bytes, int root) override {
    check(lib_.broadcast(data, data, bytes, ncclUint8, root, comm_, stream_), "ncclBroadcast");
  }
  void barrier() override {
    if (cudaStreamSynchronize(stream_) != cudaSuccess) throw Error("barrier: the rank's queued work failed");
    if (host_) host_->barrier();
  }
  std::vector<double> all_gather_host(double value) override {
    return host_ ? host_->all_gather_host(value) : std::vector<double>{value};
  }
  void broadcast_host(std::string& text, int root) override {
    if (host_) host_->broadcast_host(text, root);
  }
  void end_every_rank(int exit_code) override {
    if (comm_) lib_.comm_abort(comm_);  // frees this rank's peers from collectives it will never join
    if (host_) host_->abort_job(exit_code);
  }

 private:
  static void* at(void* base, size_t offset) { return static_cast<uint8_t*>(base) + offset; }
  static const void* at(const void* base, size_t offset) { return static_cast<const uint8_t*>(base) + offset; }
  // Point-to-point calls of one exchange are fused into one group, which NCCL needs to progress them together.
  template <class F>
  void group(F&& calls) {
    check(lib_.group_start(), "ncclGroupStart");
    try {
      calls();
    } catch (...) {
      lib_.group_end();
      throw;
    }
    check(lib_.group_end(), "ncclGroupEnd");
  }
  void check_blocks(const std::vector<size_t>& bytes) const {
    if (int(bytes.size()) != world_size()) {
      throw Error("NCCL: " + std::to_string(bytes.size()) + " block sizes for " + std::to_string(world_size()) + " ranks");
    }
  }
  void check(ncclResult_t rc, const char* call) const {
    if (rc == ncclSuccess) return;
    const char* detail = comm_ ? lib_.last_error(comm_) : nullptr;
    throw Error(std::string(call) + " on rank " + std::to_string(rank()) + ": " + lib_.error_string(rc) +
                (detail && *detail ? std::string(" (") + detail + ")" : std::string()));
  }

  NcclLibrary lib_;
  cudaStream_t stream_;
  std::unique_ptr<Communicator> host_;  // MPI, with several ranks
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const RankLayout& layout, Backend& be) {
  return std::make_unique<NcclCommunicator>(layout, be);
}

}  // namespace qft
