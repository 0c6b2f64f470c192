#pragma once
// safetensors: a memory-mapped, fully validated reader and an atomic writer.
// Format: u64 little-endian header length N, N bytes of JSON header, then the data section.
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace qft {

struct SafeTensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  size_t begin = 0;  // byte offsets into the data section
  size_t end = 0;
};

class SafeTensorsFile {
 public:
  explicit SafeTensorsFile(const std::string& path);  // throws FileError naming the path and the problem
  ~SafeTensorsFile();
  SafeTensorsFile(SafeTensorsFile&& o) noexcept;
  SafeTensorsFile& operator=(SafeTensorsFile&&) = delete;
  SafeTensorsFile(const SafeTensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<SafeTensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafeTensorInfo* find(std::string_view name) const;  // nullptr if absent
  const void* data(const SafeTensorInfo& t) const { return data_ + t.begin; }
  HostTensor read(std::string_view name) const;          // a copy in the stored dtype
  std::vector<float> read_f32(std::string_view name) const;  // converted from F32/F16/BF16/F64

 private:
  void parse_header(std::string_view header, size_t data_size);

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;
  std::vector<SafeTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensor = std::pair<std::string, const HostTensor*>;

// Writes to path.tmp and renames, so a crash never leaves a half-written file under the final name.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace qft
