#pragma once
// The device a run asks for, turned into a backend: the one place above cpu/ and cuda/ that knows both.
#include <memory>

#include "ops/backend.h"
#include "trainer/settings.h"

namespace qft {

// Auto picks CUDA when a GPU is usable and the CUDA backend is built, else the CPU. debug_sync (CUDA only)
// waits after every op so that a fault names the op. gpu: which of the node's GPUs (a rank's local rank).
std::unique_ptr<Backend> make_backend(Device device, bool debug_sync = false, int gpu = 0);

}  // namespace qft
