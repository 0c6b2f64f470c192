// qft train --config FILE [--set key=value ...]: fine-tune every parameter of a LLaMA model.
#include <string>
#include <vector>

#include "cmd/commands.h"
#include "trainer/config.h"
#include "trainer/train_loop.h"

namespace qft::cmd {

namespace {

struct TrainOptions {
  std::string config;
  std::vector<std::string> overrides;
};

}  // namespace

void set_train_command(CLI::App& app) {
  auto opts = std::make_shared<TrainOptions>();
  CLI::App* sub = app.add_subcommand("train", "Fine-tune every parameter of a LLaMA model (see docs/config.md)");
  sub->add_option("--config,-c", opts->config, "Run config (JSON)")->required();
  sub->add_option("--set", opts->overrides, "Override a key: --set train.lr=3e-5 (repeatable; VALUE is JSON or a string)");
  sub->callback([opts] {
    RunConfig cfg = RunConfig::load(opts->config);
    for (const auto& o : opts->overrides) cfg.apply_override(o);
    run_training(cfg);
  });
}

}  // namespace qft::cmd
