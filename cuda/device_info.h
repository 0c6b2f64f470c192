#pragma once
// What the CUDA side can offer, asked without CUDA headers so that any file may include it.
#include <string>

namespace qft {

struct DeviceInfo {
  bool compiled = false;   // built with the CUDA backend
  int runtime_version = 0; // e.g. 13000
  int cublaslt_version = 0; // e.g. 130000
  int device_count = 0;    // usable GPUs; 0 when no driver or device
  std::string device_name; // of device 0
  std::string error;       // why device_count is 0
};

// Never throws: a machine without a driver or GPU yields device_count == 0 and the reason in error.
DeviceInfo probe_cuda();

}  // namespace qft
