// qft plan: will it fit? The memory a run needs, from a dry run of its own allocation code; no weights needed.
#include <iostream>
#include <string>
#include <vector>

#include "cmd/commands.h"
#include "cmd/run_config_options.h"
#include "trainer/config.h"
#include "trainer/plan.h"

namespace qft::cmd {

namespace {

struct PlanOptions {
  RunConfigOptions run;
  bool json = false;
  bool cpu = false;
  double gpu_memory_gib = 0;  // 0: plan as on a card with room to spare
};

}  // namespace

void set_plan_command(CLI::App& app) {
  auto opts = std::make_shared<PlanOptions>();
  CLI::App* sub = app.add_subcommand("plan", "Memory a training run needs (GPU by default), before any download");
  opts->run.add_to(sub, true);
  sub->add_flag("--json", opts->json, "Print one JSON object");
  sub->add_flag("--cpu", opts->cpu,
                "Plan for the CPU backend: fp32 activations, no CUDA context allowance (also when the config says "
                "device=cpu)");
  sub->add_option("--gpu-memory", opts->gpu_memory_gib,
                  "Plan for a GPU with this many GiB: the run then picks what fits, as qft train does on it, and the "
                  "plan says whether it fits")
      ->check(CLI::Range(0.01, 1.0e6));
  sub->callback([opts] {
    const RunConfig cfg = opts->run.load();
    cfg.validate(false);
    const LlamaConfig arch = plan_architecture(cfg);
    const bool cpu = opts->cpu || cfg.device == Device::Cpu;  // auto plans for the GPU it would pick
    const size_t available = opts->gpu_memory_gib > 0 ? size_t(opts->gpu_memory_gib * double(size_t(1) << 30)) : SIZE_MAX;
    const MemoryPlan plan = plan_memory(cfg, arch, plan_target(cpu ? Device::Cpu : Device::Cuda), available);
    std::cout << (opts->json ? plan_json(plan, available) + "\n" : format_plan(plan, cfg, arch, available));
  });
}

}  // namespace qft::cmd
