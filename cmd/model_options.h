#pragma once
// The --model / --device / --debug-sync options shared by the subcommands that run a trained model.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "cmd/commands.h"
#include "trainer/device.h"

namespace qft::cmd {

struct ModelOptions {
  std::string path;  // --model
  Device device = Device::Auto;
  bool debug_sync = false;

  void add_to(CLI::App* sub) {
    sub->add_option("--model", path, "HF LLaMA model directory or qft checkpoint (step_*/)")->required();
    add_enum_option(sub, "--device", device, "auto (CUDA when a GPU is visible; the default), cpu or cuda");
    sub->add_flag("--debug-sync", debug_sync, "CUDA: synchronize after every op so that a fault names its op");
  }
  std::unique_ptr<Backend> backend() const { return make_backend(device, debug_sync); }
};

}  // namespace qft::cmd
