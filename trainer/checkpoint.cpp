#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "core/json_file.h"
#include "core/version.h"
#include "model/safetensors.h"
#include "quant/quantized.h"
#include "trainer/checkpoint_manifest.h"

namespace qft {

namespace fs = std::filesystem;

bool is_resume_critical(const std::string& dotted_key) {
  static const std::vector<std::string> keys = {
      "model.path",      "data.train",       "data.format",      "data.template",    "data.seq_len",
      "data.packing",    "data.train_on_prompt", "data.shuffle", "train.batch_size", "train.grad_accum", "train.stack_dtype",
      "train.seed",      "quant.weights",    "quant.momentum",   "quant.grad_dtype", "quant.outlier_fraction",
      "quant.block_size", "quant.rounding", "train.method", "train.optimizer", "lora."};
  return std::any_of(keys.begin(), keys.end(), [&](const std::string& k) { return dotted_key.rfind(k, 0) == 0; });
}

namespace {

// One buffer of training state under the name it has in the checkpoint's safetensors.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  void* data;         // backend memory; null where only the layout is wanted
  int64_t row0 = 0;   // the parameter row of its first row (a rank's share of optimizer state)
  int64_t rows = 0;   // parameter rows it holds
};

// The names of a parameter's tensors in a checkpoint: its INT8 parts and its optimizer state.
std::string int8_part(const std::string& param, const char* part) { return param + "." + part; }
std::string rescales_name(const std::string& param) { return "rescales." + param; }
std::string momentum_name(const std::string& param) { return "momentum." + param; }

DType col_dtype(int bytes) { return bytes == 1 ? DType::U8 : (bytes == 2 ? DType::U16 : DType::I32); }

// One parameter's entries: its fp32 values, or the parts of INT8 matrix m (its own, a gathered whole, or a whole's
// shapes without memory).
void add_param_entries(std::vector<Entry>& out, const Param& p, const HybridMatrix& m) {
  if (p.is_gse()) {  // mantissas and exponents as they are: exact
    out.push_back({int8_part(p.name, "gse_m"), DType::I8, {p.rows, p.cols}, p.gse.m.get()});
    out.push_back({int8_part(p.name, "gse_e"), DType::I8, {p.rows, p.gse.groups()}, p.gse.e.get()});
    return;
  }
  if (!p.quantized()) {
    out.push_back({p.name, DType::F32, p.shape, p.fp32.get()});
    return;
  }
  out.push_back({int8_part(p.name, "q"), DType::I8, {m.rows, m.cols}, m.q.get()});
  out.push_back({int8_part(p.name, "scale"), DType::F32, {m.rows}, m.scale.get()});
  out.push_back({int8_part(p.name, "row_ptr"), DType::I32, {m.rows + 1}, m.row_ptr.get()});
  out.push_back({int8_part(p.name, "col"), col_dtype(m.col_bytes), {m.nnz}, m.col.get()});
  out.push_back({int8_part(p.name, "val"), DType::F32, {m.nnz}, m.val.get()});
}

// The whole weights, as a checkpoint holds them. A sharded model's INT8 matrices hold only this rank's rows: their
// entries have the whole matrix's shapes and no data.
std::vector<Entry> model_entries(LlamaModel& model) {
  std::vector<Entry> out;
  for (const Param& p : model.params()) {
    if (!p.quantized() || !model.weights_sharded()) {
      add_param_entries(out, p, p.int8);
      continue;
    }
    HybridMatrix whole;  // no memory: its shapes alone
    whole.rows = p.rows;
    whole.cols = p.cols;
    whole.nnz = p.int8.rows > 0 ? p.int8.nnz / p.int8.rows * p.rows : 0;
    whole.col_bytes = p.int8.col_bytes;
    add_param_entries(out, p, whole);
  }
  return out;
}

// The optimizer state of one rank's rows (`shards`), as its optimizer file holds it; with `opt`, pointing at that
// state (opt's own shards), else the layout alone.
std::vector<Entry> optimizer_entries(const LlamaModel& model, const OptimizerSettings& s, const RowShards& shards,
                                     Optimizer* opt) {
  std::vector<Entry> out;
  for (size_t i = 0; i < model.params().size(); ++i) {
    const Param& p = model.params()[i];
    if (p.frozen) continue;  // no state
    const RowRange mine = shards.mine(p.rows);
    StateTensor* m = opt ? &opt->momentum(int(i)) : nullptr;
    const std::string name = momentum_name(p.name);
    if (s.adamw) {
      StateTensor* v = opt ? &opt->variance(int(i)) : nullptr;
      out.push_back({"variance." + p.name, DType::F32, {mine.size() * p.cols}, v ? v->fp32.get() : nullptr, mine.begin,
                     mine.size()});
    }
    if (int8_state(s.momentum_int8, p, mine.size())) {
      const int64_t blocks = (p.cols + s.block_size - 1) / s.block_size;
      out.push_back({int8_part(name, "q"), DType::I8, {mine.size(), p.cols}, m ? m->int8.q.get() : nullptr, mine.begin, mine.size()});
      out.push_back({int8_part(name, "absmax"), DType::F32, {mine.size(), blocks}, m ? m->int8.absmax.get() : nullptr,
                     mine.begin, mine.size()});
    } else {
      out.push_back({name, DType::F32, {mine.size() * p.cols}, m ? m->fp32.get() : nullptr, mine.begin, mine.size()});
    }
    if (p.quantized()) {
      out.push_back({rescales_name(p.name), DType::U32, {mine.size()},
                     opt ? opt->rescale_counts(int(i)) + mine.begin : nullptr, mine.begin, mine.size()});
    }
  }
  return out;
}

// Tensors copied to the host under their names, ready to write.
struct HostEntries {
  std::deque<HostTensor> tensors;  // a deque: adding one never moves the others that `named` points at
  std::vector<NamedTensor> named;
  void add(Backend& be, const Entry& e) {
    tensors.emplace_back(e.dtype, e.shape);
    be.copy_to_host(tensors.back().bytes.data(), e.data, tensors.back().bytes.size());
    named.emplace_back(e.name, &tensors.back());
  }
  void write(const std::string& path) const {
    write_safetensors(path, named, {{"format", "qft"}, {"qft_version", QFT_VERSION}});
    fsync_path(path);
  }
};

void write_entries(Backend& be, const std::vector<Entry>& entries, const std::string& path) {
  HostEntries host;
  for (const Entry& e : entries) host.add(be, e);
  host.write(path);
}

// The whole weights on the host (kept only where `keep`): a sharded model's INT8 matrices are gathered one at a
// time, a collective that every rank joins.
HostEntries weights_on_host(LlamaModel& model, bool keep) {
  HostEntries host;
  if (!model.weights_sharded()) {
    if (keep) {
      for (const Entry& e : model_entries(model)) host.add(model.backend(), e);
    }
    return host;
  }
  for (size_t i = 0; i < model.params().size(); ++i) {
    const Param& p = model.params()[i];
    const HybridMatrix whole = p.quantized() ? model.gathered(int(i)) : HybridMatrix{};
    if (!keep) continue;
    std::vector<Entry> entries;
    add_param_entries(entries, p, whole);
    for (const Entry& e : entries) host.add(model.backend(), e);
  }
  return host;
}

// Checks an entry's dtype and shape against what this run needs.
void check_entry(const SafeTensorsFile& f, const Entry& e) {
  const SafeTensorInfo* t = f.find(e.name);
  if (!t) throw TensorError(f.path(), e.name, "missing from the checkpoint");
  if (t->dtype != e.dtype || t->shape != e.shape) {
    throw TensorError(f.path(), e.name, std::string("is ") + dtype_name(t->dtype) + " " + shape_str(t->shape) +
                                            " but this run needs " + dtype_name(e.dtype) + " " + shape_str(e.shape) +
                                            " (was the model or quantization changed?)");
  }
}

// The file holds exactly these entries, each of the dtype and shape this run needs.
void check_entries(const SafeTensorsFile& f, const std::vector<Entry>& entries) {
  for (const Entry& e : entries) check_entry(f, e);
  if (f.tensors().size() == entries.size()) return;
  for (const SafeTensorInfo& t : f.tensors()) {
    const bool known = std::any_of(entries.begin(), entries.end(), [&](const Entry& e) { return e.name == t.name; });
    if (!known) throw TensorError(f.path(), t.name, "is not part of the model its config.json describes");
  }
}

bool all_finite(const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return false;
  }
  return true;
}

// Requires tensor `name` of f to be `dtype` with `numel` entries, and returns a copy: the copy is aligned for its
// dtype, where a mapped tensor need not be (the data section packs tensors of odd byte counts).
HostTensor require_tensor(const SafeTensorsFile& f, const std::string& name, DType dtype, int64_t numel) {
  const SafeTensorInfo* t = f.find(name);
  if (!t) throw TensorError(f.path(), name, "missing from the checkpoint");
  if (t->dtype != dtype || shape_numel(t->shape) != numel) {
    throw TensorError(f.path(), name, std::string("is ") + dtype_name(t->dtype) + " " + shape_str(t->shape) + ", not " +
                                          dtype_name(dtype) + " with " + std::to_string(numel) + " entries");
  }
  return f.read(name);
}

// A hybrid matrix as stored in a file, in host memory: every part's dtype and size checked against q's shape,
// then its structure (hybrid_problem), so that nothing reading it indexes out of bounds.
struct StoredHybrid {
  HostTensor q, scale, row_ptr, col, val;
  HybridView view;
};

StoredHybrid stored_hybrid(const SafeTensorsFile& f, const std::string& param) {
  const SafeTensorInfo* q = f.find(int8_part(param, "q"));
  if (!q || q->dtype != DType::I8 || q->shape.size() != 2) throw TensorError(f.path(), int8_part(param, "q"), "is not an INT8 matrix");
  const int64_t rows = q->shape[0], cols = q->shape[1];
  const SafeTensorInfo* col = f.find(int8_part(param, "col"));
  if (!col || col->shape.size() != 1) throw TensorError(f.path(), int8_part(param, "col"), "missing or not a vector");
  const int64_t nnz = col->shape[0];
  const int col_bytes = col->dtype == DType::U8 ? 1 : col->dtype == DType::U16 ? 2 : 4;
  StoredHybrid m{f.read(int8_part(param, "q")),
                 require_tensor(f, int8_part(param, "scale"), DType::F32, rows),
                 require_tensor(f, int8_part(param, "row_ptr"), DType::I32, rows + 1),
                 require_tensor(f, int8_part(param, "col"), col_dtype(col_bytes), nnz),
                 require_tensor(f, int8_part(param, "val"), DType::F32, nnz),
                 {}};
  m.view = {m.q.data<int8_t>(), m.scale.data<float>(), m.row_ptr.data<int32_t>(), m.col.bytes.data(), col_bytes,
            m.val.data<float>(), rows, cols};
  const std::string problem = hybrid_problem(m.view, nnz);
  if (!problem.empty()) throw TensorError(f.path(), param, "INT8 weights are damaged: " + problem);
  return m;
}

// A value the kernels would index memory with, or that would poison training, is refused before it reaches a
// backend.
void check_values(const SafeTensorsFile& f, const Entry& e, const HostTensor& h) {
  if (e.dtype == DType::F32 && !all_finite(h.data<float>(), h.numel())) {
    throw TensorError(f.path(), e.name, "holds NaN or infinite values");
  }
  if (e.name.ends_with(".gse_e")) {
    for (int64_t i = 0; i < h.numel(); ++i) {
      const int x = h.data<int8_t>()[i];
      if (x < kGseMinExponent) throw TensorError(f.path(), e.name, "GSE exponent " + std::to_string(x) + " is below " +
                                                                      std::to_string(kGseMinExponent));
    }
  }
  const size_t absmax = e.name.rfind(".absmax");
  if (absmax != std::string::npos && absmax + 7 == e.name.size()) {
    const std::string problem = block_problem({nullptr, const_cast<float*>(h.data<float>()), h.numel(), 1, 1});
    if (!problem.empty()) throw TensorError(f.path(), e.name, "INT8 momentum is damaged: " + problem);
  }
}

// A sharded model's rows of a whole INT8 matrix (checked whole by stored_hybrid). Every row of a matrix holds the
// same number k of outliers (allocate_hybrid), so row r's outliers start at r * k.
void read_held_rows(const SafeTensorsFile& f, LlamaModel& model, int param) {
  Param& p = model.param(param);
  const StoredHybrid stored = stored_hybrid(f, p.name);
  const HybridView& w = stored.view;
  HybridMatrix& m = p.int8;
  const int64_t k = m.nnz / m.rows;
  for (int64_t r = 0; r <= w.rows; ++r) {
    if (w.row_ptr[r] != r * k) {
      throw TensorError(f.path(), int8_part(p.name, "row_ptr"), "row " + std::to_string(r) + " does not start at " +
                                                                    std::to_string(r * k) + ": not " + std::to_string(k) +
                                                                    " outliers in every row");
    }
  }
  const RowRange held = model.held_rows(param);
  Backend& be = model.backend();
  be.copy_to_device(m.q.get(), w.q + held.begin * w.cols, size_t(held.size() * w.cols));
  be.copy_to_device(m.scale.get(), w.scale + held.begin, size_t(held.size()) * 4);
  be.copy_to_device(m.col.get(), static_cast<const uint8_t*>(w.col_idx) + held.begin * k * w.col_bytes,
                    size_t(held.size() * k * w.col_bytes));
  be.copy_to_device(m.val.get(), w.val + held.begin * k, size_t(held.size() * k) * 4);
  set_uniform_row_ptr(be, m);
}

// `hybrids`: the model whose INT8 weight matrices the file holds (the weights file), or nullptr. Entries without
// data are a sharded model's matrices: their rows are read by read_held_rows.
void read_entries(Backend& be, const std::vector<Entry>& entries, const std::string& path, LlamaModel* hybrids) {
  const SafeTensorsFile f(path);
  check_entries(f, entries);
  if (hybrids) {
    for (size_t i = 0; i < hybrids->params().size(); ++i) {
      const Param& p = hybrids->params()[i];
      if (!p.quantized()) continue;
      if (hybrids->weights_sharded()) {
        read_held_rows(f, *hybrids, int(i));
      } else {
        stored_hybrid(f, p.name);
      }
    }
  }
  for (const Entry& e : entries) {
    if (!e.data) continue;
    const HostTensor h = f.read(e.name);
    check_values(f, e, h);
    be.copy_to_device(e.data, h.bytes.data(), h.bytes.size());
  }
}

// This rank's rows of the optimizer state, from the files of the `saved` ranks that wrote the checkpoint: a resume on
// another number of ranks takes each row from the file that holds it.
void read_optimizer(const std::string& dir, int saved, const LlamaModel& model, Optimizer& opt) {
  std::vector<std::unique_ptr<SafeTensorsFile>> files;
  std::vector<std::vector<Entry>> layouts;  // what each saved rank's file holds
  for (int r = 0; r < saved; ++r) {
    files.push_back(std::make_unique<SafeTensorsFile>((fs::path(dir) / optimizer_file(r, saved)).string()));
    layouts.push_back(optimizer_entries(model, opt.settings(), {r, saved}, nullptr));
    check_entries(*files.back(), layouts.back());
  }
  for (const Entry& want : optimizer_entries(model, opt.settings(), opt.shards(), &opt)) {
    for (int r = 0; r < saved && want.rows > 0; ++r) {
      const std::vector<Entry>& layout = layouts[size_t(r)];
      const auto has = std::find_if(layout.begin(), layout.end(), [&](const Entry& e) { return e.name == want.name; });
      if (has == layout.end() || has->rows == 0) continue;  // none of this tensor's rows (or stored otherwise)
      const RowRange part = RowRange{has->row0, has->row0 + has->rows}.clip(want.row0, want.rows);
      if (part.size() == 0) continue;
      const HostTensor h = files[size_t(r)]->read(want.name);
      check_values(*files[size_t(r)], *has, h);
      const size_t per_row = h.bytes.size() / size_t(has->rows);
      model.backend().copy_to_device(static_cast<uint8_t*>(want.data) + size_t(part.begin - want.row0) * per_row,
                                     h.bytes.data() + size_t(part.begin - has->row0) * per_row,
                                     size_t(part.size()) * per_row);
    }
  }
}

// Runs `work` on this rank, if `here`, and lets every rank know whether any rank's work failed: then rank 0 runs
// `cleanup` and every rank throws, the failing rank its own error and the others a FileError naming it. Without
// ranks (one process), a failure runs `cleanup` and is rethrown.
void on_every_rank(Communicator* ranks, bool here, const std::string& where, const std::function<void()>& work,
                   const std::function<void()>& cleanup) {
  std::exception_ptr failed;
  std::string what;
  if (here) {
    try {
      work();
    } catch (const std::exception& e) {
      failed = std::current_exception();
      what = e.what();
    }
  }
  int first = failed ? 0 : -1;
  if (ranks) {
    const std::vector<double> flags = ranks->all_gather_host(failed ? 1.0 : 0.0);
    const auto at = std::find(flags.begin(), flags.end(), 1.0);
    first = at == flags.end() ? -1 : int(at - flags.begin());
    if (first >= 0) ranks->broadcast_host(what, first);
  }
  if (first < 0) return;
  if (!ranks || ranks->rank() == 0) cleanup();
  if (failed) std::rethrow_exception(failed);
  throw FileError(where, "rank " + std::to_string(first) + " failed: " + what);
}

std::string step_dir_name(int step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08d", step);
  return buf;
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

// One INT8 matrix: its outliers, the range of its row scales, and how often its rows' scales had to grow.
// opt: the optimizer files of the ranks that saved the checkpoint, in rank order (each holds its rows' counts);
// frozen: a LoRA run's base, which is never updated and has no counts.
MatrixStats matrix_stats(const SafeTensorsFile& weights, const std::vector<std::unique_ptr<SafeTensorsFile>>& opt,
                         const std::string& name, bool frozen) {
  const StoredHybrid stored = stored_hybrid(weights, name);
  const HybridView& w = stored.view;
  MatrixStats m;
  m.name = name;
  m.rows = w.rows;
  m.cols = w.cols;
  std::vector<uint32_t> counts;
  for (size_t r = 0; r < opt.size(); ++r) {
    const RowRange rows = RowShards{int(r), int(opt.size())}.mine(m.rows);
    if (frozen) {
      counts.insert(counts.end(), size_t(rows.size()), 0u);
      continue;
    }
    const HostTensor part = require_tensor(*opt[r], rescales_name(name), DType::U32, rows.size());
    counts.insert(counts.end(), part.data<uint32_t>(), part.data<uint32_t>() + rows.size());
  }
  const uint32_t* rescales = counts.data();
  m.outliers = w.row_ptr[m.rows];
  m.scale_min = m.scale_max = m.rows > 0 ? w.scale[0] : 0.0f;
  for (int64_t r = 0; r < m.rows; ++r) {
    m.scale_min = std::min(m.scale_min, w.scale[r]);
    m.scale_max = std::max(m.scale_max, w.scale[r]);
    m.rescales += rescales[r];
    m.rows_rescaled += rescales[r] > 0;
  }
  return m;
}

}  // namespace

CheckpointReport inspect_checkpoint(const std::string& dir) {
  CheckpointReport rep;
  rep.info = read_checkpoint_info(dir);
  verify_manifest(dir, true);
  rep.config = load_llama_config((fs::path(dir) / "config.json").string());
  const SafeTensorsFile weights((fs::path(dir) / "model.safetensors").string());
  std::vector<std::unique_ptr<SafeTensorsFile>> opt;
  for (int r = 0; r < rep.info.state.world_size; ++r) {
    opt.push_back(std::make_unique<SafeTensorsFile>((fs::path(dir) / optimizer_file(r, rep.info.state.world_size)).string()));
  }
  int64_t quantized = 0;
  for (const auto& spec : llama_tensor_specs(rep.config)) {
    if (!weights.find(int8_part(spec.name, "q"))) continue;
    rep.matrices.push_back(matrix_stats(weights, opt, spec.name, rep.info.storage.lora.enabled()));
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

namespace {

// An integer field of trainer_state.json within [lo, hi]; anything else (absent, fractional, a string) is refused.
int64_t state_field(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi, const std::string& where) {
  if (!j.contains(key)) throw FileError(where, std::string("the trainer state lacks '") + key + "'");
  const std::optional<int64_t> v = json_integer_in(j[key], lo, hi);
  if (!v) {
    throw FileError(where, std::string("'") + key + "' is " + j[key].dump() + "; the trainer state needs an integer in [" +
                               std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return *v;
}

void check_format_version(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("format_version") || j["format_version"] != kCheckpointFormat) {
    throw FileError(where, "unknown checkpoint format version " +
                               (j.is_object() && j.contains("format_version") ? j["format_version"].dump() : std::string("(none)")) +
                               "; this qft reads version " + std::to_string(kCheckpointFormat));
  }
}

}  // namespace

std::optional<int> checkpoint_step(const std::string& name) {
  if (name.size() < 13 || name.size() > 15 || name.rfind("step_", 0) != 0) return std::nullopt;
  int64_t step = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  if (step > std::numeric_limits<int32_t>::max()) return std::nullopt;
  return int(step);
}

CheckpointInfo parse_trainer_state(const std::string& text, const std::string& where, std::optional<int> folder_step) {
  const nlohmann::json j = parse_json(text, where);
  check_format_version(j, where);
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max(), kMaxCount = std::numeric_limits<int64_t>::max();
  CheckpointInfo info;
  TrainerState& s = info.state;
  s.step = int(state_field(j, "step", 1, kMaxInt, where));
  if (folder_step && *folder_step != s.step) {
    throw FileError(where, "says step " + std::to_string(s.step) + " but its folder is step_" + std::to_string(*folder_step));
  }
  s.tokens = state_field(j, "tokens", 0, kMaxCount, where);
  s.cursor = {state_field(j, "epoch", 0, kMaxCount, where), state_field(j, "row", 0, kMaxCount, where)};
  s.reselections = int(state_field(j, "outlier_reselections", 0, kMaxInt, where));
  s.world_size = j.contains("world_size") ? int(state_field(j, "world_size", 1, kMaxRanks, where)) : 1;
  if (!j.contains("config") || !j["config"].is_object()) throw FileError(where, "the trainer state lacks its run's 'config'");
  s.config_json = j["config"].dump();
  const RunConfig cfg = RunConfig::from_json_text(s.config_json, where);
  info.storage = cfg.weight_storage();
  if (s.step > cfg.train.steps) {
    throw FileError(where, "says step " + std::to_string(s.step) + ", beyond its run's train.steps " + std::to_string(cfg.train.steps));
  }
  // Against the parsed config, not j["config"]["train"]: a config may leave train out, and a const json has no
  // entry to look up then.
  if (j.value("seed", nlohmann::json()) != nlohmann::json(cfg.train.seed)) throw FileError(where, "'seed' differs from its config's train.seed");
  if (!j.contains("settings_hash") || !j["settings_hash"].is_string() || j["settings_hash"] != settings_hash(s.config_json)) {
    throw FileError(where, "'settings_hash' does not match its config");
  }
  info.settings_hash = j["settings_hash"].get<std::string>();
  return info;
}

CheckpointInfo read_checkpoint_info(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw FileError(dir, ec ? "cannot open: " + ec.message() : "checkpoint directory does not exist");
  if (!is_checkpoint(dir)) {
    throw FileError(dir, "is not a qft checkpoint (no trainer_state.json); to start a run from a model's weights, set "
                         "model.path to it");
  }
  if (!fs::exists(fs::path(dir) / "DONE")) {
    throw FileError(dir, "incomplete checkpoint (no DONE marker): it was still being written when the run stopped");
  }
  const std::string state_path = (fs::path(dir) / "trainer_state.json").string();
  const std::string text = read_text_file(state_path, size_t(64) << 20);
  // The version first: a checkpoint of another format is named as such, not as damaged.
  check_format_version(nlohmann::json::parse(text, nullptr, false), state_path);
  verify_manifest(dir, false);
  fs::path folder(dir);
  if (!folder.has_filename()) folder = folder.parent_path();  // "runs/x/step_00000200/"
  CheckpointInfo info = parse_trainer_state(text, state_path, checkpoint_step(folder.filename().string()));
  info.dir = dir;
  return info;
}

std::string save_checkpoint(const std::string& output_dir, LlamaModel& model, Optimizer& opt,
                            const TrainerState& state, const std::string& model_dir, Communicator* ranks) {
  const int rank = ranks ? ranks->rank() : 0, world = ranks ? ranks->world_size() : 1;
  const bool lead = rank == 0;
  const fs::path final_dir = fs::path(output_dir) / step_dir_name(state.step);
  std::string tmp_path;
  std::error_code ec;
  const auto remove_tmp = [&] { fs::remove_all(tmp_path, ec); };
  on_every_rank(ranks, lead, final_dir.string(), [&] {
    if (fs::exists(final_dir, ec)) throw FileError(final_dir.string(), "already exists; qft never replaces a checkpoint");
    tmp_path = temp_path_beside(final_dir.string());
    fs::remove_all(tmp_path, ec);
    if (!fs::create_directories(tmp_path, ec) || ec) throw FileError(tmp_path, "cannot create checkpoint directory: " + ec.message());
  }, [] {});
  if (ranks) ranks->broadcast_host(tmp_path, 0);
  const fs::path tmp(tmp_path);
  // Collectives first (a sharded model's matrices are gathered), then each rank's files: a rank that fails to
  // write is known to every rank before anything is declared complete.
  const HostEntries weights = weights_on_host(model, lead);
  on_every_rank(ranks, true, final_dir.string(), [&] {
    if (lead) weights.write((tmp / "model.safetensors").string());
    write_entries(model.backend(), optimizer_entries(model, opt.settings(), opt.shards(), &opt),
                  (tmp / optimizer_file(rank, world)).string());
  }, remove_tmp);
  on_every_rank(ranks, lead, final_dir.string(), [&] {
    for (const std::string& f : model_side_files()) {
      const fs::path src = fs::path(model_dir) / f;
      if (!fs::exists(src)) continue;
      fs::copy_file(src, tmp / f, fs::copy_options::overwrite_existing, ec);
      if (ec) throw FileError((tmp / f).string(), "cannot copy from the model directory: " + ec.message());
    }
    nlohmann::ordered_json j = {{"format_version", kCheckpointFormat},
                                {"qft_version", QFT_VERSION},
                                {"step", state.step},
                                {"tokens", state.tokens},
                                {"epoch", state.cursor.epoch},
                                {"row", state.cursor.row},
                                {"outlier_reselections", state.reselections},
                                {"world_size", world},
                                {"seed", nlohmann::json::parse(state.config_json)["train"]["seed"]},
                                {"settings_hash", settings_hash(state.config_json)},
                                {"config", nlohmann::json::parse(state.config_json)}};
    write_file_atomic((tmp / "trainer_state.json").string(), j.dump(2) + "\n");
    for (const auto& e : fs::directory_iterator(tmp)) fsync_path(e.path().string());
    write_manifest(tmp.string());  // last: DONE makes the checkpoint complete
    fsync_path(tmp.string());
    fs::rename(tmp, final_dir, ec);
    if (ec) throw FileError(final_dir.string(), "cannot move the checkpoint into place: " + ec.message());
    fsync_path(output_dir);
  }, remove_tmp);
  return final_dir.string();
}

std::string optimizer_file(int rank, int world) {
  if (world == 1) return "optimizer.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "optimizer-%05d-of-%05d.safetensors", rank, world);
  return buf;
}

void write_checkpoint_weights(const std::string& path, LlamaModel& model) { weights_on_host(model, true).write(path); }

void read_checkpoint_weights(const std::string& path, LlamaModel& model) {
  read_entries(model.backend(), model_entries(model), path, &model);
}

TrainerState load_checkpoint(const std::string& dir, LlamaModel& model, Optimizer& opt) {
  const CheckpointInfo info = read_checkpoint_info(dir);
  verify_manifest(dir, true);
  read_checkpoint_weights((fs::path(dir) / "model.safetensors").string(), model);
  read_optimizer(dir, info.state.world_size, model, opt);
  return info.state;
}

void load_checkpoint_weights(const std::string& dir, LlamaModel& model) {
  read_checkpoint_info(dir);
  verify_manifest(dir, true);
  read_checkpoint_weights((fs::path(dir) / "model.safetensors").string(), model);
}

std::vector<std::string> complete_checkpoints(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (checkpoint_step(it->path().filename().string()) && fs::exists(it->path() / "DONE")) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());  // step_%08d: by name is by step
  return out;
}

std::string latest_checkpoint(const std::string& output_dir) {
  const auto all = complete_checkpoints(output_dir);
  if (all.empty()) throw FileError(output_dir, "no complete checkpoint (step_*/DONE) to resume from");
  return all.back();
}

void discard_checkpoint(const std::string& dir) {
  // Renamed away first, in one step: a kill during the deletion leaves a hidden leftover (removed when the run next
  // starts), never a step folder that still says DONE but lacks files.
  const std::string away = (fs::path(dir).parent_path() / (".discarded_" + fs::path(dir).filename().string())).string();
  std::error_code ec;
  fs::remove_all(away, ec);
  fs::rename(dir, away, ec);
  if (ec) throw FileError(dir, "cannot remove the old checkpoint: " + ec.message());
  fsync_path(fs::path(dir).parent_path().string());
  fs::remove_all(away, ec);
}

void prune_checkpoints(const std::string& output_dir, int keep_last, const std::string& protect) {
  if (keep_last <= 0) return;
  const auto all = complete_checkpoints(output_dir);
  std::error_code ec;
  for (size_t i = 0; i + size_t(keep_last) < all.size(); ++i) {
    if (!protect.empty() && fs::equivalent(all[i], protect, ec)) continue;
    discard_checkpoint(all[i]);
  }
}

}  // namespace qft
