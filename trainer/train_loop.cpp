#include "trainer/train_loop.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "ops/backend.h"
#include "trainer/checkpoint.h"
#include "trainer/data.h"
#include "trainer/model_source.h"
#include "trainer/plan.h"
#include "trainer/train_step.h"

namespace qft {

namespace fs = std::filesystem;

double learning_rate(const TrainSection& t, int step) {
  if (step < t.warmup_steps) return t.lr * double(step + 1) / double(t.warmup_steps);
  const double p = double(step - t.warmup_steps) / double(std::max(1, t.steps - t.warmup_steps));
  if (t.lr_schedule == "linear") return t.lr * (1.0 - p);
  if (t.lr_schedule == "cosine") return t.lr * 0.5 * (1.0 + std::cos(M_PI * p));
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

std::shared_ptr<spdlog::logger> make_logger(const std::string& log_path, bool append) {
  auto console = std::make_shared<spdlog::sinks::stdout_color_sink_mt>();
  console->set_pattern("%v");
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_path, !append);  // a new run starts a new log
  file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  auto log = std::make_shared<spdlog::logger>("qft.train", spdlog::sinks_init_list{console, file});
  log->flush_on(spdlog::level::info);
  return log;
}

// Refuses a resume whose config differs in a key that would make it meaningless; logs harmless changes.
void check_resume_config(const std::string& saved_json, const RunConfig& now, spdlog::logger& log) {
  const auto saved = nlohmann::json::parse(saved_json).flatten(), current = nlohmann::json::parse(now.to_json()).flatten();
  std::string refused;
  for (auto it = current.begin(); it != current.end(); ++it) {
    const std::string key = it.key().substr(1);  // "/train/lr" -> "train/lr"
    std::string dotted = key;
    std::replace(dotted.begin(), dotted.end(), '/', '.');
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

double validate(LlamaModel& model, const DataLoader& val, const TrainSection& t) {
  LossSum total;
  for (const Batch& b : val.ordered_batches(t.batch_size, t.eval_batches)) {
    const LossSum l = model.forward_loss(b);
    total.loss_sum += l.loss_sum;
    total.tokens += l.tokens;
  }
  return total.mean();
}

// A new run never writes into another's directory: its metrics would replace the old ones and its checkpoints
// and pruning would mix with, or delete, the old run's.
void refuse_existing_run(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const bool logged = name == "metrics.jsonl" && fs::file_size(e.path(), ec) > 0;
    if (logged || name.rfind("step_", 0) == 0) {
      throw FileError(dir, "already holds a run (" + name + "); continue it with --resume, or choose another output.dir");
    }
  }
}

int64_t positions(const std::vector<Batch>& micro) {
  int64_t n = 0;
  for (const Batch& b : micro) n += int64_t(b.B) * b.T;
  return n;
}

}  // namespace

TrainSummary run_training(const RunConfig& cfg, const std::optional<std::string>& resume) {
  cfg.validate();
  const auto t0 = Clock::now();
  auto backend = make_backend(cfg.device, cfg.debug_sync);  // first: a device that cannot run fails before anything is written
  // Will it fit? The plan is a dry run of this very run's allocations.
  const LlamaConfig arch = plan_architecture(cfg);
  const MemoryPlan plan = plan_memory(cfg, arch, backend->name() == "cuda");
  const size_t available = backend->available_bytes();
  if (plan.total_bytes > available) {
    throw Error("the run needs " + std::to_string(plan.total_bytes >> 20) + " MiB but " + backend->name() + " has " +
                std::to_string(available >> 20) + " MiB available:\n" + format_plan(plan, cfg, arch) +
                "Lower data.seq_len or train.batch_size (use train.grad_accum for the same batch), or set "
                "quant.weights=int8 and quant.momentum=int8.");
  }
  if (!resume) refuse_existing_run(cfg.output.dir);
  std::error_code ec;
  fs::create_directories(cfg.output.dir, ec);
  if (ec) throw FileError(cfg.output.dir, "cannot create the output directory: " + ec.message());
  {
    const std::string path = (fs::path(cfg.output.dir) / "config.json").string();
    std::ofstream f(path);
    f << cfg.to_json() << "\n";
    if (!f) throw FileError(path, "cannot write the effective config");
  }
  auto log = make_logger((fs::path(cfg.output.dir) / "train.log").string(), resume.has_value());
  MetricsWriter metrics((fs::path(cfg.output.dir) / "metrics.jsonl").string(), resume.has_value());
  log->info("effective config:\n{}", cfg.to_json());
  log->info("{}", format_plan(plan, cfg, arch));

  const ModelSource source = open_model_source(cfg.model.path);
  const Tokenizer tok(cfg.model.path);
  const auto model_ptr = load_model(source, *backend, WeightStorage{cfg.quant.weights == "int8", cfg.quant.outlier_fraction});
  LlamaModel& model = *model_ptr;
  if (source.checkpoint && !resume) {
    log->info("initialized from {}: its weights only; the optimizer, schedule and data order start fresh",
              source.describe());
  }

  DataStats train_stats, val_stats;
  DataLoader train(load_examples(cfg.data.train, cfg.data, tok, &train_stats), cfg.data, cfg.train.seed, tok.eos_id());
  std::unique_ptr<DataLoader> val;
  if (!cfg.data.val.empty()) {
    val = std::make_unique<DataLoader>(load_examples(cfg.data.val, cfg.data, tok, &val_stats), cfg.data, 0, tok.eos_id());
  }
  log->info("model {}: {} parameters, {} layers, on {} with {} activations", source.describe(),
            source.config.parameter_count(), source.config.num_hidden_layers, backend->name(),
            dtype_name(backend->act_dtype()));
  log->info("data {}: {} examples ({} tokens), {} sequences per epoch; {} truncated to {} tokens, {} bad lines skipped, "
            "{} without targets dropped",
            cfg.data.train, train_stats.examples, train_stats.tokens, train.rows_per_epoch(), train_stats.truncated,
            cfg.data.seq_len, train_stats.skipped_lines, train_stats.dropped_no_target);

  OptimizerSettings os;
  os.beta1 = float(cfg.train.betas[0]);
  os.beta2 = float(cfg.train.betas[1]);
  os.weight_decay = float(cfg.train.weight_decay);
  os.decay_norms = cfg.train.decay_norms;
  os.momentum_int8 = cfg.quant.momentum == "int8";
  os.grad_int8 = cfg.quant.grad_dtype == "int8";
  os.block_size = cfg.quant.block_size;
  os.stochastic = cfg.quant.rounding == "stochastic";
  os.seed = cfg.train.seed;
  LionOptimizer opt(model, os);
  std::unique_ptr<GradAccumulators> acc;
  if (cfg.train.grad_accum > 1) acc = std::make_unique<GradAccumulators>(model, os);
  const double params = double(source.config.parameter_count());
  const size_t state = model.weight_bytes() + opt.state_bytes() + (acc ? acc->bytes() : 0);
  log->info("model state: weights {} ({:.1f} MiB), momentum {} ({:.1f} MiB), gradient accumulators {} ({:.1f} MiB): "
            "{:.2f} bytes/parameter",
            cfg.quant.weights, double(model.weight_bytes()) / (1 << 20), cfg.quant.momentum,
            double(opt.state_bytes()) / (1 << 20), acc ? cfg.quant.grad_dtype : "none",
            double(acc ? acc->bytes() : 0) / (1 << 20), double(state) / params);
  if (cfg.train.clip_grad_norm) {
    log->info("gradient clipping at {}: one extra backward of the last micro-batch per step measures the norm",
              *cfg.train.clip_grad_norm);
  }
  log->info("memory after setup: {:.1f} MiB on {}", double(backend->memory().current_bytes) / (1 << 20), backend->name());

  TrainSummary s;
  int64_t tokens_total = 0;
  int start_step = 0;
  int reselections = 0;
  std::string resumed_from;
  if (resume) {
    resumed_from = resume->empty() ? latest_checkpoint(cfg.output.dir) : *resume;
    const TrainerState st = load_checkpoint(resumed_from, model, opt);
    check_resume_config(st.config_json, cfg, *log);
    train.restore(st.cursor);
    start_step = st.step;
    tokens_total = st.tokens;
    reselections = st.reselections;
    log->info("resumed from {} at step {} (epoch {}, row {})", resumed_from, st.step, st.cursor.epoch, st.cursor.row);
  }
  const auto run_eval = [&](int step) {
    if (!val) return;
    const double vl = validate(model, *val, cfg.train);
    s.val_loss = vl;
    log->info("step {:>5}/{} | val_loss {:.4f} | val_ppl {:.2f}", step, cfg.train.steps, vl, std::exp(vl));
    metrics.write({{"step", step}, {"val_loss", vl}, {"elapsed_s", seconds_since(t0)}});
  };

  const auto loop_t0 = Clock::now();
  for (int step = start_step; step < cfg.train.steps; ++step) {
    const auto step_t0 = Clock::now();
    const std::vector<Batch> micro = train.next_step(cfg.train.grad_accum, cfg.train.batch_size);
    const double lr = learning_rate(cfg.train, step);
    opt.set_step(uint32_t(step));
    if (acc) acc->set_step(uint32_t(step));
    StepResult r;
    try {
      r = train_step(model, opt, acc.get(), micro, float(lr), cfg.train.clip_grad_norm);
    } catch (const NonFiniteLoss& e) {
      if (cfg.train.on_nonfinite != "skip") {
        throw Error("step " + std::to_string(step + 1) + ": " + e.what() +
                    "; no weight was updated. Lower train.lr, set train.clip_grad_norm, or set "
                    "train.on_nonfinite=skip");
      }
      log->warn("step {}: {}; step skipped, weights unchanged", step + 1, e.what());
      s.skipped_steps += 1;
      metrics.write({{"step", step + 1}, {"skipped", true}, {"reason", e.what()}});
      continue;
    }
    const double step_s = seconds_since(step_t0);
    tokens_total += positions(micro);
    if (s.steps == 0) s.first_loss = r.loss;
    s.steps += 1;
    s.last_loss = r.loss;
    const int done = step + 1;
    if (done % cfg.train.log_every == 0 || done == cfg.train.steps) {
      const double elapsed = seconds_since(loop_t0), tps = double(positions(micro)) / step_s;
      const double eta = elapsed / (done - start_step) * (cfg.train.steps - done);
      const size_t peak = backend->memory().peak_bytes;
      std::string line = fmt::format("step {:>5}/{} | loss {:.4f} | lr {:.2e} | {:.0f} tok/s | ETA {} | peak {:.1f} MiB",
                                     done, cfg.train.steps, r.loss, lr, tps, hms(eta), double(peak) / (1 << 20));
      if (r.grad_norm) line += fmt::format(" | norm {:.3f}", *r.grad_norm);
      log->info(line);
      nlohmann::ordered_json m = {{"step", done}, {"loss", r.loss}, {"lr", lr}, {"tokens", tokens_total},
                                  {"tokens_per_s", tps}, {"elapsed_s", seconds_since(t0)}, {"peak_mem_bytes", peak}};
      if (r.grad_norm) m["grad_norm"] = *r.grad_norm;
      if (model.params()[0].quantized()) m["rescaled_rows"] = opt.take_rescaled_rows();
      metrics.write(m);
    }
    if (cfg.quant.reselect_every > 0 && done % cfg.quant.reselect_every == 0 && model.params()[0].quantized()) {
      model.reselect_outliers();
      reselections += 1;
      log->info("step {:>5}/{} | weight outliers re-selected", done, cfg.train.steps);
    }
    if (cfg.train.eval_every > 0 && done % cfg.train.eval_every == 0 && done != cfg.train.steps) run_eval(done);
    if ((cfg.train.save_every > 0 && done % cfg.train.save_every == 0) ||
        (done == cfg.train.steps && cfg.train.save_final)) {
      std::string dir;
      try {
        dir = save_checkpoint(cfg.output.dir, model, opt, {done, tokens_total, train.cursor(), reselections, cfg.to_json()},
                              cfg.model.path);
      } catch (const FileError& e) {
        std::string previous = "no earlier checkpoint exists";
        try {
          previous = "the previous checkpoint " + latest_checkpoint(cfg.output.dir) + " is intact";
        } catch (const FileError&) {
        }
        throw Error("step " + std::to_string(done) + ": the checkpoint could not be written: " + e.what() + "; " +
                    previous + ". Free space (or fix permissions) and continue with --resume");
      }
      prune_checkpoints(cfg.output.dir, cfg.train.keep_last, resumed_from);
      log->info("step {:>5}/{} | checkpoint {}", done, cfg.train.steps, dir);
    }
  }
  run_eval(cfg.train.steps);
  s.elapsed_s = seconds_since(t0);
  s.peak_mem_bytes = backend->memory().peak_bytes;
  log->info("done: {} steps in {} ({} skipped) | loss {:.4f} -> {:.4f}{} | peak memory {:.1f} MiB | {}", s.steps,
            hms(s.elapsed_s), s.skipped_steps, s.first_loss, s.last_loss,
            s.val_loss ? fmt::format(" | val_loss {:.4f}", *s.val_loss) : std::string(),
            double(s.peak_mem_bytes) / (1 << 20), cfg.output.dir);
  spdlog::drop("qft.train");
  return s;
}

}  // namespace qft
