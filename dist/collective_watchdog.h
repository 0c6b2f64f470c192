#pragma once
// Watches one rank's blocking collectives: a call that has waited longer than the time-out is reported on stderr
// and ends the process with exit 1, so that the launcher ends the other ranks, rather than the job waiting forever
// for a rank that is stuck (a hung filesystem, a stopped process). MPI offers no time-out of its own.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace qft {

class CollectiveWatchdog {
 public:
  CollectiveWatchdog(int rank, int world_size) : rank_(rank), world_size_(world_size) {}
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // Starts watching (0: stop watching).
  void set_timeout(int seconds);

  // Marks `call` as waiting for the life of the guard.
  class Watch {
   public:
    Watch(CollectiveWatchdog& dog, const char* call);
    ~Watch();
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

   private:
    CollectiveWatchdog& dog_;
  };

 private:
  void watch();  // the thread

  const int rank_, world_size_;
  std::atomic<const char*> call_{nullptr};  // the collective waiting now, or null
  std::atomic<int64_t> since_ms_{0};        // since when (steady clock)
  std::atomic<int> timeout_s_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace qft
