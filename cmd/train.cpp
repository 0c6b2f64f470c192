// qft train --config FILE [--set key=value ...]: fine-tune every parameter of a LLaMA model.
#include <optional>
#include <string>

#include "cmd/commands.h"
#include "cmd/run_config_options.h"
#include "trainer/train_loop.h"

namespace qft::cmd {

namespace {

struct TrainOptions {
  RunConfigOptions run;
  std::string resume;
  bool debug_sync = false;
  bool profile = false;
};

}  // namespace

void set_train_command(CLI::App& app) {
  auto opts = std::make_shared<TrainOptions>();
  CLI::App* sub = app.add_subcommand("train", "Fine-tune every parameter of a LLaMA model (see docs/config.md)");
  opts->run.add_to(sub, true);
  sub->add_option("--resume", opts->resume,
                  "Continue a run exactly (weights, momentum, data position, schedule) from a checkpoint; without "
                  "DIR, the latest complete one in output.dir. To start fresh from a checkpoint's weights instead, "
                  "set model.path to it")
      ->expected(0, 1);
  sub->add_flag("--debug-sync", opts->debug_sync, "CUDA: synchronize after every op so that a fault names its op; "
                                                  "log each step's device-to-host reads (the same as --set debug_sync=true)");
  sub->add_flag("--profile", opts->profile, "Time every op of the training steps and log each op kind's share of the "
                                            "step time at the end (the same as --set profile=true)");
  sub->callback([opts, sub] {
    std::optional<std::string> resume;
    if (sub->count("--resume") > 0) resume = opts->resume;
    RunConfig cfg = opts->run.load();
    cfg.debug_sync = cfg.debug_sync || opts->debug_sync;
    cfg.profile = cfg.profile || opts->profile;
    const StopSignals stop;  // a first Ctrl-C or SIGTERM saves a checkpoint and exits 130 / 143
    run_training(cfg, resume, &stop);
  });
}

}  // namespace qft::cmd
