#include "trainer/optimizer.h"

#include <cmath>
#include <numeric>

#include "core/error.h"

namespace qft {

namespace {

// Random-number streams: each tensor's weights, momentum and accumulator draw from their own.
uint32_t stream(int param, int kind) { return uint32_t(param) * 4u + uint32_t(kind); }
enum StreamKind { kWeights = 0, kMomentum = 1, kAccum = 2 };

// State for `rows` rows of a parameter (this rank's; a rank may own none of a small tensor's), INT8 as int8_state
// decides.
StateTensor make_state(Backend& be, const Param& p, int64_t rows, bool int8, int64_t block, const char* tag) {
  StateTensor t;
  if (int8_state(int8, p, rows)) {
    t.int8 = BlockMatrix::zeros(be, rows, p.cols, block, tag);
  } else {
    t.fp32 = be.alloc(size_t(rows * p.cols) * 4, tag);
    be.zero(t.fp32.get(), t.fp32.bytes());
  }
  return t;
}

// Where rows [row0, row0 + rows) of a parameter start in this rank's state; throws for rows it does not own.
int64_t local_row(const RowShards& shards, const Param& p, int64_t row0, int64_t rows) {
  const RowRange mine = shards.mine(p.rows);
  if (!mine.contains(row0, rows)) {
    throw Error(p.name + ": rows [" + std::to_string(row0) + ", " + std::to_string(row0 + rows) + ") are not rank " +
                std::to_string(shards.rank) + "'s [" + std::to_string(mine.begin) + ", " + std::to_string(mine.end) + ")");
  }
  return row0 - mine.begin;
}

}  // namespace

bool int8_state(bool int8, const Param& p, int64_t rows) { return int8 && quantizable(p.role) && rows > 0; }

Optimizer::Optimizer(LlamaModel& model, const OptimizerSettings& s, const RowShards& shards)
    : model_(model), s_(s), shards_(shards) {
  Backend& be = model.backend();
  int64_t rows = 0;
  for (const Param& p : model.params()) {
    const int64_t mine = p.frozen ? 0 : shards.mine(p.rows).size();
    momentum_.push_back(make_state(be, p, mine, s.momentum_int8, s.block_size, "momentum"));
    if (s.adamw) variance_.push_back(make_state(be, p, mine, false, s.block_size, "momentum"));
    const bool counted = p.quantized() && !p.frozen;  // only updated INT8 matrices rescale
    rescale_offset_.push_back(counted ? rows : -1);
    if (counted) rows += p.rows;
  }
  if (rows > 0) {
    rescales_ = be.alloc(size_t(rows) * sizeof(uint32_t), "rescale counters");
    be.zero(rescales_.get(), rescales_.bytes());
  }
}

uint32_t* Optimizer::rescale_counts(int param) {
  const int64_t at = rescale_offset_[size_t(param)];
  return at < 0 ? nullptr : static_cast<uint32_t*>(rescales_.get()) + at;
}

void Optimizer::step_rows(int param, int64_t row0, int64_t rows, const float* g, const StepUpdate& u) {
  Param& p = model_.param(param);
  if (p.frozen) throw Error(p.name + ": a frozen tensor received a gradient");
  Backend& be = model_.backend();
  if (!p.is_gse()) return step_stored_rows(param, row0, rows, g, u, nullptr);
  // A GSE adapter: its rows dequantized (exactly), updated in fp32, and rounded back stochastically.
  Buffer w32 = be.alloc(size_t(rows * p.cols) * 4, "optimizer scratch");
  be.gse_dequantize(Act{w32.get(), DType::F32}, p.gse.view(row0, rows));
  step_stored_rows(param, row0, rows, g, u, w32.f32());
  be.gse_quantize(p.gse.view(row0, rows), CAct{w32.get(), DType::F32},
                  {s_.seed, step_, stream(param, kWeights), s_.stochastic}, row0);
}

void Optimizer::step_stored_rows(int param, int64_t row0, int64_t rows, const float* g, const StepUpdate& u,
                                     float* w32) {
  Param& p = model_.param(param);
  StateTensor& m = momentum_[size_t(param)];
  Backend& be = model_.backend();
  const float decay = (decay_exempt(p.role) && !s_.decay_norms) ? 0.0f : s_.weight_decay;
  const int64_t local = local_row(shards_, p, row0, rows);
  if (!w32) w32 = p.quantized() ? nullptr : p.fp32.f32() + row0 * p.cols;
  if (s_.adamw) {
    // t counts from 1 at the first step; PyTorch's bias corrections
    const float t = float(step_) + 1.0f;
    AdamwStep st{};
    st.p = {u.lr, s_.beta1, s_.beta2, 1e-8f, decay, 1.0f - std::pow(s_.beta1, t), 1.0f - std::pow(s_.beta2, t),
            u.max_grad_norm};
    st.g = g;
    st.w = w32;
    st.m = m.fp32.f32() + local * p.cols;
    st.v = variance_[size_t(param)].fp32.f32() + local * p.cols;
    st.totals = u.totals;
    be.adamw_step(st, rows * p.cols);
    return;
  }
  const LionParams lp{u.lr, s_.beta1, s_.beta2, decay, u.max_grad_norm};
  LionRowStep st{};
  st.p = lp;
  st.g = g;
  st.cols = p.cols;
  st.row_base = row0;
  st.totals = u.totals;
  st.wkey = {s_.seed, step_, stream(param, kWeights), s_.stochastic};
  st.mkey = {s_.seed, step_, stream(param, kMomentum), s_.stochastic};
  if (p.quantized()) {
    st.w = p.int8.view(row0 - model_.held_rows(param).begin);  // sharded weights hold this rank's rows only
  } else {
    st.w32 = w32;
  }
  if (m.quantized()) {
    st.m = m.int8.view(local);
  } else {
    st.m32 = m.fp32.f32() + local * p.cols;
  }
  if (p.quantized()) st.rescales = rescale_counts(param) + row0;
  be.lion_step_rows(st, rows);
}

size_t Optimizer::state_bytes() const {
  size_t n = 0;
  for (const auto& m : momentum_) n += m.bytes();
  for (const auto& v : variance_) n += v.bytes();
  return n;
}

int64_t Optimizer::total_rescales() const {
  std::vector<uint32_t> host(rescales_.bytes() / sizeof(uint32_t));
  if (!host.empty()) model_.backend().copy_to_host(host.data(), rescales_.get(), rescales_.bytes());
  return std::accumulate(host.begin(), host.end(), int64_t(0));
}

int64_t Optimizer::take_rescaled_rows() {
  const int64_t total = total_rescales();
  const int64_t n = total - rescales_reported_;
  rescales_reported_ = total;
  return n;
}

GradAccumulators::GradAccumulators(const LlamaModel& model, const OptimizerSettings& s, const RowShards& shards,
                                   bool persistent)
    : model_(model), s_(s), shards_(shards) {
  for (const Param& p : model.params()) {
    acc_.push_back(make_state(model.backend(), p, persistent && !p.frozen ? shards.mine(p.rows).size() : 0, s.grad_int8,
                              s.block_size, "gradient accumulators"));
  }
}

void GradAccumulators::add(int param, int64_t row0, int64_t rows, const float* g, bool first, uint32_t micro) {
  const Param& p = model_.params()[size_t(param)];
  add_into(acc_[size_t(param)], local_row(shards_, p, row0, rows), param, row0, rows, g, first, micro);
}

const float* GradAccumulators::fold(int param, int64_t row0, int64_t rows, const float* partials, int count,
                                    const float* last, Buffer& tmp) const {
  if (count == 0) return last;
  Backend& be = model_.backend();
  const Param& p = model_.params()[size_t(param)];
  const int64_t n = rows * p.cols;
  StateTensor t = make_state(be, p, rows, s_.grad_int8, s_.block_size, "optimizer scratch");
  for (int i = 0; i < count; ++i) add_into(t, 0, param, row0, rows, partials + i * n, i == 0, uint32_t(i));
  tmp = be.alloc(size_t(n) * 4, "optimizer scratch");
  dense_from(t, 0, param, rows, tmp.f32());
  be.residual_add(tmp.f32(), last, n);
  return tmp.f32();
}

void GradAccumulators::add_into(StateTensor& a, int64_t local, int param, int64_t row0, int64_t rows, const float* g,
                                bool first, uint32_t micro) const {
  Backend& be = model_.backend();
  const int64_t cols = model_.params()[size_t(param)].cols;
  if (!a.quantized()) {
    float* dst = a.fp32.f32() + local * cols;
    if (first) {
      be.copy(dst, g, size_t(rows * cols) * 4);
    } else {
      be.residual_add(dst, g, rows * cols);
    }
    return;
  }
  BlockView v = a.int8.view(local);
  v.rows = rows;
  const RoundingKey key{s_.seed, accumulation_step(step_, micro), stream(param, kAccum), s_.stochastic};
  if (first) {
    be.quantize_blocks(v, g, key, row0);
  } else {
    be.accumulate_blocks(v, g, key, row0);
  }
}

void GradAccumulators::dense_rows(int param, int64_t row0, int64_t rows, float* out) const {
  const Param& p = model_.params()[size_t(param)];
  dense_from(acc_[size_t(param)], local_row(shards_, p, row0, rows), param, rows, out);
}

void GradAccumulators::dense_from(const StateTensor& a, int64_t local, int param, int64_t rows, float* out) const {
  Backend& be = model_.backend();
  const int64_t cols = model_.params()[size_t(param)].cols;
  if (a.quantized()) {
    BlockView v = a.int8.view(local);
    v.rows = rows;
    be.dequantize_blocks(out, v);
  } else {
    be.copy(out, a.fp32.f32() + local * cols, size_t(rows * cols) * 4);
  }
}

const float* GradAccumulators::combined(int param, int64_t row0, int64_t rows, const float* g, Buffer& tmp) const {
  if (!filled_) return g;
  const int64_t n = rows * model_.params()[size_t(param)].cols;
  tmp = model_.backend().alloc(size_t(n) * 4, "optimizer scratch");
  dense_rows(param, row0, rows, tmp.f32());
  model_.backend().residual_add(tmp.f32(), g, n);
  return tmp.f32();
}

std::vector<float> GradAccumulators::to_host(int param) const {
  const Param& p = model_.params()[size_t(param)];
  const RowRange mine = shards_.mine(p.rows);
  std::vector<float> out(static_cast<size_t>(mine.size() * p.cols));
  Buffer tmp = model_.backend().alloc(out.size() * 4, "optimizer scratch");
  dense_rows(param, mine.begin, mine.size(), tmp.f32());
  model_.backend().copy_to_host(out.data(), tmp.get(), out.size() * 4);
  return out;
}

size_t GradAccumulators::bytes() const {
  size_t n = 0;
  for (const auto& a : acc_) n += a.bytes();
  return n;
}

RowSquareSums::RowSquareSums(const LlamaModel& model) : model_(model) {
  for (const Param& p : model.params()) {
    first_.push_back(rows_);
    rows_ += p.rows;
  }
  sums_ = model.backend().alloc(size_t(rows_) * sizeof(double), "gradient-norm rows");
  model.backend().zero(sums_.get(), sums_.bytes());  // a frozen tensor's rows are never delivered
}

void RowSquareSums::add(int param, int64_t row0, int64_t rows, const float* g) {
  model_.backend().row_sums(at(param, row0), g, rows, model_.params()[size_t(param)].cols, SumOf::Squares);
}

void RowSquareSums::total_into(double* sum_squares) {
  model_.backend().add_sum_f64(sum_squares, static_cast<const double*>(sums_.get()), rows_);
}

void NormSink::consume(int param, int64_t row0, int64_t rows, const float* g) {
  Buffer tmp;
  sums_.add(param, row0, rows, acc_ ? acc_->combined(param, row0, rows, g, tmp) : g);
}

void UpdateSink::consume(int param, int64_t row0, int64_t rows, const float* g) {
  Buffer tmp;
  const float* total = acc_ ? acc_->combined(param, row0, rows, g, tmp) : g;
  opt_.step_rows(param, row0, rows, total, update_);
}

}  // namespace qft
