#pragma once
// One file per subcommand: each registers its options and a callback that calls the library.
#include <CLI/CLI.hpp>
#include <string>

#include "trainer/settings.h"

namespace qft::cmd {

// An option whose value is one of an enum's config names ("--device cpu"), parsed straight into the enum.
template <class E>
CLI::Option* add_enum_option(CLI::App* sub, const std::string& name, E& value, const std::string& help) {
  return sub->add_option_function<std::string>(name, [&value](const std::string& v) { value = *parse_enum<E>(v); }, help)
      ->check(CLI::IsMember(enum_names<E>()));
}

void set_inspect_command(CLI::App& app);
void set_eval_command(CLI::App& app);
void set_train_command(CLI::App& app);
void set_config_command(CLI::App& app);
void set_plan_command(CLI::App& app);
void set_export_command(CLI::App& app);
void set_generate_command(CLI::App& app);
void set_tokenize_command(CLI::App& app);

}  // namespace qft::cmd
