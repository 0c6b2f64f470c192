#include "trainer/data_parallel.h"

#include <cmath>
#include <string>

#include "core/error.h"

namespace qft {

namespace {

// What a backward pass of the step does with the rows it receives. With clipping, the last micro-batch runs
// twice: Norm folds all but the last partial into the accumulators and measures the whole gradient's rows; Update
// then takes the last partial alone.
enum class Pass { Accumulate, Norm, Update };

// Receives one micro-batch's gradient chunks on one rank, exchanges them, and folds the partials of the rows
// this rank owns into the accumulators or, for the step's last micro-batch, into the norm or the update.
class ShardedSink final : public GradSink {
 public:
  struct Place {
    int micro_step;   // i: this backward is every rank's i-th micro-batch
    int micro_steps;  // A
    Pass pass;
    bool clipping;
  };
  ShardedSink(Communicator& comm, LlamaModel& model, Optimizer& opt, GradAccumulators& acc, Place place,
              StepUpdate update, const StepTotals* local, StepTotals* global, RowSquareSums* norms)
      : comm_(comm), model_(model), opt_(opt), acc_(acc), place_(place), update_(update), local_(local), global_(global),
        norms_(norms) {}

  // Starts this chunk's exchange, then finishes the previous chunk's while this one's bytes move; the backward
  // computes the next chunk meanwhile. The order of every fold is unchanged, so is every bit. A chunk larger than
  // a layer matrix's (a whole table's gradient, 1 GiB at 70B) is exchanged at once rather than copied.
  void consume(int param, int64_t row0, int64_t rows, const float* g) override {
    if (place_.pass == Pass::Update && !totals_shared_) share_totals();
    const bool overlap = size_t(rows * model_.params()[size_t(param)].cols) * 4 <= model_.weight_grad_chunk_bytes;
    InFlight next = start(param, row0, rows, g, overlap);
    finish();
    in_flight_ = std::move(next);
    if (!overlap) finish();
  }
  // The last chunk's exchange and fold: after the backward returns.
  void finish() {
    if (!in_flight_.exchange) return;
    InFlight x = std::move(in_flight_);
    in_flight_ = {};
    x.exchange->wait();
    x.sent = Buffer{};
    const Param& p = model_.params()[size_t(x.param)];
    if (x.mine.size() > 0) fold_mine(x.param, x.mine, x.partials.f32(), x.mine.size() * p.cols);
    x.partials = Buffer{};
    if (place_.pass == Pass::Norm) gather_norms(p, x.param, x.row0, x.rows);
    if (place_.pass == Pass::Update) gather_rows(p, x.row0, x.rows);
  }

 private:
  // A chunk whose partials are on their way: rank r's piece of the chunk is the part of its rows (pieces tile the
  // chunk in rank order), and this rank receives every rank's partial of its own rows.
  struct InFlight {
    int param = -1;
    int64_t row0 = 0, rows = 0;
    RowRange mine;
    Buffer sent;      // (rows, cols): a copy of the gradient, since the backward reuses its chunk buffer
    Buffer partials;  // (N, mine rows, cols)
    std::unique_ptr<Communicator::Exchange> exchange;
  };
  // copy: send a copy of g, which the backward may overwrite once consume returns; else g itself (finished before).
  InFlight start(int param, int64_t row0, int64_t rows, const float* g, bool copy) {
    Backend& be = model_.backend();
    const Param& p = model_.params()[size_t(param)];
    const int n = comm_.world_size();
    InFlight x{param, row0, rows, opt_.shards().mine(p.rows).clip(row0, rows), {}, {}, nullptr};
    const std::vector<size_t> send = piece_bytes(p, row0, rows, p.cols * 4);
    const std::vector<size_t> recv(static_cast<size_t>(n), size_t(x.mine.size() * p.cols) * 4);
    if (copy) {
      x.sent = be.alloc(size_t(rows * p.cols) * 4, "optimizer scratch");
      be.copy(x.sent.get(), g, x.sent.bytes());
      g = x.sent.f32();
    }
    x.partials = be.alloc(recv[0] * size_t(n), "optimizer scratch");
    x.exchange = comm_.start_all_to_all_v(x.partials.get(), recv, g, send);
    return x;
  }

  // The ranks' partials (N, count) of this rank's rows, as micro-batches i * N + r: into the accumulators, or, in
  // the step's last micro-batch, added to them for the norm or the update.
  void fold_mine(int param, const RowRange& mine, const float* partials, int64_t count) {
    const int n = comm_.world_size();
    const float* final_partial = partials + int64_t(n - 1) * count;
    Buffer tmp;
    const float* total = nullptr;
    if (place_.micro_steps == 1) {
      // Every rank's one micro-batch: folded as accumulating them would, in a scratch of these rows alone, so that
      // no accumulator outlives the chunk.
      total = acc_.fold(param, mine.begin, mine.size(), partials, n - 1, final_partial, tmp);
    } else {
      const int last_m = place_.micro_steps * n - 1;
      for (int r = 0; r < n; ++r) {
        const int m = place_.micro_step * n + r;
        if (m == last_m) break;
        // Accumulated once: in the Norm pass when there is one, so not again in the Update pass.
        if (place_.pass != Pass::Update || !place_.clipping) {
          acc_.add(param, mine.begin, mine.size(), partials + int64_t(r) * count, m == 0, uint32_t(m));
        }
      }
      if (place_.pass == Pass::Accumulate) return;
      acc_.set_filled(true);
      total = acc_.combined(param, mine.begin, mine.size(), final_partial, tmp);
    }
    if (place_.pass == Pass::Norm) {
      norms_->add(param, mine.begin, mine.size(), total);
    } else {
      opt_.step_rows(param, mine.begin, mine.size(), total, update_);
    }
  }

  std::vector<size_t> piece_bytes(const Param& p, int64_t row0, int64_t rows, int64_t bytes_per_row) const {
    return opt_.shards().piece_bytes(p.rows, row0, rows, bytes_per_row);
  }

  // Every rank's rows' sums of squares, so that each rank adds all of them in the same order.
  void gather_norms(const Param& p, int param, int64_t row0, int64_t rows) {
    comm_.all_gather_v(norms_->at(param, row0), piece_bytes(p, row0, rows, sizeof(double)));
  }

  // The update reads the step's totals for its NaN check: every rank must see the same, the ranks' losses summed
  // in rank order. The last backward has summed its loss before its first gradient leaves.
  void share_totals() {
    Backend& be = model_.backend();
    StepTotals mine;
    be.copy_to_host(&mine, local_, sizeof mine);
    double loss_sum = 0;
    for (double v : comm_.all_gather_host(mine.loss_sum)) loss_sum += v;
    be.copy_to_device(&global_->loss_sum, &loss_sum, sizeof loss_sum);  // the norm pass wrote grad_sum_squares
    totals_shared_ = true;
  }

  // Every rank's updated rows of the chunk, in place: INT8 values, row scales and outlier values (the outliers'
  // columns do not move during a step), GSE mantissas and exponents (LoRA adapters), or fp32 values.
  void gather_rows(const Param& p, int64_t row0, int64_t rows) {
    if (p.quantized() && model_.weights_sharded()) return;  // each rank keeps its own rows, gathered when used
    auto gather = [&](void* base, int64_t bytes_per_row) {
      comm_.all_gather_v(static_cast<uint8_t*>(base) + row0 * bytes_per_row, piece_bytes(p, row0, rows, bytes_per_row));
    };
    if (p.is_gse()) {
      gather(p.gse.m.get(), p.cols);
      gather(p.gse.e.get(), p.gse.groups());
      return;
    }
    if (!p.quantized()) {
      gather(p.fp32.get(), p.cols * 4);
      return;
    }
    const int64_t k = p.int8.nnz / p.int8.rows;  // outliers per row, the same in every row
    gather(p.int8.q.get(), p.cols);
    gather(p.int8.scale.get(), 4);
    if (k > 0) gather(p.int8.val.get(), k * 4);
  }

  Communicator& comm_;
  LlamaModel& model_;
  Optimizer& opt_;
  GradAccumulators& acc_;
  Place place_;
  StepUpdate update_;
  const StepTotals* local_;
  StepTotals* global_;
  RowSquareSums* norms_;  // with clipping
  bool totals_shared_ = false;
  InFlight in_flight_;
};

}  // namespace

StepResult data_parallel_step(Communicator& comm, LlamaModel& model, Optimizer& opt, GradAccumulators& acc,
                              const std::vector<Batch>& micro, float lr, std::optional<double> clip_norm) {
  const RowShards& shards = opt.shards();
  if (shards.rank != comm.rank() || shards.world_size != comm.world_size()) {
    throw Error("the optimizer's state is sharded for rank " + std::to_string(shards.rank) + " of " +
                std::to_string(shards.world_size) + ", not this communicator's");
  }
  Backend& be = model.backend();
  // Every rank must run as many micro-batches, and the loss is normalised by the target tokens of all of them.
  int64_t tokens = 0;
  for (const Batch& b : micro) tokens += b.target_count();
  const std::vector<double> counts = comm.all_gather_host(double(micro.size()));
  const std::vector<double> all_tokens = comm.all_gather_host(double(tokens));
  for (int r = 0; r < comm.world_size(); ++r) {
    if (counts[size_t(r)] != double(micro.size())) {
      throw Error("rank " + std::to_string(r) + " has " + std::to_string(int64_t(counts[size_t(r)])) +
                  " micro-batches in this step, rank " + std::to_string(comm.rank()) + " has " +
                  std::to_string(micro.size()));
    }
  }
  if (micro.empty()) throw Error("data_parallel_step: no micro-batches");
  StepResult result;
  for (double t : all_tokens) result.tokens += int64_t(t);
  if (result.tokens == 0) throw Error("data_parallel_step: the step holds no target tokens (every label is masked)");
  const float scale = float(1.0 / double(result.tokens));

  Buffer totals_buffer = be.alloc(2 * sizeof(StepTotals), "step totals");  // this rank's, then every rank's
  be.zero(totals_buffer.get(), totals_buffer.bytes());
  auto* local = static_cast<StepTotals*>(totals_buffer.get());
  StepTotals* global = local + 1;
  const int steps = int(micro.size());
  const bool clipping = clip_norm.has_value();
  const StepUpdate update{lr, global, clip_norm.value_or(0.0)};
  // GSE LoRA rounds gradients keyed by the step's micro-batch: this rank's i-th is the step's i * N + rank.
  auto micro_key = [&](int i) {
    model.gradient_rounding_step = accumulation_step(opt.step(), uint32_t(i * comm.world_size() + comm.rank()));
  };
  for (int i = 0; i + 1 < steps; ++i) {
    micro_key(i);
    ShardedSink sink(comm, model, opt, acc, {i, steps, Pass::Accumulate, clipping}, update, local, global, nullptr);
    model.backward(micro[size_t(i)], scale, sink, &local->loss_sum);
    sink.finish();
  }
  micro_key(steps - 1);
  if (clipping) {
    RowSquareSums norms(model);
    ShardedSink sink(comm, model, opt, acc, {steps - 1, steps, Pass::Norm, true}, update, local, global, &norms);
    model.backward(micro.back(), scale, sink, nullptr);  // its loss is added by the update pass below
    sink.finish();
    norms.total_into(&global->grad_sum_squares);       // every rank holds every row's sum: the same total
  }
  ShardedSink sink(comm, model, opt, acc, {steps - 1, steps, Pass::Update, clipping}, update, local, global, nullptr);
  model.backward(micro.back(), scale, sink, &local->loss_sum);
  sink.finish();
  acc.set_filled(false);

  read_step_totals(be, global, clipping, result);
  return result;
}

std::vector<Batch> rank_micro_batches(const std::vector<Batch>& step, int rank, int world_size) {
  if (step.size() % size_t(world_size) != 0) {
    throw Error(std::to_string(step.size()) + " micro-batches cannot be shared by " + std::to_string(world_size) + " ranks");
  }
  std::vector<Batch> mine;
  for (size_t m = size_t(rank); m < step.size(); m += size_t(world_size)) mine.push_back(step[m]);
  return mine;
}

void require_same_on_every_rank(Communicator& comm, const std::string& text, const std::string& what) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, shared as two 32-bit halves (exact in a double)
  for (char c : text) h = (h ^ uint8_t(c)) * 1099511628211ull;
  const std::vector<double> high = comm.all_gather_host(double(h >> 32)), low = comm.all_gather_host(double(h & 0xffffffffu));
  std::string differ;
  for (size_t r = 1; r < high.size(); ++r) {
    if (high[r] != high[0] || low[r] != low[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  }
  if (!differ.empty()) {
    throw Error("the ranks were started with different " + what + ": rank(s) " + differ + " differ from rank 0's; every "
                "rank of a job must run the same command with the same files");
  }
}

int agreed_signal(Communicator& comm, int received) {
  for (double s : comm.all_gather_host(double(received))) {
    if (s != 0) return int(s);
  }
  return 0;
}

}  // namespace qft
