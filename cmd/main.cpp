// qft: quantized full-parameter tuning of LLaMA-family models. Errors are caught here and nowhere deeper.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/version.h"
#include "cuda/device_info.h"

namespace {

std::string version_text() {
  const qft::DeviceInfo d = qft::probe_cuda();
  std::string s = std::string("qft ") + QFT_VERSION + "\nCUDA compiled in: " + (d.compiled ? "yes" : "no");
  if (d.compiled) {
    s += " (runtime " + std::to_string(d.runtime_version / 1000) + "." + std::to_string(d.runtime_version % 1000 / 10) +
         ", cuBLASLt " + std::to_string(d.cublaslt_version) + ")";
    s += "\nGPU visible: ";
    s += d.device_count > 0 ? "yes, " + std::to_string(d.device_count) + " (" + d.device_name + ")" : "no (" + d.error + ")";
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qft: full-parameter fine-tuning of LLaMA models with INT8 training state"};
  app.require_subcommand(1);
  app.set_version_flag("--version,-V", version_text);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Debug logging");
  qft::cmd::set_inspect_command(app);
  qft::cmd::set_eval_command(app);
  qft::cmd::set_train_command(app);
  qft::cmd::set_config_command(app);
  qft::cmd::set_plan_command(app);
  qft::cmd::set_export_command(app);
  qft::cmd::set_generate_command(app);
  qft::cmd::set_tokenize_command(app);
  // Logs go to stderr: stdout carries only results (scores, generated text, --json), so scripts can read it.
  spdlog::set_default_logger(spdlog::stderr_color_mt("qft"));
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  app.parse_complete_callback([&] { spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info); });
  // CLI11 reports a misspelt command as "A subcommand is required": name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::cerr << "qft: error: unknown command '" << argv[1] << "'; the commands are " << names << " (qft --help)\n";
      return 1;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;  // --help and --version exit 0; every bad argument exits 1
  } catch (const qft::Interrupted& e) {
    std::cerr << "qft: " << e.what() << "\n";
    return 128 + e.signal();
  } catch (const std::filesystem::filesystem_error& e) {  // a path the checks above did not foresee: still bad input
    std::cerr << "qft: error: " << e.path1().string() << ": " << e.code().message() << "\n";
    return 1;
  } catch (const qft::Error& e) {
    std::cerr << "qft: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "qft: internal error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
