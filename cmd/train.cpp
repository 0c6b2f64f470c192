// qft train --config FILE [--set key=value ...]: fine-tune every parameter of a LLaMA model.
#include "cmd/commands.h"
#include "cmd/run_config_options.h"
#include "trainer/train_loop.h"

namespace qft::cmd {

void set_train_command(CLI::App& app) {
  auto opts = std::make_shared<RunConfigOptions>();
  CLI::App* sub = app.add_subcommand("train", "Fine-tune every parameter of a LLaMA model (see docs/config.md)");
  opts->add_to(sub, true);
  sub->callback([opts] { run_training(opts->load()); });
}

}  // namespace qft::cmd
