#include "ops/op_profile.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace qft {

std::string OpProfile::table() const {
  const double steps_d = double(std::max<int64_t>(steps, 1)), step_s = step_seconds / steps_d;
  std::vector<std::pair<std::string, Entry>> rows(ops.begin(), ops.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  char line[160];
  std::snprintf(line, sizeof line, "op profile: %lld steps, %.3f s per step\n  %-26s %10s %8s %11s\n",
                static_cast<long long>(steps), step_s, "op", "s/step", "share", "calls/step");
  std::string out = line;
  double in_ops = 0;
  auto row = [&](const std::string& name, double seconds, const char* calls) {
    const double share = step_seconds > 0 ? 100.0 * seconds / step_seconds : 0.0;
    std::snprintf(line, sizeof line, "  %-26s %10.4f %7.1f%% %11s\n", name.c_str(), seconds / steps_d, share, calls);
    out += line;
  };
  for (const auto& [name, e] : rows) {
    char calls[32];
    std::snprintf(calls, sizeof calls, "%.0f", double(e.calls) / steps_d);
    row(name, e.seconds, calls);
    in_ops += e.seconds;
  }
  row("(outside ops)", std::max(0.0, step_seconds - in_ops), "");
  return out;
}

}  // namespace qft
