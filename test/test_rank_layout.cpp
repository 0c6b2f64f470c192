// The rank layout read from launchers' environments: Open MPI, MPICH, Slurm steps, none; and bad values named.
#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "core/error.h"
#include "dist/rank_layout.h"

using namespace qft;

namespace {

RankLayout layout_of(const std::map<std::string, std::string>& vars) {
  return rank_layout_from([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

}  // namespace

TEST_CASE("the rank layout comes from the launcher's environment", "[dist]") {
  const RankLayout none = layout_of({});
  CHECK(none.rank == 0);
  CHECK(none.world_size == 1);
  CHECK_FALSE(none.distributed());

  const RankLayout ompi = layout_of({{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                                     {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"SLURM_PROCID", "0"},
                                     {"SLURM_STEP_NUM_TASKS", "2"}});
  CHECK(ompi.launcher == "Open MPI");  // its own variables win inside a Slurm allocation
  CHECK(ompi.rank == 5);
  CHECK(ompi.world_size == 8);
  CHECK(ompi.local_rank == 1);
  CHECK(ompi.distributed());

  const RankLayout mpich = layout_of({{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}});
  CHECK(mpich.launcher == "MPICH");
  CHECK(mpich.rank == 2);
  CHECK(mpich.local_rank == 0);

  const RankLayout srun = layout_of({{"SLURM_PROCID", "3"}, {"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_LOCALID", "3"}});
  CHECK(srun.launcher == "Slurm");
  CHECK(srun.world_size == 4);
  CHECK(srun.local_rank == 3);

  // An sbatch script's own shell: the allocation has 8 tasks, but no srun step runs this process.
  CHECK_FALSE(layout_of({{"SLURM_NTASKS", "8"}}).distributed());
}

TEST_CASE("a contradictory or malformed launcher environment is refused with the variable's name",
          "[dist][bad-input]") {
  auto refused = [](const std::map<std::string, std::string>& vars, const std::string& name) {
    try {
      layout_of(vars);
      FAIL("accepted");
    } catch (const ConfigError& e) {
      INFO(e.what());
      CHECK(e.key() == name);
    }
  };
  refused({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "2"}}, "OMPI_COMM_WORLD_RANK");
  refused({{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "2"}}, "OMPI_COMM_WORLD_RANK");
  refused({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "-1"}}, "OMPI_COMM_WORLD_SIZE");
  refused({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "0"}}, "OMPI_COMM_WORLD_SIZE");
  refused({{"PMI_RANK", "1"}}, "PMI_SIZE");
  refused({{"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_LOCALID", "2"}}, "SLURM_LOCALID");
  refused({{"PMI_RANK", "99999999999"}, {"PMI_SIZE", "2"}}, "PMI_RANK");
}
