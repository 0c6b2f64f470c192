#pragma once
// Typed errors. Library code throws these; only cmd/main.cpp turns them into messages and exit codes.
#include <stdexcept>
#include <string>

namespace qft {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file that cannot be read or whose contents are malformed. The message names the file.
class FileError : public Error {
 public:
  FileError(const std::string& path, const std::string& what)
      : Error(path + ": " + what), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A failed CUDA, cuBLASLt or NCCL call or kernel launch. The message names the call and its file:line.
class DeviceError : public Error {
 public:
  using Error::Error;
};

// A bad or unknown configuration key; `where` is the file (or "--set") that holds it.
class ConfigError : public Error {
 public:
  ConfigError(const std::string& where, const std::string& key, const std::string& what)
      : Error(where + ": key '" + key + "': " + what), key_(key) {}
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

// A tensor that is missing, unexpected or of the wrong shape or dtype.
class TensorError : public Error {
 public:
  TensorError(const std::string& where, const std::string& tensor, const std::string& what)
      : Error(where + ": tensor '" + tensor + "': " + what), tensor_(tensor) {}
  const std::string& tensor() const { return tensor_; }

 private:
  std::string tensor_;
};

// A malformed line in a data file; the message names file:line.
class DataError : public Error {
 public:
  // line 0 means the file as a whole
  DataError(const std::string& path, long line, const std::string& what)
      : Error(location(path, line) + ": " + what), line_(line) {}
  long line() const { return line_; }

 private:
  static std::string location(const std::string& path, long line) {
    if (line <= 0) return path;
    std::string s = path;
    s += ':';
    s += std::to_string(line);
    return s;
  }
  long line_;
};

// A NaN or infinite loss or gradient, detected before any weight was changed.
class NonFiniteLoss : public Error {
 public:
  using Error::Error;
};

// A command stopped on request (SIGINT, SIGTERM) at a safe point; the process exits with 128 + signal, as a shell
// reports a command killed by it.
class Interrupted : public Error {
 public:
  Interrupted(int signal, const std::string& what) : Error(what), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

// A feature that exists in the input format but that qft does not support (yet).
class UnsupportedError : public Error {
 public:
  using Error::Error;
};

}  // namespace qft
