#pragma once
// The --config / --set pair shared by the subcommands that read a run config.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "trainer/config.h"

namespace qft::cmd {

struct RunConfigOptions {
  std::string config;
  std::vector<std::string> overrides;

  void add_to(CLI::App* sub, bool required) {
    auto* opt = sub->add_option("--config,-c", config, "Run config (JSON)");
    if (required) opt->required();
    sub->add_option("--set", overrides, "Override a key: --set train.lr=3e-5 (repeatable; VALUE is JSON or a string)");
  }
  // The file (or the defaults when none was given) with every --set applied in order.
  RunConfig load() const {
    RunConfig cfg = config.empty() ? RunConfig{} : RunConfig::load(config);
    for (const auto& o : overrides) cfg.apply_override(o);
    return cfg;
  }
};

}  // namespace qft::cmd
