#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "core/json_file.h"

namespace qft {

namespace {

constexpr size_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit

size_t checked_offset(const nlohmann::json& v, const std::string& path, const std::string& name) {
  if (!v.is_number_unsigned()) throw FileError(path, "tensor '" + name + "': data_offsets must be non-negative integers");
  return v.get<size_t>();
}

}  // namespace

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
  require_regular_file(path, "a safetensors file");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FileError(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw FileError(path, std::string("cannot stat: ") + std::strerror(errno));
  }
  map_size_ = size_t(st.st_size);
  if (map_size_ < 8) {
    ::close(fd);
    throw FileError(path, "not a safetensors file: " + std::to_string(map_size_) + " bytes, too short for a header");
  }
  map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw FileError(path, std::string("cannot mmap: ") + std::strerror(errno));
  }
  try {
    const auto* bytes = static_cast<const uint8_t*>(map_);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
    if (header_len > kMaxHeaderBytes || header_len > map_size_ - 8) {
      throw FileError(path, "header length " + std::to_string(header_len) + " does not fit in a file of " +
                                std::to_string(map_size_) + " bytes (truncated or not safetensors)");
    }
    data_ = bytes + 8 + header_len;
    parse_header(std::string_view(reinterpret_cast<const char*>(bytes + 8), header_len),
                 map_size_ - 8 - header_len);
  } catch (...) {
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw;
  }
}

SafeTensorsFile::SafeTensorsFile(SafeTensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      map_(o.map_),
      map_size_(o.map_size_),
      data_(o.data_),
      tensors_(std::move(o.tensors_)),
      metadata_(std::move(o.metadata_)) {
  o.map_ = nullptr;
}

SafeTensorsFile::~SafeTensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

void SafeTensorsFile::parse_header(std::string_view header, size_t data_size) {
  const nlohmann::json j = parse_json(header, path_ + " (header)");
  if (!j.is_object()) throw FileError(path_, "header is not a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw FileError(path_, "__metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw FileError(path_, "__metadata__ key '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets")) {
      throw FileError(path_, "tensor '" + name + "': entry needs dtype, shape and data_offsets");
    }
    SafeTensorInfo t;
    t.name = name;
    if (!v["dtype"].is_string() || !dtype_from_name(v["dtype"].get<std::string>(), &t.dtype)) {
      throw FileError(path_, "tensor '" + name + "': unknown dtype " + v["dtype"].dump());
    }
    if (!v["shape"].is_array()) throw FileError(path_, "tensor '" + name + "': shape must be an array");
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw FileError(path_, "tensor '" + name + "': shape " + v["shape"].dump() + " is invalid");
      t.shape.push_back(d.get<int64_t>());
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2) throw FileError(path_, "tensor '" + name + "': data_offsets must be [begin, end]");
    t.begin = checked_offset(off[0], path_, name);
    t.end = checked_offset(off[1], path_, name);
    if (t.begin > t.end || t.end > data_size) {
      throw FileError(path_, "tensor '" + name + "': data_offsets [" + std::to_string(t.begin) + ", " +
                                 std::to_string(t.end) + "] lie outside the data section of " +
                                 std::to_string(data_size) + " bytes");
    }
    // Overflow-safe: a shape whose byte size exceeds the data section can never match.
    long double want = dtype_size(t.dtype);
    for (int64_t d : t.shape) want *= static_cast<long double>(d);
    if (want != static_cast<long double>(t.end - t.begin)) {
      throw FileError(path_, "tensor '" + name + "': shape " + shape_str(t.shape) + " of " + dtype_name(t.dtype) +
                                 " needs " + std::to_string(static_cast<unsigned long long>(want)) + " bytes but data_offsets hold " +
                                 std::to_string(t.end - t.begin));
    }
    tensors_.push_back(std::move(t));
  }
  std::vector<const SafeTensorInfo*> by_offset;
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafeTensorInfo* a, const SafeTensorInfo* b) {  // an empty tensor before one at its offset
              return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
            });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      throw FileError(path_, "tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name + "' overlap");
    }
  }
}

const SafeTensorInfo* SafeTensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

HostTensor SafeTensorsFile::read(std::string_view name) const {
  const SafeTensorInfo* t = find(name);
  if (!t) throw TensorError(path_, std::string(name), "not found");
  HostTensor out(t->dtype, t->shape);
  if (t->end > t->begin) std::memcpy(out.bytes.data(), data(*t), t->end - t->begin);  // memcpy(nullptr, ...) is UB
  return out;
}

std::vector<float> SafeTensorsFile::read_f32(std::string_view name) const {
  const SafeTensorInfo* t = find(name);
  if (!t) throw TensorError(path_, std::string(name), "not found");
  std::vector<float> out(size_t(shape_numel(t->shape)));
  try {
    convert_to_f32(t->dtype, data(*t), out.data(), out.size());
  } catch (const Error& e) {
    throw TensorError(path_, std::string(name), e.what());
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (t->bytes.size() != size_t(t->numel()) * dtype_size(t->dtype)) {
      throw TensorError(path, name, "byte size does not match shape " + shape_str(t->shape));
    }
    header[name] = {{"dtype", dtype_name(t->dtype)}, {"shape", t->shape}, {"data_offsets", {offset, offset + t->bytes.size()}}};
    offset += t->bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  const std::string tmp = temp_path_beside(path);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw FileError(tmp, std::string("cannot create: ") + std::strerror(errno));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const auto& nt : tensors) {
    const auto& b = nt.second->bytes;
    ok = ok && (b.empty() || std::fwrite(b.data(), 1, b.size(), f) == b.size());  // fwrite(nullptr, ...) is UB
  }
  ok = (std::fflush(f) == 0) && ok;
  ok = (::fsync(::fileno(f)) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw FileError(path, std::string("write failed: ") + std::strerror(errno));
  }
}

}  // namespace qft
