#include "trainer/device.h"

#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_info.h"

namespace qft {

std::unique_ptr<Backend> make_backend(Device device, bool debug_sync) {
  switch (device) {
    case Device::Cpu:
      return std::make_unique<CpuBackend>();
    case Device::Cuda:
      return make_cuda_backend({0, debug_sync});
    case Device::Auto:
      break;
  }
  const DeviceInfo info = probe_cuda();
  if (info.compiled && info.device_count > 0) return make_cuda_backend({0, debug_sync});
  return std::make_unique<CpuBackend>();
}

}  // namespace qft
