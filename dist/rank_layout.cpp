#include "dist/rank_layout.h"

#include <charconv>
#include <cstdlib>

#include "core/error.h"

namespace qft {

namespace {

// One launcher's names for rank, world size and local rank (local rank may be absent: then 0 for one node).
struct LauncherVars {
  const char* launcher;
  const char* rank;
  const char* size;
  const char* local_rank;
};

// Open MPI first: under `srun --mpi=pmix` or inside a Slurm allocation both sets may be present, and the MPI
// runtime's are the ones its communicator uses. Slurm's task count is the step's (srun), not the allocation's:
// a plain `qft train` inside an sbatch script of 8 tasks is one rank, not rank 0 of 8 waiting for the others.
constexpr LauncherVars kLaunchers[] = {
    {"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"MPICH", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
    {"Slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"},
};

int parse_count(const char* name, const char* text) {
  const std::string s(text);
  int v = -1;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0) {
    throw ConfigError("environment", name, "'" + s + "' is not a non-negative integer");
  }
  return v;
}

}  // namespace

RankLayout rank_layout_from(const std::function<const char*(const char*)>& env) {
  for (const LauncherVars& l : kLaunchers) {
    const char* rank = env(l.rank);
    const char* size = env(l.size);
    if (!rank && !size) continue;
    if (!rank || !size) {
      throw ConfigError("environment", rank ? l.size : l.rank,
                        std::string("missing while ") + (rank ? l.rank : l.size) + " is set (" + l.launcher + ")");
    }
    RankLayout out;
    out.launcher = l.launcher;
    out.rank = parse_count(l.rank, rank);
    out.world_size = parse_count(l.size, size);
    if (out.world_size < 1) throw ConfigError("environment", l.size, "a job has at least one rank");
    if (out.rank >= out.world_size) {
      throw ConfigError("environment", l.rank,
                        "rank " + std::to_string(out.rank) + " of a world of " + std::to_string(out.world_size));
    }
    if (const char* local = env(l.local_rank)) out.local_rank = parse_count(l.local_rank, local);
    if (out.local_rank > out.rank) {
      throw ConfigError("environment", l.local_rank,
                        "local rank " + std::to_string(out.local_rank) + " above the rank " + std::to_string(out.rank));
    }
    return out;
  }
  return {};
}

RankLayout rank_layout_from_environment() {
  return rank_layout_from([](const char* name) { return std::getenv(name); });
}

}  // namespace qft
