#pragma once
// Writing files so that a crash, a full disk or a second process never leaves a half-written file under its final
// name, and temporary names never collide with a user's file or another process's.
#include <string>
#include <string_view>

namespace qft {

// Refuses (FileError naming the path) anything but an existing regular file: a FIFO would block the reader forever,
// a device never ends, a directory or a symlink loop is a mistake. `what` says what the file should be.
void require_regular_file(const std::string& path, const std::string& what);

// ".NAME.tmp.PID" beside `path`: unique to this process, and hidden.
std::string temp_path_beside(const std::string& path);
// Flushes a file's or directory's contents to disk; failures are ignored (some filesystems refuse fsync).
void fsync_path(const std::string& path);
// Writes bytes to a temporary file beside `path`, syncs it and renames it over `path`. Throws FileError.
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace qft
