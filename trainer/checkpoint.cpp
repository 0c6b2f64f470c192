#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "core/version.h"
#include "model/safetensors.h"

namespace qft {

namespace fs = std::filesystem;

bool is_resume_critical(const std::string& dotted_key) {
  static const std::vector<std::string> keys = {
      "model.path",      "data.train",       "data.format",      "data.template",    "data.seq_len",
      "data.packing",    "data.train_on_prompt", "data.shuffle", "train.batch_size", "train.grad_accum",
      "train.seed",      "quant.weights",    "quant.momentum",   "quant.grad_dtype", "quant.outlier_fraction",
      "quant.block_size", "quant.rounding"};
  return std::any_of(keys.begin(), keys.end(), [&](const std::string& k) { return dotted_key.rfind(k, 0) == 0; });
}

namespace {

// One buffer of training state under the name it has in the checkpoint's safetensors.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  void* data;  // backend memory
};

// The names of a parameter's tensors in a checkpoint: its INT8 parts and its optimizer state.
std::string int8_part(const std::string& param, const char* part) { return param + "." + part; }
std::string rescales_name(const std::string& param) { return "rescales." + param; }
std::string momentum_name(const std::string& param) { return "momentum." + param; }

DType col_dtype(int bytes) { return bytes == 1 ? DType::U8 : (bytes == 2 ? DType::U16 : DType::I32); }

std::vector<Entry> model_entries(LlamaModel& model) {
  std::vector<Entry> out;
  for (size_t i = 0; i < model.params().size(); ++i) {
    Param& p = model.param(int(i));
    if (!p.quantized()) {
      out.push_back({p.name, DType::F32, p.shape, p.fp32.get()});
      continue;
    }
    HybridMatrix& m = p.int8;
    out.push_back({int8_part(p.name, "q"), DType::I8, {m.rows, m.cols}, m.q.get()});
    out.push_back({int8_part(p.name, "scale"), DType::F32, {m.rows}, m.scale.get()});
    out.push_back({int8_part(p.name, "row_ptr"), DType::I32, {m.rows + 1}, m.row_ptr.get()});
    out.push_back({int8_part(p.name, "col"), col_dtype(m.col_bytes), {m.nnz}, m.col.get()});
    out.push_back({int8_part(p.name, "val"), DType::F32, {m.nnz}, m.val.get()});
  }
  return out;
}

std::vector<Entry> optimizer_entries(LlamaModel& model, LionOptimizer& opt) {
  std::vector<Entry> out;
  for (size_t i = 0; i < model.params().size(); ++i) {
    const Param& p = model.params()[i];
    StateTensor& m = opt.momentum(int(i));
    const std::string name = momentum_name(p.name);
    if (m.quantized()) {
      const BlockMatrix& b = m.int8;
      out.push_back({int8_part(name, "q"), DType::I8, {b.rows, b.cols}, m.int8.q.get()});
      out.push_back({int8_part(name, "absmax"), DType::F32, {b.rows, (b.cols + b.block - 1) / b.block}, m.int8.absmax.get()});
    } else {
      out.push_back({name, DType::F32, {p.numel()}, m.fp32.get()});
    }
    if (p.quantized()) out.push_back({rescales_name(p.name), DType::U32, {p.rows}, opt.rescale_counts(int(i))});
  }
  return out;
}

void write_entries(Backend& be, const std::vector<Entry>& entries, const std::string& path) {
  std::vector<HostTensor> host;
  host.reserve(entries.size());
  std::vector<NamedTensor> named;
  for (const Entry& e : entries) {
    host.emplace_back(e.dtype, e.shape);
    be.copy_to_host(host.back().bytes.data(), e.data, host.back().bytes.size());
    named.emplace_back(e.name, &host.back());
  }
  write_safetensors(path, named, {{"format", "qft"}, {"qft_version", QFT_VERSION}});
}

void read_entries(Backend& be, const std::vector<Entry>& entries, const std::string& path) {
  const SafeTensorsFile f(path);
  for (const Entry& e : entries) {
    const SafeTensorInfo* t = f.find(e.name);
    if (!t) throw TensorError(path, e.name, "missing from the checkpoint");
    if (t->dtype != e.dtype || t->shape != e.shape) {
      throw TensorError(path, e.name, std::string("is ") + dtype_name(t->dtype) + " " + shape_str(t->shape) +
                                          " but this run needs " + dtype_name(e.dtype) + " " + shape_str(e.shape) +
                                          " (was the model or quantization changed?)");
    }
    be.copy_to_device(e.data, f.data(*t), t->end - t->begin);
  }
}

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void write_text(const std::string& path, const std::string& text) {
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    f.flush();
    if (!f) throw FileError(path, "write failed");
  }
  fsync_path(path);
}

std::string step_dir_name(int step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08d", step);
  return buf;
}

// Complete checkpoints under dir, oldest first.
std::vector<fs::path> complete_checkpoints(const std::string& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step_", 0) == 0 && fs::exists(e.path() / "DONE")) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// FNV-1a over "key=value" lines of the resume-critical settings: a short fingerprint users can compare.
std::string settings_hash(const std::string& config_json) {
  const nlohmann::json flat = nlohmann::json::parse(config_json).flatten();
  uint64_t h = 1469598103934665603ull;
  for (auto it = flat.begin(); it != flat.end(); ++it) {
    std::string dotted = it.key().substr(1);
    std::replace(dotted.begin(), dotted.end(), '/', '.');
    if (!is_resume_critical(dotted)) continue;
    for (char c : dotted + "=" + it.value().dump() + "\n") h = (h ^ uint8_t(c)) * 1099511628211ull;
  }
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

template <class T>
const T* typed(const SafeTensorsFile& f, const std::string& name) {
  const SafeTensorInfo* t = f.find(name);
  if (!t) throw TensorError(f.path(), name, "missing from the checkpoint");
  return static_cast<const T*>(f.data(*t));
}

// One INT8 matrix: its outliers, the range of its row scales, and how often its rows' scales had to grow.
MatrixStats matrix_stats(const SafeTensorsFile& weights, const SafeTensorsFile& opt, const std::string& name) {
  const SafeTensorInfo* q = weights.find(int8_part(name, "q"));
  MatrixStats m;
  m.name = name;
  m.rows = q->shape[0];
  m.cols = q->shape[1];
  const float* scale = typed<float>(weights, int8_part(name, "scale"));
  const int32_t* row_ptr = typed<int32_t>(weights, int8_part(name, "row_ptr"));
  const uint32_t* rescales = typed<uint32_t>(opt, rescales_name(name));
  m.outliers = row_ptr[m.rows];
  m.scale_min = m.scale_max = scale[0];
  for (int64_t r = 0; r < m.rows; ++r) {
    m.scale_min = std::min(m.scale_min, scale[r]);
    m.scale_max = std::max(m.scale_max, scale[r]);
    m.rescales += rescales[r];
    m.rows_rescaled += rescales[r] > 0;
  }
  return m;
}

}  // namespace

CheckpointReport inspect_checkpoint(const std::string& dir) {
  CheckpointReport rep;
  rep.info = read_checkpoint_info(dir);
  rep.config = load_llama_config((fs::path(dir) / "config.json").string());
  const SafeTensorsFile weights((fs::path(dir) / "model.safetensors").string());
  const SafeTensorsFile opt((fs::path(dir) / "optimizer.safetensors").string());
  int64_t quantized = 0;
  for (const auto& spec : llama_tensor_specs(rep.config)) {
    if (!weights.find(int8_part(spec.name, "q"))) continue;
    rep.matrices.push_back(matrix_stats(weights, opt, spec.name));
    rep.outliers += rep.matrices.back().outliers;
    rep.rescales += rep.matrices.back().rescales;
    quantized += shape_numel(spec.shape);
  }
  rep.outlier_fraction = quantized ? double(rep.outliers) / double(quantized) : 0.0;
  return rep;
}

const std::vector<std::string>& model_side_files() {
  static const std::vector<std::string> files = {"config.json",           "generation_config.json",
                                                 "tokenizer.model",       "tokenizer_config.json",
                                                 "special_tokens_map.json", "tokenizer.json",
                                                 "chat_template.jinja"};
  return files;
}

bool is_checkpoint(const std::string& dir) { return fs::is_regular_file(fs::path(dir) / "trainer_state.json"); }

CheckpointInfo read_checkpoint_info(const std::string& dir) {
  if (!fs::is_directory(dir)) throw FileError(dir, "checkpoint directory does not exist");
  if (!fs::exists(fs::path(dir) / "DONE")) {
    throw FileError(dir, "incomplete checkpoint (no DONE marker): it was still being written when the run stopped");
  }
  const std::string state_path = (fs::path(dir) / "trainer_state.json").string();
  const nlohmann::json j = read_json_file(state_path);
  if (!j.is_object() || !j.contains("format_version") || j["format_version"] != kCheckpointFormat) {
    throw FileError(state_path, "unknown checkpoint format version " + (j.is_object() && j.contains("format_version")
                                                                           ? j["format_version"].dump()
                                                                           : std::string("(none)")) +
                                    "; this qft reads version " + std::to_string(kCheckpointFormat));
  }
  CheckpointInfo info;
  info.dir = dir;
  try {
    TrainerState& s = info.state;
    s.step = j.at("step").get<int>();
    s.tokens = j.at("tokens").get<int64_t>();
    s.cursor = {j.at("epoch").get<int64_t>(), j.at("row").get<int64_t>()};
    s.reselections = j.at("outlier_reselections").get<int>();
    s.config_json = j.at("config").dump();
    info.settings_hash = j.at("settings_hash").get<std::string>();
    const RunConfig cfg = RunConfig::from_json_text(s.config_json, state_path);
    info.storage = cfg.weight_storage();
  } catch (const nlohmann::json::exception& e) {
    throw FileError(state_path, std::string("malformed trainer state: ") + e.what());
  }
  return info;
}


std::string save_checkpoint(const std::string& output_dir, LlamaModel& model, LionOptimizer& opt,
                            const TrainerState& state, const std::string& model_dir) {
  const fs::path final_dir = fs::path(output_dir) / step_dir_name(state.step);
  const fs::path tmp = fs::path(output_dir) / (".tmp_" + step_dir_name(state.step));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) || ec) throw FileError(tmp.string(), "cannot create checkpoint directory: " + ec.message());
  try {
    write_entries(model.backend(), model_entries(model), (tmp / "model.safetensors").string());
    write_entries(model.backend(), optimizer_entries(model, opt), (tmp / "optimizer.safetensors").string());
    for (const std::string& f : model_side_files()) {
      const fs::path src = fs::path(model_dir) / f;
      if (!fs::exists(src)) continue;
      fs::copy_file(src, tmp / f, fs::copy_options::overwrite_existing, ec);
      if (ec) throw FileError((tmp / f).string(), "cannot copy from the model directory: " + ec.message());
      fsync_path((tmp / f).string());
    }
    nlohmann::ordered_json j = {{"format_version", kCheckpointFormat},
                                {"qft_version", QFT_VERSION},
                                {"step", state.step},
                                {"tokens", state.tokens},
                                {"epoch", state.cursor.epoch},
                                {"row", state.cursor.row},
                                {"outlier_reselections", state.reselections},
                                {"seed", nlohmann::json::parse(state.config_json)["train"]["seed"]},
                                {"settings_hash", settings_hash(state.config_json)},
                                {"config", nlohmann::json::parse(state.config_json)}};
    write_text((tmp / "trainer_state.json").string(), j.dump(2) + "\n");
    write_text((tmp / "DONE").string(), "");
    fsync_path(tmp.string());
    fs::remove_all(final_dir, ec);
    fs::rename(tmp, final_dir, ec);
    if (ec) throw FileError(final_dir.string(), "cannot move the checkpoint into place: " + ec.message());
    fsync_path(output_dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  return final_dir.string();
}

TrainerState load_checkpoint(const std::string& dir, LlamaModel& model, LionOptimizer& opt) {
  const CheckpointInfo info = read_checkpoint_info(dir);
  read_entries(model.backend(), model_entries(model), (fs::path(dir) / "model.safetensors").string());
  read_entries(model.backend(), optimizer_entries(model, opt), (fs::path(dir) / "optimizer.safetensors").string());
  return info.state;
}

void load_checkpoint_weights(const std::string& dir, LlamaModel& model) {
  read_checkpoint_info(dir);
  read_entries(model.backend(), model_entries(model), (fs::path(dir) / "model.safetensors").string());
}

std::string latest_checkpoint(const std::string& output_dir) {
  const auto all = complete_checkpoints(output_dir);
  if (all.empty()) throw FileError(output_dir, "no complete checkpoint (step_*/DONE) to resume from");
  return all.back().string();
}

void prune_checkpoints(const std::string& output_dir, int keep_last, const std::string& protect) {
  if (keep_last <= 0) return;
  auto all = complete_checkpoints(output_dir);
  const fs::path keep = protect.empty() ? fs::path() : fs::weakly_canonical(protect);
  std::error_code ec;
  for (size_t i = 0; i + size_t(keep_last) < all.size(); ++i) {
    if (!protect.empty() && fs::weakly_canonical(all[i]) == keep) continue;
    fs::remove_all(all[i], ec);
  }
}

}  // namespace qft
