#pragma once
// Where this process stands among the ranks of a job, read once from its launcher's environment: mpirun (Open
// MPI), MPICH's hydra, or Slurm's srun. Without a launcher the job is one rank, today's single-process path.
#include <functional>
#include <string>

namespace qft {

struct RankLayout {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        // among the ranks of this node: which GPU the rank takes
  std::string launcher = "none";
  bool distributed() const { return world_size > 1; }
};

// Looks variables up through `env` (getenv, or a table in tests). Throws ConfigError naming the variable when
// one is not a number or the numbers contradict each other (a rank outside the world, say).
RankLayout rank_layout_from(const std::function<const char*(const char*)>& env);
RankLayout rank_layout_from_environment();

}  // namespace qft
