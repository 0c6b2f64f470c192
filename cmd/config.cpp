// qft config: print the effective run config (defaults + file + --set), or the documentation of every key.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cmd/commands.h"
#include "cmd/run_config_options.h"
#include "core/error.h"
#include "trainer/config.h"

namespace qft::cmd {

namespace {

struct ConfigOptions {
  RunConfigOptions run;
  bool docs = false;
};

void print_docs() {
  std::printf("| key | default | meaning |\n|---|---|---|\n");
  for (const auto& k : config_key_docs()) std::printf("| `%s` | `%s` | %s |\n", k.key.c_str(), k.default_json.c_str(), k.doc.c_str());
}

}  // namespace

void set_config_command(CLI::App& app) {
  auto opts = std::make_shared<ConfigOptions>();
  CLI::App* sub = app.add_subcommand("config", "Print the effective run config, or document every key (--docs)");
  opts->run.add_to(sub, false);
  sub->add_flag("--docs", opts->docs, "Print a Markdown table of every key, its default and meaning");
  sub->callback([opts] {
    if (opts->docs && (!opts->run.config.empty() || !opts->run.overrides.empty())) {
      throw Error("config --docs documents every key and takes no --config or --set");
    }
    if (opts->docs) return print_docs();
    std::cout << opts->run.load().to_json() << "\n";
  });
}

}  // namespace qft::cmd
