#include "trainer/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "core/version.h"
#include "trainer/checkpoint.h"

namespace qft {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLockFile = ".lock";

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// What a killed process of this run may leave: temporary files and folders (temp_path_beside) and checkpoints
// being discarded.
bool is_leftover(const std::string& name) {
  return (starts_with(name, ".") && name.find(".tmp.") != std::string::npos) || starts_with(name, ".discarded_");
}

// The directory's entries except its lock file, sorted.
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name != kLockFile) out.push_back(name);
  }
  if (ec) throw FileError(dir, "cannot list the output directory: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

std::string first_few(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < 4; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 4) s += ", ... (" + std::to_string(names.size()) + " entries)";
  return s;
}

bool same_directory(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec);
}

// Keeps the metrics records of steps <= last_step. Written beside and renamed, so a crash keeps the old file.
void cut_metrics(const fs::path& path, int last_step) {
  std::ifstream in(path);
  if (!in) return;  // no metrics yet (a fork into a new directory)
  std::string kept, line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    const bool later = j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() > last_step;
    if (!later) kept += line + "\n";
  }
  write_file_atomic(path.string(), kept);
}

}  // namespace

bool is_run_entry(const std::string& name) {
  return name == kLockFile || name == kRunMarker || name == "config.json" || name == "metrics.jsonl" ||
         name == "train.log" || starts_with(name, "step_") || is_leftover(name);
}

void refuse_run_directory(const std::string& path) {
  if (!fs::exists(fs::path(path) / kRunMarker)) return;
  const std::vector<std::string> done = complete_checkpoints(path);
  throw FileError(path, "is a qft run directory, not a model or checkpoint: give one of its checkpoints" +
                            (done.empty() ? std::string(" (it holds none yet)") : " (the newest is " + done.back() + ")"));
}

RunDirectory::RunDirectory(const std::string& dir, const std::optional<std::string>& resume) : dir_(dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) throw FileError(dir, "cannot use as output.dir: " + ec.message());
  if (fs::exists(st) && !fs::is_directory(st)) throw FileError(dir, "output.dir exists and is not a directory");
  if (!fs::exists(st)) {
    created_ = fs::create_directories(dir, ec);
    if (ec) throw FileError(dir, "cannot create the output directory: " + ec.message());
  }
  try {
    // A user's folder gets not even a lock file.
    const std::vector<std::string> names = entries(dir_);
    if (!names.empty() && !fs::exists(fs::path(dir_) / kRunMarker)) {
      throw FileError(dir_, "holds files that are not a qft run (" + first_few(names) +
                                "); qft writes only into a new or empty output.dir, or its own run's. Choose another "
                                "output.dir");
    }
    lock();
    if (resume) check_resume(*resume);
    else check_new_run();
  } catch (...) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    lock_fd_ = -1;
    if (created_) fs::remove_all(dir_, ec);
    throw;
  }
}

RunDirectory::~RunDirectory() {
  std::error_code ec;
  if (!committed_ && created_) fs::remove_all(dir_, ec);  // nothing of an aborted start remains
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock; the lock file stays (removing it would race)
}

void RunDirectory::lock() {
  const std::string path = (fs::path(dir_) / kLockFile).string();
  lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (lock_fd_ < 0) throw FileError(path, std::string("cannot open the run's lock file: ") + std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    const ssize_t n = ::pread(lock_fd_, buf, sizeof buf - 1, 0);
    std::string holder(buf, n > 0 ? size_t(n) : 0);
    holder.erase(std::remove(holder.begin(), holder.end(), '\n'), holder.end());
    ::close(lock_fd_);
    lock_fd_ = -1;
    throw FileError(dir_, "is in use by another qft process" + (holder.empty() ? std::string() : " (pid " + holder + ")") +
                              "; wait for it to finish, or choose another output.dir");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
    throw FileError(path, std::string("cannot write the run's lock file: ") + std::strerror(errno));
  }
}

void RunDirectory::check_new_run() {
  if (!fs::exists(fs::path(dir_) / kRunMarker)) return;  // new or empty
  const std::vector<std::string> done = complete_checkpoints(dir_);
  if (!done.empty()) {
    throw FileError(dir_, "already holds a run (" + fs::path(done.back()).filename().string() +
                              "); continue it with --resume, or choose another output.dir");
  }
  // A run stopped before its first checkpoint: nothing in it can be resumed, so a new run takes it over.
  for (const std::string& name : entries(dir_)) {
    if (is_run_entry(name) && name != kRunMarker) discard_.push_back(name);
  }
}

void RunDirectory::check_resume(const std::string& resume) {
  const bool is_run = fs::exists(fs::path(dir_) / kRunMarker);
  if (resume.empty()) {
    if (!is_run) throw FileError(dir_, "holds no qft run to resume; start one without --resume");
    const std::vector<std::string> done = complete_checkpoints(dir_);
    if (done.empty()) {
      throw FileError(dir_, "holds no complete checkpoint to resume from: the run stopped before its first save. "
                            "Start it again without --resume; the new run takes the directory over");
    }
    checkpoint_ = done.back();
  } else {
    checkpoint_ = resume;
  }
  const CheckpointInfo info = read_checkpoint_info(checkpoint_);
  fs::path folder = fs::absolute(checkpoint_);
  if (!folder.has_filename()) folder = folder.parent_path();  // "runs/x/step_00000200/"
  const fs::path parent = folder.parent_path();
  if (!same_directory(parent, dir_)) {
    if (is_run) {
      throw FileError(dir_, "holds another run; resuming " + checkpoint_ + " into it would mix two runs. Resume into "
                            "the checkpoint's own output.dir, or into a new or empty one");
    }
    return;  // a fork: the checkpoint's run continues in a new directory
  }
  for (const std::string& name : entries(dir_)) {
    const std::optional<int> step = checkpoint_step(name);
    if (step && *step > info.state.step) {
      throw FileError(checkpoint_, "is not the run's newest checkpoint (" + name + " is newer); resuming from it "
                                   "would replace the newer ones. Resume from it into a new output.dir instead "
                                   "(--resume " + checkpoint_ + " --set output.dir=NEW)");
    }
  }
}

void RunDirectory::commit(const std::string& config_json, int resume_step) {
  const fs::path dir(dir_);
  std::error_code ec;
  for (const std::string& name : entries(dir_)) {
    if (!is_leftover(name) && std::find(discard_.begin(), discard_.end(), name) == discard_.end()) continue;
    fs::remove_all(dir / name, ec);
    if (ec) throw FileError((dir / name).string(), "cannot remove: " + ec.message());
  }
  if (!fs::exists(dir / kRunMarker)) {
    const nlohmann::ordered_json marker = {{"qft_run", 1}, {"qft_version", QFT_VERSION}};
    write_file_atomic((dir / kRunMarker).string(), marker.dump(2) + "\n");
  }
  write_file_atomic((dir / "config.json").string(), config_json + "\n");
  if (!checkpoint_.empty()) cut_metrics(dir / "metrics.jsonl", resume_step);
  committed_ = true;
}

}  // namespace qft
