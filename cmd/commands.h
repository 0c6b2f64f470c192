#pragma once
// One file per subcommand: each registers its options and a callback that calls the library.
#include <CLI/CLI.hpp>

namespace qft::cmd {

void set_inspect_command(CLI::App& app);
void set_eval_command(CLI::App& app);
void set_train_command(CLI::App& app);
void set_config_command(CLI::App& app);
void set_plan_command(CLI::App& app);
void set_export_command(CLI::App& app);
void set_generate_command(CLI::App& app);

}  // namespace qft::cmd
