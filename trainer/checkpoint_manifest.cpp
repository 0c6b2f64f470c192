#include "trainer/checkpoint_manifest.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
#include "core/json_file.h"

namespace qft {

namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "DONE";

std::string hex128(XXH128_hash_t h) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

std::string hash_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FileError(path, std::string("cannot open: ") + std::strerror(errno));
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
  XXH3_128bits_reset(state.get());
  std::vector<char> buf(size_t(4) << 20);
  ssize_t n;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0) XXH3_128bits_update(state.get(), buf.data(), size_t(n));
  const int err = errno;
  ::close(fd);
  if (n < 0) throw FileError(path, std::string("read error: ") + std::strerror(err));
  return hex128(XXH3_128bits_digest(state.get()));
}

// name -> size of every entry of dir but the manifest; anything but a regular file is refused.
std::map<std::string, uintmax_t> listed_files(const std::string& dir) {
  std::map<std::string, uintmax_t> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == kManifest) continue;
    if (!it->is_regular_file() || it->is_symlink()) throw FileError(it->path().string(), "is not a regular file; a checkpoint holds only files");
    out[name] = it->file_size();
  }
  if (ec) throw FileError(dir, "cannot list: " + ec.message());
  return out;
}

bool is_large(const std::string& name) { return name.size() > 12 && name.substr(name.size() - 12) == ".safetensors"; }

}  // namespace

void write_manifest(const std::string& dir) {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& [name, bytes] : listed_files(dir)) {
    files[name] = {{"bytes", bytes}, {"xxh3_128", hash_file((fs::path(dir) / name).string())}};
  }
  write_file_atomic((fs::path(dir) / kManifest).string(), nlohmann::json{{"files", files}}.dump() + "\n");
}

void verify_manifest(const std::string& dir, bool hash_large) {
  const std::string path = (fs::path(dir) / kManifest).string();
  const std::string text = read_text_file(path, size_t(1) << 20);
  const auto refuse = [&](const std::string& what) { throw FileError(path, "the checkpoint is damaged: " + what); };
  if (text.empty()) refuse("DONE lists no files (a checkpoint of a qft older than 0.1.0 with content hashes)");
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  // Written as one canonical line, so that any change to DONE itself is seen too.
  if (j.is_discarded() || !j.is_object() || !j.contains("files") || !j["files"].is_object() || j.dump() + "\n" != text) {
    refuse("DONE is not the manifest qft wrote");
  }
  const std::map<std::string, uintmax_t> present = listed_files(dir);
  for (const auto& [name, bytes] : present) {
    if (!j["files"].contains(name)) refuse(name + " is not one of the checkpoint's files");
  }
  for (const auto& [name, entry] : j["files"].items()) {
    const auto it = present.find(name);
    if (it == present.end()) refuse(name + " is missing");
    if (!entry.is_object() || !entry.contains("bytes") || !entry.contains("xxh3_128") || !entry["xxh3_128"].is_string()) {
      refuse("the entry of " + name + " is malformed");
    }
    if (entry["bytes"] != it->second) {
      refuse(name + " has " + std::to_string(it->second) + " bytes, not the " + entry["bytes"].dump() + " recorded");
    }
    if (!hash_large && is_large(name)) continue;
    if (hash_file((fs::path(dir) / name).string()) != entry["xxh3_128"].get<std::string>()) {
      refuse(name + "'s contents differ from those written (content hash mismatch)");
    }
  }
}

}  // namespace qft
