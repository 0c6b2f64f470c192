#include "dist/collective_watchdog.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace qft {

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CollectiveWatchdog::set_timeout(int seconds) {
  timeout_s_ = seconds;
  if (seconds > 0 && !thread_.joinable()) thread_ = std::thread([this] { watch(); });
}

CollectiveWatchdog::Watch::Watch(CollectiveWatchdog& dog, const char* call) : dog_(dog) {
  dog_.since_ms_ = now_ms();
  dog_.call_ = call;
}

CollectiveWatchdog::Watch::~Watch() { dog_.call_ = nullptr; }

void CollectiveWatchdog::watch() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    const int timeout = timeout_s_;
    // Checked four times per time-out (at least once a second): a stuck call is reported within 1.25 time-outs.
    const int64_t period_ms = timeout > 0 ? std::min<int64_t>(1000, int64_t(timeout) * 250) : 1000;
    wake_.wait_for(lock, std::chrono::milliseconds(period_ms), [this] { return stop_; });
    const char* call = call_;
    if (stop_ || timeout <= 0 || !call) continue;
    const int64_t waited_ms = now_ms() - since_ms_;
    if (waited_ms < int64_t(timeout) * 1000) continue;
    std::fprintf(stderr,
                 "qft: error: rank %d of %d: %s has waited %.0f s for the other ranks (dist.timeout_s is %d): one of "
                 "them is stuck or gone; ending this rank so that the launcher ends the job\n",
                 rank_, world_size_, call, double(waited_ms) / 1000.0, timeout);
    std::fflush(stderr);
    std::_Exit(1);
  }
}

}  // namespace qft
