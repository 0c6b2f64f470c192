#include "core/stop_signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

namespace qft {

namespace {

// A signal handler can reach nothing but static storage: the one piece of process-wide state in qft.
std::atomic<int> g_first_signal{0};
struct sigaction g_previous_int, g_previous_term;

void on_stop_signal(int sig) {
  int none = 0;
  if (!g_first_signal.compare_exchange_strong(none, sig)) {
    std::signal(sig, SIG_DFL);  // the second one: stop now
    std::raise(sig);
    return;
  }
  const char* msg = "\nqft: stop requested: finishing the current step and saving a checkpoint "
                    "(send the signal again, e.g. Ctrl-C, to stop at once)\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, msg, std::strlen(msg));
}

}  // namespace

StopSignals::StopSignals() {
  g_first_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_previous_int);
  sigaction(SIGTERM, &sa, &g_previous_term);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

int StopSignals::received() const { return g_first_signal.load(); }

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

}  // namespace qft
