// Compiled instead of device_info.cu when qft is built with -DQFT_CUDA=OFF.
#include "cuda/device_info.h"

namespace qft {

DeviceInfo probe_cuda() {
  DeviceInfo info;
  info.error = "built without CUDA";
  return info;
}

}  // namespace qft
