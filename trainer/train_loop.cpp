#include "trainer/train_loop.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/rank_layout.h"
#include "model/llama.h"
#include "text/tokenizer.h"
#include "trainer/checkpoint.h"
#include "trainer/data_parallel.h"
#include "trainer/data.h"
#include "trainer/device.h"
#include "trainer/model_source.h"
#include "trainer/plan.h"
#include "trainer/run_dir.h"
#include "trainer/train_step.h"

namespace qft {

namespace fs = std::filesystem;

double learning_rate(const TrainSection& t, int step) {
  if (step < t.warmup_steps) return t.lr * double(step + 1) / double(t.warmup_steps);
  const double p = double(step - t.warmup_steps) / double(std::max(1, t.steps - t.warmup_steps));
  switch (t.lr_schedule) {
    case LrSchedule::Linear:
      return t.lr * (1.0 - p);
    case LrSchedule::Cosine:
      return t.lr * 0.5 * (1.0 + std::cos(M_PI * p));
    case LrSchedule::Constant:
      break;
  }
  return t.lr;
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string hms(double s) {
  const long t = long(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  return buf;
}

// Appends one JSON object per line; flushed per record so that a crash loses nothing already logged.
class MetricsWriter {
 public:
  MetricsWriter(const std::string& path, bool append) : path_(path), f_(path, append ? std::ios::app : std::ios::trunc) {
    if (!f_) throw FileError(path, "cannot open for writing");
  }
  void write(const nlohmann::ordered_json& j) {
    f_ << j.dump() << "\n";
    f_.flush();
    if (!f_) throw FileError(path_, "write failed");
  }

 private:
  std::string path_;
  std::ofstream f_;
};

constexpr const char* kLogFilePattern = "[%Y-%m-%d %H:%M:%S.%e] [%l] %v";

// Logs to stderr (stdout stays for results) and, once the run directory is committed, to its train.log. Until
// then the lines wait in memory: nothing is written into the directory before every check has passed. Of several
// ranks, rank 0 logs the run; the others print only their warnings, marked with their rank.
std::shared_ptr<spdlog::logger> make_logger(const Communicator& comm) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  if (comm.rank() > 0) {
    console->set_pattern(fmt::format("[rank {}] %v", comm.rank()));
    auto log = std::make_shared<spdlog::logger>("qft.train", console);
    log->set_level(spdlog::level::warn);
    return log;
  }
  console->set_pattern("%v");
  auto pending = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(4096);
  pending->set_pattern(kLogFilePattern);
  auto log = std::make_shared<spdlog::logger>("qft.train", spdlog::sinks_init_list{console, pending});
  log->flush_on(spdlog::level::info);
  return log;
}

// Replaces the logger's pending sink by the log file, writing what it held first.
void attach_log_file(spdlog::logger& log, const std::string& path, bool append) {
  auto& sinks = log.sinks();
  auto pending = std::dynamic_pointer_cast<spdlog::sinks::ringbuffer_sink_mt>(sinks.back());
  {
    std::ofstream f(path, append ? std::ios::app : std::ios::trunc);
    for (const std::string& line : pending->last_formatted()) f << line;
    if (!f) throw FileError(path, "cannot write the run's log");
  }
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false);
  file->set_pattern(kLogFilePattern);
  sinks.back() = file;
}

// Micro-batches per optimizer step over all ranks: what a resume must keep, however the ranks share them.
int64_t global_micro_batches(const RunConfig& c) { return int64_t(c.train.grad_accum) * std::max(1, c.dist.world_size); }

// Refuses a resume whose config differs in a key that would make it meaningless; logs harmless changes. The
// number of ranks may change if the global batch does not: train.grad_accum x ranks.
void check_resume_config(const std::string& saved_json, const RunConfig& now, spdlog::logger& log) {
  const auto saved = nlohmann::json::parse(saved_json).flatten(), current = nlohmann::json::parse(now.to_json()).flatten();
  std::string refused;
  const RunConfig was = RunConfig::from_json_text(saved_json, "the checkpoint's config");
  if (global_micro_batches(was) != global_micro_batches(now)) {
    refused += "\n  train.grad_accum x ranks: " + std::to_string(was.train.grad_accum) + " x " +
               std::to_string(std::max(1, was.dist.world_size)) + " -> " + std::to_string(now.train.grad_accum) + " x " +
               std::to_string(std::max(1, now.dist.world_size)) + " (the global batch must stay the same)";
  }
  for (auto it = current.begin(); it != current.end(); ++it) {
    const std::string key = it.key().substr(1);  // "/train/lr" -> "train/lr"
    std::string dotted = key;
    std::replace(dotted.begin(), dotted.end(), '/', '.');
    if (dotted == "train.grad_accum") continue;  // checked above, with the ranks
    const auto was = saved.find(it.key());
    if (was != saved.end() && *was == it.value()) continue;
    const std::string from = was == saved.end() ? "(absent)" : was->dump();
    if (is_resume_critical(dotted)) {
      refused += "\n  " + dotted + ": " + from + " -> " + it.value().dump();
    } else {
      log.info("resume: {} changed from {} to {}", dotted, from, it.value().dump());
    }
  }
  if (!refused.empty()) {
    throw ConfigError("--resume", "config", "these changes would make the resume meaningless; start a new run, or "
                                            "use the checkpoint as model.path to start fresh from its weights:" + refused);
  }
}

// Every rank evaluates every batch: a sharded model's forward is a collective, and the batches are few.
double validate(LlamaModel& model, const DataLoader& val, const TrainSection& t) {
  LossSum total;
  for (const Batch& b : val.ordered_batches(t.batch_size, t.eval_batches)) {
    const LossSum l = model.forward_loss(b);
    total.loss_sum += l.loss_sum;
    total.tokens += l.tokens;
  }
  return total.mean();
}

int64_t positions(const std::vector<Batch>& micro) {
  int64_t n = 0;
  for (const Batch& b : micro) n += int64_t(b.B) * b.T;
  return n;
}

// Profiles the ops of one training step with cfg.profile (no evaluation, no checkpoint): the profile is set on the
// backend for the step's duration only.
class StepProfile {
 public:
  StepProfile(Backend& backend, OpProfile* profile) : backend_(backend), profile_(profile), t0_(Clock::now()) {
    backend_.set_profile(profile_);
  }
  StepProfile(const StepProfile&) = delete;
  StepProfile& operator=(const StepProfile&) = delete;
  ~StepProfile() { backend_.set_profile(nullptr); }
  void finished() const {
    if (!profile_) return;
    backend_.synchronize();
    profile_->steps += 1;
    profile_->step_seconds += seconds_since(t0_);
  }

 private:
  Backend& backend_;
  OpProfile* profile_;
  Clock::time_point t0_;
};

// One training run: setup in the constructor (will it fit, the run directory, model, data, optimizer, resume),
// then run() steps; each step is step(), then after_step() for metrics, outlier re-selection, evaluation and
// checkpoints. Of several ranks (trainer/data_parallel.h), each runs this with its share of every step; rank 0
// alone holds the run directory and writes the log and metrics.
class TrainingRun {
 public:
  TrainingRun(const RunConfig& cfg, const std::optional<std::string>& resume, const StopSignals* stop,
              std::unique_ptr<Backend> backend, Communicator& comm);
  ~TrainingRun() { spdlog::drop("qft.train"); }
  TrainSummary run();

 private:
  void check_fits(const MemoryPlan& plan, const LlamaConfig& arch) const;
  void commit_run_dir();
  void load_data();
  void log_state_sizes() const;
  void restore(const std::string& resume);
  // One optimizer step; false when a non-finite loss skipped it (train.on_nonfinite=skip).
  bool step(int step, const std::vector<Batch>& micro, double lr, StepResult& r);
  void after_step(int done, const StepResult& r, double lr, double step_s, int64_t step_positions);
  void log_progress(int done, const StepResult& r, double lr, double step_s, int64_t step_positions);
  void evaluate(int step);
  void save(int done);
  void stop_if_requested(int done);
  void record(const nlohmann::ordered_json& j) {
    if (metrics_) metrics_->write(j);
  }
  bool distributed() const { return comm_.world_size() > 1; }

  const RunConfig& cfg_;
  const std::optional<std::string> resume_;
  const StopSignals* stop_;
  const Clock::time_point t0_ = Clock::now();
  Clock::time_point loop_t0_;
  std::unique_ptr<Backend> backend_;  // first: a device that cannot run fails before anything is written
  Communicator& comm_;
  const bool lead_;                      // rank 0: the run directory, log and metrics are its
  std::unique_ptr<RunDirectory> run_dir_;  // locked for the life of the run (rank 0's)
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<MetricsWriter> metrics_;  // rank 0's
  OpenModel opened_;
  std::unique_ptr<DataLoader> train_, val_;
  std::unique_ptr<Optimizer> opt_;
  std::unique_ptr<GradAccumulators> acc_;  // for train.grad_accum > 1, and always with several ranks
  TrainSummary summary_;
  std::unique_ptr<OpProfile> profile_;  // with cfg.profile
  int64_t tokens_total_ = 0;
  int start_step_ = 0;
  int saved_step_ = -1;  // the step of the newest checkpoint this run wrote
  int reselections_ = 0;
  std::string resumed_from_;
};

TrainingRun::TrainingRun(const RunConfig& cfg, const std::optional<std::string>& resume, const StopSignals* stop,
                         std::unique_ptr<Backend> backend, Communicator& comm)
    : cfg_(cfg), resume_(resume), stop_(stop), backend_(std::move(backend)), comm_(comm), lead_(comm.rank() == 0) {
  if (distributed()) require_same_on_every_rank(comm_, cfg_.to_json() + "\n--resume " + resume_.value_or("(none)"), "configs");
  const LlamaConfig arch = plan_architecture(cfg_);
  const MemoryPlan plan = plan_memory(cfg_, arch, plan_target(*backend_), backend_->available_bytes());
  check_fits(plan, arch);
  if (lead_) run_dir_ = std::make_unique<RunDirectory>(cfg_.output.dir, resume_);
  log_ = make_logger(comm_);
  log_->info("effective config:\n{}", cfg_.to_json());
  log_->info("{}", format_plan(plan, cfg_, arch));
  if (distributed()) {
    log_->info("{} ranks ({}, {}); weights {}", comm_.world_size(), comm_.layout().launcher, comm_.name(),
               cfg_.dist.shard_weights ? "sharded by rows" : "replicated");
  }

  Communicator* shard_over = distributed() && cfg_.dist.shard_weights ? &comm_ : nullptr;
  opened_ = cfg_.model.init == ModelInit::Random
                ? open_random_model(cfg_.model.path, *backend_, cfg_.weight_storage(), cfg_.train.seed, shard_over)
                : open_model(cfg_.model.path, *backend_, cfg_.weight_storage(), shard_over);
  if (opened_.source.checkpoint && !resume_) {
    log_->info("initialized from {}: its weights only; the optimizer, schedule and data order start fresh",
               opened_.source.describe());
  }
  load_data();
  LlamaModel& model = *opened_.model;
  model.keep_layer_weights = plan.keep_layer_weights;
  model.stack_storage = cfg_.train.stack_dtype;
  model.stack_offload = cfg_.train.stack_offload;
  if (cfg_.profile) profile_ = std::make_unique<OpProfile>();
  const RowShards shards{comm_.rank(), comm_.world_size()};
  opt_ = std::make_unique<Optimizer>(model, cfg_.optimizer_settings(), shards);
  if (cfg_.train.grad_accum > 1 || distributed()) {
    acc_ = std::make_unique<GradAccumulators>(model, cfg_.optimizer_settings(), shards, cfg_.train.grad_accum > 1);
  }
  log_state_sizes();
  if (resume_) {
    std::string checkpoint = lead_ ? run_dir_->checkpoint() : "";  // rank 0 resolved which one
    comm_.broadcast_host(checkpoint, 0);
    restore(checkpoint);
  }
  commit_run_dir();
}

// Will it fit? The plan is a dry run of this very run's allocations.
void TrainingRun::check_fits(const MemoryPlan& plan, const LlamaConfig& arch) const {
  const size_t available = backend_->available_bytes();
  if (plan.total_bytes <= available) return;
  throw Error("the run needs " + std::to_string(plan.total_bytes >> 20) + " MiB but " + backend_->name() + " has " +
              std::to_string(available >> 20) + " MiB available:\n" + format_plan(plan, cfg_, arch) +
              "Lower data.seq_len or train.batch_size (use train.grad_accum for the same batch), set "
              "train.stack_offload=true, or set quant.weights=int8 and quant.momentum=int8.");
}

// Every check has passed: the directory becomes this run's, and its log and metrics start. Every rank must see
// it: checkpoints are written by all of them into it.
void TrainingRun::commit_run_dir() {
  if (!lead_) {
    comm_.barrier();  // rank 0 has committed
    const fs::path marker = fs::path(cfg_.output.dir) / kRunMarker;
    if (!fs::exists(marker)) {
      throw FileError(cfg_.output.dir, "rank " + std::to_string(comm_.rank()) + " does not see rank 0's " + kRunMarker +
                                           ": several ranks need output.dir on a filesystem they all share");
    }
    return;
  }
  run_dir_->commit(cfg_.to_json(), start_step_);
  if (distributed()) comm_.barrier();
  const fs::path dir(cfg_.output.dir);
  attach_log_file(*log_, (dir / "train.log").string(), resume_.has_value());
  if (!run_dir_->discarded().empty()) {
    std::string names;
    for (const std::string& n : run_dir_->discarded()) names += (names.empty() ? "" : ", ") + n;
    log_->warn("{} held a run stopped before its first checkpoint; it was taken over and its {} discarded",
               cfg_.output.dir, names);
  }
  metrics_ = std::make_unique<MetricsWriter>((dir / "metrics.jsonl").string(), resume_.has_value());
}

void TrainingRun::load_data() {
  const Tokenizer& tok = *opened_.tokenizer;
  DataStats train_stats, val_stats;
  train_ = std::make_unique<DataLoader>(load_examples(cfg_.data.train, cfg_.data, tok, &train_stats), cfg_.data,
                                        cfg_.train.seed, tok.eos_id());
  if (!cfg_.data.val.empty()) {
    val_ = std::make_unique<DataLoader>(load_examples(cfg_.data.val, cfg_.data, tok, &val_stats), cfg_.data, 0,
                                        tok.eos_id());
  }
  const LlamaConfig& arch = opened_.source.config;
  log_->info("model {}: {} parameters, {} layers, on {} with {} activations", opened_.source.describe(),
             arch.parameter_count(), arch.num_hidden_layers, backend_->name(), dtype_name(backend_->act_dtype()));
  log_->info("attention: {}; layer-input stack: {}{}", backend_->attention_implementation(),
             enum_name(cfg_.train.stack_dtype), cfg_.train.stack_offload ? ", in host memory" : "");
  log_->info("data {}: {} examples ({} tokens), {} sequences per epoch; {} truncated to {} tokens, {} bad lines "
             "skipped, {} without targets dropped",
             cfg_.data.train, train_stats.examples, train_stats.tokens, train_->rows_per_epoch(), train_stats.truncated,
             cfg_.data.seq_len, train_stats.skipped_lines, train_stats.dropped_no_target);
}

void TrainingRun::log_state_sizes() const {
  const LlamaModel& model = *opened_.model;
  const double params = double(opened_.source.config.parameter_count());
  const size_t acc_bytes = acc_ ? acc_->bytes() : 0;
  const size_t state = model.weight_bytes() + opt_->state_bytes() + acc_bytes;
  log_->info("model state{}: weights {} ({:.1f} MiB), momentum {} ({:.1f} MiB), gradient accumulators {} ({:.1f} MiB): "
             "{:.2f} bytes/parameter",
             distributed() ? " of rank 0" : "", enum_name(cfg_.quant.weights), double(model.weight_bytes()) / (1 << 20),
             enum_name(cfg_.quant.momentum),
             double(opt_->state_bytes()) / (1 << 20), acc_ ? enum_name(cfg_.quant.grad_dtype) : "none",
             double(acc_bytes) / (1 << 20), double(state) / params);
  if (model.has_adapters()) {
    int64_t adapter_params = 0;
    size_t adapter_bytes = 0;
    for (const Param& p : model.params()) {
      if (p.role != ParamRole::Adapter) continue;
      adapter_params += p.numel();
      adapter_bytes += p.bytes();
    }
    std::string targets;
    for (const std::string& t : cfg_.lora.targets) targets += (targets.empty() ? "" : ",") + t;
    const std::string format = cfg_.lora.format == LoraFormat::Gse
                                   ? fmt::format("GSE {}-bit mantissas, groups of {}", cfg_.lora.bits, cfg_.lora.group)
                                   : std::string("fp32");
    log_->info("LoRA: rank {}, alpha {}, on {}: {} trainable parameters ({:.2f}% of the model, {:.1f} MiB, {}); the "
               "base is frozen; {} state {:.1f} MiB",
               cfg_.lora.rank, cfg_.lora.alpha, targets, adapter_params, 100.0 * double(adapter_params) / params,
               double(adapter_bytes) / (1 << 20), format, enum_name(cfg_.train.optimizer),
               double(opt_->state_bytes()) / (1 << 20));
  }
  if (cfg_.train.clip_grad_norm) {
    log_->info("gradient clipping at {}: one extra backward of the last micro-batch per step measures the norm",
               *cfg_.train.clip_grad_norm);
  }
  log_->info("memory after setup: {:.1f} MiB on {}", double(backend_->memory().current_bytes) / (1 << 20),
             backend_->name());
}

void TrainingRun::restore(const std::string& checkpoint) {
  resumed_from_ = checkpoint;
  const TrainerState st = load_checkpoint(resumed_from_, *opened_.model, *opt_);
  check_resume_config(st.config_json, cfg_, *log_);
  if (st.step >= cfg_.train.steps) {
    throw ConfigError("--resume", "train.steps", "is " + std::to_string(cfg_.train.steps) + " but " + resumed_from_ +
                                                     " is already at step " + std::to_string(st.step) +
                                                     ": nothing to train. Raise train.steps to continue the run");
  }
  train_->restore(st.cursor);
  start_step_ = st.step;
  tokens_total_ = st.tokens;
  reselections_ = st.reselections;
  log_->info("resumed from {} at step {} (epoch {}, row {})", resumed_from_, st.step, st.cursor.epoch, st.cursor.row);
}

TrainSummary TrainingRun::run() {
  loop_t0_ = Clock::now();
  stop_if_requested(start_step_);
  for (int s = start_step_; s < cfg_.train.steps; ++s) {
    const auto step_t0 = Clock::now();
    const int ranks = comm_.world_size();
    const std::vector<Batch> micro = train_->next_step(cfg_.train.grad_accum * ranks, cfg_.train.batch_size);
    const double lr = learning_rate(cfg_.train, s);
    StepResult r;
    const int64_t reads_before = backend_->host_reads();
    if (step(s, rank_micro_batches(micro, comm_.rank(), ranks), lr, r)) {
      backend_->synchronize();  // the step's updates may still be queued on a GPU: time them too
      if (cfg_.debug_sync) {
        log_->info("step {:>5}/{} | {} device-to-host reads", s + 1, cfg_.train.steps, backend_->host_reads() - reads_before);
      }
      after_step(s + 1, r, lr, seconds_since(step_t0), positions(micro));
    }
    if (s + 1 < cfg_.train.steps) stop_if_requested(s + 1);
  }
  // The end of a run always saves, also when its last step was skipped (train.on_nonfinite=skip) and so never
  // reached after_step's save.
  if (cfg_.train.save_final && start_step_ < cfg_.train.steps && saved_step_ != cfg_.train.steps) save(cfg_.train.steps);
  evaluate(cfg_.train.steps);
  summary_.elapsed_s = seconds_since(t0_);
  summary_.peak_mem_bytes = backend_->memory().peak_bytes;
  const TrainSummary& s = summary_;
  log_->info("done: {} steps in {} ({} skipped) | loss {:.4f} -> {:.4f}{} | peak memory {:.1f} MiB | {}", s.steps,
             hms(s.elapsed_s), s.skipped_steps, s.first_loss, s.last_loss,
             s.val_loss ? fmt::format(" | val_loss {:.4f}", *s.val_loss) : std::string(),
             double(s.peak_mem_bytes) / (1 << 20), cfg_.output.dir);
  if (profile_) log_->info("{}", profile_->table());
  return summary_;
}

bool TrainingRun::step(int step, const std::vector<Batch>& micro, double lr, StepResult& r) {
  opt_->set_step(uint32_t(step));
  if (acc_) acc_->set_step(uint32_t(step));
  try {
    const StepProfile profiled(*backend_, profile_.get());
    r = distributed() ? data_parallel_step(comm_, *opened_.model, *opt_, *acc_, micro, float(lr), cfg_.train.clip_grad_norm)
                      : train_step(*opened_.model, *opt_, acc_.get(), micro, float(lr), cfg_.train.clip_grad_norm);
    profiled.finished();
    for (const std::string& note : backend_->take_notes()) log_->info("{}", note);
  } catch (const NonFiniteLoss& e) {
    if (cfg_.train.on_nonfinite == OnNonFinite::Stop) {
      throw Error("step " + std::to_string(step + 1) + ": " + e.what() +
                  "; no weight was updated. Lower train.lr, set train.clip_grad_norm, or set "
                  "train.on_nonfinite=skip");
    }
    log_->warn("step {}: {}; step skipped, weights unchanged", step + 1, e.what());
    summary_.skipped_steps += 1;
    record({{"step", step + 1}, {"skipped", true}, {"reason", e.what()}});
    return false;
  }
  return true;
}

void TrainingRun::after_step(int done, const StepResult& r, double lr, double step_s, int64_t step_positions) {
  tokens_total_ += step_positions;
  if (summary_.steps == 0) summary_.first_loss = r.loss;
  summary_.steps += 1;
  summary_.last_loss = r.loss;
  const TrainSection& t = cfg_.train;
  if (done % t.log_every == 0 || done == t.steps) log_progress(done, r, lr, step_s, step_positions);
  const bool int8_weights = cfg_.quant.weights == StateStorage::Int8;
  if (cfg_.quant.reselect_every > 0 && done % cfg_.quant.reselect_every == 0 && int8_weights) {
    opened_.model->reselect_outliers();
    reselections_ += 1;
    log_->info("step {:>5}/{} | weight outliers re-selected", done, t.steps);
  }
  if (t.eval_every > 0 && done % t.eval_every == 0 && done != t.steps) evaluate(done);
  if ((t.save_every > 0 && done % t.save_every == 0) || (done == t.steps && t.save_final)) save(done);
}

void TrainingRun::log_progress(int done, const StepResult& r, double lr, double step_s, int64_t step_positions) {
  const double elapsed = seconds_since(loop_t0_), tps = double(step_positions) / step_s;
  const double eta = elapsed / (done - start_step_) * (cfg_.train.steps - done);
  const size_t peak = backend_->memory().peak_bytes;
  std::string line = fmt::format("step {:>5}/{} | loss {:.4f} | lr {:.2e} | {:.0f} tok/s | ETA {} | peak {:.1f} MiB",
                                 done, cfg_.train.steps, r.loss, lr, tps, hms(eta), double(peak) / (1 << 20));
  if (r.grad_norm) line += fmt::format(" | norm {:.3f}", *r.grad_norm);
  log_->info(line);
  nlohmann::ordered_json m = {{"step", done}, {"loss", r.loss}, {"lr", lr}, {"tokens", tokens_total_},
                              {"tokens_per_s", tps}, {"elapsed_s", seconds_since(t0_)}, {"peak_mem_bytes", peak}};
  if (r.grad_norm) m["grad_norm"] = *r.grad_norm;
  if (cfg_.quant.weights == StateStorage::Int8) {
    int64_t rescaled = 0;  // each rank counts the rows it updates
    for (double n : comm_.all_gather_host(double(opt_->take_rescaled_rows()))) rescaled += int64_t(n);
    m["rescaled_rows"] = rescaled;
  }
  record(m);
}

void TrainingRun::evaluate(int step) {
  if (!val_) return;
  const double vl = validate(*opened_.model, *val_, cfg_.train);
  summary_.val_loss = vl;
  log_->info("step {:>5}/{} | val_loss {:.4f} | val_ppl {:.2f}", step, cfg_.train.steps, vl, std::exp(vl));
  record({{"step", step}, {"val_loss", vl}, {"elapsed_s", seconds_since(t0_)}});
}

// A stop request (SIGINT, SIGTERM) ends the run after a whole step, with a checkpoint of it. Ranks stop together,
// at the first step boundary after any of them received one.
void TrainingRun::stop_if_requested(int done) {
  int sig = stop_ ? stop_->received() : 0;
  if (distributed()) sig = agreed_signal(comm_, sig);
  if (sig == 0) return;
  std::string saved = "nothing was trained, so nothing was saved";
  if (done > start_step_) {
    if (saved_step_ != done) save(done);
    saved = "checkpoint " + (fs::path(cfg_.output.dir) / fmt::format("step_{:08d}", done)).string() +
            " holds it; continue with the same command and --resume";
  }
  log_->warn("stopped by {} after step {}/{}", signal_name(sig), done, cfg_.train.steps);
  throw Interrupted(sig, fmt::format("stopped by {} after step {}/{}; {}", signal_name(sig), done, cfg_.train.steps, saved));
}

void TrainingRun::save(int done) {
  std::string dir;
  try {
    dir = save_checkpoint(cfg_.output.dir, *opened_.model, *opt_,
                          {done, tokens_total_, train_->cursor(), reselections_, cfg_.to_json()}, cfg_.model.path,
                          distributed() ? &comm_ : nullptr);
  } catch (const FileError& e) {
    std::string previous = "no earlier checkpoint exists";
    try {
      previous = "the previous checkpoint " + latest_checkpoint(cfg_.output.dir) + " is intact";
    } catch (const FileError&) {
    }
    throw Error("step " + std::to_string(done) + ": the checkpoint could not be written: " + e.what() + "; " +
                previous + ". Free space (or fix permissions) and continue with --resume");
  }
  saved_step_ = done;
  if (lead_) prune_checkpoints(cfg_.output.dir, cfg_.train.keep_last, resumed_from_);
  log_->info("step {:>5}/{} | checkpoint {}", done, cfg_.train.steps, dir);
}

}  // namespace

TrainSummary run_training(const RunConfig& cfg, const std::optional<std::string>& resume, const StopSignals* stop) {
  cfg.validate();
  const RankLayout layout = rank_layout_from_environment();
  if (cfg.dist.world_size > 0 && cfg.dist.world_size != layout.world_size) {
    throw ConfigError("config", "dist.world_size",
                      "is " + std::to_string(cfg.dist.world_size) + " but " +
                          (layout.distributed() ? layout.launcher + " started " + std::to_string(layout.world_size) + " ranks"
                                                : std::string("qft was started as one process")) +
                          "; launch it as mpirun -np N qft train ... (or srun), or leave dist.world_size at 0");
  }
  RunConfig job = cfg;
  if (layout.distributed()) job.dist.world_size = layout.world_size;  // plans and records what runs
  std::unique_ptr<Backend> backend = make_backend(job.device, job.debug_sync, layout.local_rank);
  const std::unique_ptr<Communicator> comm = make_communicator(layout, *backend);
  comm->set_timeout(job.dist.timeout_s);
  if (!layout.distributed()) return TrainingRun(job, resume, stop, std::move(backend), *comm).run();
  try {
    return TrainingRun(job, resume, stop, std::move(backend), *comm).run();
  } catch (const Interrupted&) {
    throw;  // every rank stopped at the same step boundary (agreed_signal)
  } catch (const std::exception& e) {
    // The other ranks may wait for this one in a collective: say why, then end the whole job.
    std::cerr << "qft: error: rank " << layout.rank << " of " << layout.world_size << ": " << e.what() << std::endl;
    comm->abort_job(dynamic_cast<const Error*>(&e) ? 1 : 2);
  }
}

}  // namespace qft
