#include "trainer/device.h"

#include <string>

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_info.h"

namespace qft {

std::unique_ptr<Backend> make_backend(Device device, bool debug_sync, int gpu) {
  switch (device) {
    case Device::Cpu:
      return std::make_unique<CpuBackend>();
    case Device::Cuda:
      return make_cuda_backend({gpu, debug_sync});
    case Device::Auto:
      break;
  }
  const DeviceInfo info = probe_cuda();
  if (info.compiled && info.device_count > 0 && gpu >= info.device_count) {
    throw DeviceError("this rank would take GPU " + std::to_string(gpu) + " (its local rank) but the node has " +
                      std::to_string(info.device_count) + ": start at most one rank per GPU on each node");
  }
  if (info.compiled && info.device_count > 0) return make_cuda_backend({gpu, debug_sync});
  return std::make_unique<CpuBackend>();
}

}  // namespace qft
