#include "ops/backend.h"

#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_info.h"

namespace qft {

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    owner_ = o.owner_;
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    tag_ = o.tag_;
    o.owner_ = nullptr;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void Buffer::reset() {
  if (owner_ && ptr_) owner_->release(ptr_, bytes_, tag_);
  owner_ = nullptr;
  ptr_ = nullptr;
  bytes_ = 0;
}

Buffer Backend::alloc(size_t bytes, const char* tag) {
  void* p = raw_alloc(bytes == 0 ? 1 : bytes);
  if (!p) {
    throw Error(name() + ": out of memory allocating " + std::to_string(bytes) + " bytes (" +
                std::to_string(stats_.current_bytes) + " bytes in use)");
  }
  stats_.current_bytes += bytes;
  stats_.allocations += 1;
  stats_.current_by_tag[tag] += bytes;
  if (stats_.current_bytes > stats_.peak_bytes) {
    stats_.peak_bytes = stats_.current_bytes;
    stats_.at_peak_by_tag = stats_.current_by_tag;
  }
  return Buffer(this, p, bytes, tag);
}

void Backend::release(void* p, size_t bytes, const char* tag) {
  raw_free(p);
  stats_.current_bytes -= bytes;
  stats_.current_by_tag[tag] -= bytes;
}

std::unique_ptr<Backend> make_backend(const std::string& device, bool debug_sync) {
  if (device == "cpu") return std::make_unique<CpuBackend>();
  if (device == "cuda") return make_cuda_backend({0, debug_sync, true});
  if (device == "auto") {
    const DeviceInfo info = probe_cuda();
    if (info.compiled && info.device_count > 0) return make_cuda_backend({0, debug_sync, true});
    return std::make_unique<CpuBackend>();
  }
  throw Error("unknown device '" + device + "' (expected auto, cpu or cuda)");
}

}  // namespace qft
