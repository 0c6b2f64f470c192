#pragma once
// Time per op kind, for `qft train --profile`: each op's wall time from its start to its end. A backend that runs
// ops asynchronously (CUDA) waits for each op at its end while profiling, so that the time is the op's own.
// An op composed of other ops (attention_backward converting its fp32 sums) counts once, as itself.
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace qft {

struct OpProfile {
  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Entry> ops;
  double step_seconds = 0;  // the wall time of the training steps profiled, which the ops' shares refer to
  int64_t steps = 0;

  void add(const char* op, double seconds) {
    Entry& e = ops[op];
    e.seconds += seconds;
    e.calls += 1;
  }
  // One line per op kind, largest first: seconds, share of the step time, calls per step; then the time
  // outside ops (host work between them: allocation, data, the sinks' bookkeeping).
  std::string table() const;
};

// Measures one op for a profile; does nothing without one.
class OpTimer {
 public:
  explicit OpTimer(OpProfile* profile) : profile_(profile) {
    if (profile_) t0_ = std::chrono::steady_clock::now();
  }
  template <class Device>  // anything with synchronize(): waits for the op's end first
  void stop(const char* op, Device& device) {
    if (!profile_) return;
    device.synchronize();
    profile_->add(op, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }

 private:
  OpProfile* profile_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace qft
