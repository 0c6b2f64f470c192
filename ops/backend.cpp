#include "ops/backend.h"

#include "core/error.h"

namespace qft {

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    owner_ = o.owner_;
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    tag_ = o.tag_;
    dtype_ = o.dtype_;
    host_ = o.host_;
    o.owner_ = nullptr;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void Buffer::reset() {
  if (owner_ && ptr_) owner_->release(ptr_, bytes_, tag_, host_);
  owner_ = nullptr;
  ptr_ = nullptr;
  bytes_ = 0;
}

Backend::Backend(DType act_dtype) : act_dtype_(act_dtype) {
  if (act_dtype != DType::F32 && act_dtype != DType::BF16) {
    throw Error(std::string("activations must be F32 or BF16, not ") + dtype_name(act_dtype));
  }
}

Buffer Backend::alloc_act(int64_t elems, const char* tag) {
  return alloc_typed(act_bytes(elems), tag, act_dtype_);
}

std::vector<float> Backend::read_f32(CAct src, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  if (src.dtype == DType::F32) {
    copy_to_host(out.data(), src.ptr, out.size() * 4);
    return out;
  }
  std::vector<uint8_t> raw(size_t(n) * act_size(src.dtype));
  copy_to_host(raw.data(), src.ptr, raw.size());
  convert_to_f32(src.dtype, raw.data(), out.data(), out.size());
  return out;
}

Buffer Backend::alloc(size_t bytes, const char* tag) { return alloc_typed(bytes, tag, DType::F32); }

namespace {

void count_alloc(MemoryStats& stats, size_t bytes, const char* tag) {
  stats.current_bytes += bytes;
  stats.allocations += 1;
  stats.current_by_tag[tag] += bytes;
  if (stats.current_bytes > stats.peak_bytes) {
    stats.peak_bytes = stats.current_bytes;
    stats.at_peak_by_tag = stats.current_by_tag;
  }
}

}  // namespace

Buffer Backend::alloc_typed(size_t bytes, const char* tag, DType dtype) {
  void* p = raw_alloc(bytes == 0 ? 1 : bytes);
  if (!p) {
    throw Error(name() + ": out of memory allocating " + std::to_string(bytes) + " bytes (" +
                std::to_string(stats_.current_bytes) + " bytes in use)");
  }
  count_alloc(stats_, bytes, tag);
  return Buffer(this, p, bytes, tag, dtype);
}

Buffer Backend::alloc_host(size_t bytes, const char* tag) {
  void* p = raw_alloc_host(bytes == 0 ? 1 : bytes);
  if (!p) {
    throw Error(name() + ": out of host memory allocating " + std::to_string(bytes) + " bytes (" +
                std::to_string(host_stats_.current_bytes) + " bytes in use)");
  }
  count_alloc(host_stats_, bytes, tag);
  return Buffer(this, p, bytes, tag, DType::F32, true);
}

void Backend::release(void* p, size_t bytes, const char* tag, bool host) {
  MemoryStats& stats = host ? host_stats_ : stats_;
  if (host) {
    raw_free_host(p, bytes == 0 ? 1 : bytes);
  } else {
    raw_free(p);
  }
  stats.current_bytes -= bytes;
  stats.current_by_tag[tag] -= bytes;
}

const char* op_name(Op op) {
  switch (op) {
#define QFT_OP_NAME(name) \
  case Op::name:          \
    return #name;
    QFT_BACKEND_OPS(QFT_OP_NAME)
#undef QFT_OP_NAME
  }
  return "unknown op";
}

}  // namespace qft
