#include "trainer/plan.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "dist/communicator.h"
#include "model/llama.h"
#include "ops/planning_backend.h"
#include "trainer/data_parallel.h"
#include "trainer/train_step.h"

namespace qft {

namespace {

// One unit for a whole table: GiB for real models, MiB for the small ones of tests and the demo.
std::string in_unit(size_t b, size_t total) {
  const bool gib = total >= (size_t(1) << 30);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", double(b) / double(size_t(1) << (gib ? 30 : 20)), gib ? "GiB" : "MiB");
  return buf;
}

// The largest batch a step can see: every sequence full, every position a target.
Batch worst_case_batch(const RunConfig& cfg) {
  Batch b;
  b.B = cfg.train.batch_size;
  b.T = cfg.data.seq_len;
  const size_t n = size_t(b.B) * b.T;
  b.tokens.assign(n, 0);
  b.targets.assign(n, 0);
  b.positions.resize(n);
  for (size_t i = 0; i < n; ++i) b.positions[i] = int32_t(i % size_t(b.T));
  if (cfg.data.packing) b.doc_start.assign(n, 0);
  return b;
}

}  // namespace

PlanTarget plan_target(Device device) {
  if (device == Device::Cpu) return {DType::F32, 0, 0, false};
  return {CudaOptions{}.activations, kCudaReservedBytes, kCudaGemmWorkspaceBytes, true};
}

PlanTarget plan_target(const Backend& be) {
  return {be.act_dtype(), be.reserved_bytes(), be.workspace_bytes(), be.host_memory_is_apart()};
}

LlamaConfig plan_architecture(const RunConfig& cfg) {
  const std::string config_json = (std::filesystem::path(cfg.model.path) / "config.json").string();
  if (!cfg.model.path.empty() && std::filesystem::exists(config_json)) return load_llama_config(config_json);
  if (!cfg.model.arch.empty()) return parse_llama_config(cfg.model.arch, "config key model.arch");
  throw ConfigError("config", "model.arch",
                    "no config.json under model.path ('" + cfg.model.path + "') and no model.arch section to plan from");
}

namespace {

MemoryPlan plan_with(const RunConfig& cfg, const LlamaConfig& arch, const PlanTarget& target, bool keep_layer_weights) {
  PlanningBackend be(target.activations);
  Buffer workspace;
  if (target.workspace_bytes) workspace = be.alloc(target.workspace_bytes, "GEMM workspace");
  // With several ranks, the plan is the last rank's: it owns the most rows of every tensor (dist/row_shards.h).
  const int world = std::max(1, cfg.dist.world_size);
  const auto comm = make_planning_communicator({world - 1, world, 0, "plan"});
  const bool shard_weights = world > 1 && cfg.dist.shard_weights && cfg.quant.weights == StateStorage::Int8;
  LlamaModel model(arch, be, cfg.weight_storage(), shard_weights ? comm.get() : nullptr);
  model.keep_layer_weights = keep_layer_weights;
  model.stack_storage = cfg.train.stack_dtype;
  model.stack_offload = cfg.train.stack_offload;
  const OptimizerSettings os = cfg.optimizer_settings();
  const RowShards shards{world - 1, world};
  Optimizer opt(model, os, shards);
  std::unique_ptr<GradAccumulators> acc;
  // Several ranks fold their partials through the accumulators' rounding; with one micro-batch each, chunk by chunk.
  if (cfg.train.grad_accum * world > 1) {
    acc = std::make_unique<GradAccumulators>(model, os, shards, cfg.train.grad_accum > 1);
  }

  MemoryPlan plan;
  plan.parameters = arch.parameter_count();
  size_t dense = 0, outliers = 0, norms = 0, adapters = 0;
  for (const Param& p : model.params()) {
    if (p.role == ParamRole::Adapter) {
      adapters += p.bytes();
    } else if (p.quantized()) {
      dense += p.int8.q.bytes() + p.int8.scale.bytes();
      outliers += p.int8.row_ptr.bytes() + p.int8.col.bytes() + p.int8.val.bytes();
    } else if (!quantizable(p.role)) {
      norms += p.fp32.bytes();
    } else {
      dense += p.fp32.bytes();
    }
  }
  const std::string wkind = cfg.quant.weights == StateStorage::Int8 ? "INT8 + row scales" : "fp32";
  plan.items.push_back({"weights", dense, wkind});
  if (outliers) plan.items.push_back({"weight outliers", outliers, "fp32 values, CSR indices"});
  plan.items.push_back({"norm weights", norms, "fp32"});
  if (adapters) {
    plan.items.push_back({"LoRA adapters", adapters,
                          cfg.lora.format == LoraFormat::Gse ? "GSE mantissas + group exponents" : "fp32"});
  }
  if (cfg.train.optimizer == OptimizerKind::Adamw) {
    plan.items.push_back({"AdamW moments", opt.state_bytes(), "fp32, of the adapters"});
  } else {
    plan.items.push_back({"Lion momentum", opt.state_bytes(),
                          cfg.quant.momentum == StateStorage::Int8 ? "INT8 + block absmax (fp32 for adapters)" : "fp32"});
  }
  if (acc) plan.items.push_back({"gradient accumulators", acc->bytes(), enum_name(cfg.quant.grad_dtype)});
  plan.state_bytes = model.weight_bytes() + opt.state_bytes() + (acc ? acc->bytes() : 0);

  // Two micro-batches allocate what any number does (the accumulators exist once): a step is planned with at most two.
  const std::vector<Batch> micro(size_t(std::min(cfg.train.grad_accum, 2)), worst_case_batch(cfg));
  plan.world_size = world;
  plan.weights_sharded = shard_weights;
  if (world > 1) {
    data_parallel_step(*comm, model, opt, *acc, micro, 1e-4f, cfg.train.clip_grad_norm);
    // Gradients cross once per backward pass (the planned ones: micro, plus the norm's); updated rows once a step.
    const int clip = cfg.train.clip_grad_norm ? 1 : 0;
    const Communicator::Traffic t = comm->traffic();
    plan.gradient_bytes_per_step = t.all_to_all / size_t(int(micro.size()) + clip) * size_t(cfg.train.grad_accum + clip);
    plan.weight_bytes_per_step = t.all_gather;
  } else {
    train_step(model, opt, acc.get(), micro, 1e-4f, cfg.train.clip_grad_norm);
  }
  model.forward_loss(micro[0]);  // validation: a forward pass only
  plan.peak_bytes = be.memory().peak_bytes;
  // What else was live at the peak, by allocation tag (weights and optimizer state are listed above).
  static const std::map<std::string, std::string> notes = {
      {"layer-input stack", "input of every layer, layers x tokens x hidden, in train.stack_dtype; the residual stream"},
      {"layer activations", "one layer's recomputed forward, attention logsumexp included"},
      {"layer gradients", "one layer's activation gradients"},
      {"dequantized weights", "compute copies: the matrix in use, one layer's kept from its recompute, or the MLP's three while it runs in pieces"},
      {"gathered weights", "dist.shard_weights: the INT8 matrix in use, every rank's rows"},
      {"weight-gradient chunk", "a chunk of rows of one matrix's gradient (32 MiB at most), or a vocabulary chunk of the head's"},
      {"down-projection gradient", "long sequences: w_down's whole fp32 gradient while the MLP's backward takes it in pieces"},
      {"logits chunk", "a token chunk of full-vocabulary logits"},
      {"head activations", "final hidden states, logsumexp, residual-stream gradient"},
      {"optimizer scratch", "accumulated-gradient sums"},
      {"reduction scratch", "partial sums of the loss and the gradient norm"},
      {"gradient-norm rows", "with clipping: each row's sum of squares, one double per row"},
      {"step totals", "the step's loss and gradient norm, read once per step"},
      {"rescale counters", "per-row count of INT8 weight scale growths, u32"},
      {"batch", "token ids, targets, positions"},
      {"GEMM workspace", "cuBLASLt's, held from the start"},
      {"attention scores", "one block of attention scores and their gradients, bounded whatever the sequence"}};
  for (const auto& [tag, bytes] : be.memory().at_peak_by_tag) {
    if (tag == "weights" || tag == "momentum" || tag == "gradient accumulators" || bytes == 0) continue;
    auto it = notes.find(tag);
    plan.items.push_back({tag, bytes, it == notes.end() ? std::string() : it->second});
  }
  plan.allowance_bytes = target.reserved_bytes;
  if (plan.allowance_bytes) plan.items.push_back({"CUDA context + libraries", plan.allowance_bytes, "allowance, untracked"});
  plan.host_bytes = be.host_memory().peak_bytes;
  plan.host_apart = target.host_apart;
  // On the CPU an offloaded stack is in the same memory: counted in full, though device and host peaks differ.
  plan.total_bytes = plan.peak_bytes + plan.allowance_bytes + (plan.host_apart ? 0 : plan.host_bytes);
  plan.keep_layer_weights = keep_layer_weights;
  return plan;
}

}  // namespace

MemoryPlan plan_memory(const RunConfig& cfg, const LlamaConfig& arch, const PlanTarget& target, size_t available) {
  MemoryPlan keep = plan_with(cfg, arch, target, true);
  MemoryPlan lean = plan_with(cfg, arch, target, false);
  const size_t extra = keep.total_bytes > lean.total_bytes ? keep.total_bytes - lean.total_bytes : 0;
  MemoryPlan& chosen = keep.total_bytes <= available ? keep : lean;
  chosen.kept_weights_bytes = extra;
  return chosen;
}

std::string format_plan(const MemoryPlan& plan, const RunConfig& cfg, const LlamaConfig& arch, size_t available) {
  char line[256];
  std::string out;
  const bool billions = plan.parameters >= 1'000'000'000;
  std::snprintf(line, sizeof line, "memory plan: %.2f %s parameters, seq_len %d, batch %d, grad_accum %d, weights %s, momentum %s\n",
                double(plan.parameters) / (billions ? 1e9 : 1e6), billions ? "B" : "M", cfg.data.seq_len, cfg.train.batch_size, cfg.train.grad_accum,
                enum_name(cfg.quant.weights), enum_name(cfg.quant.momentum));
  out += line;
  if (plan.world_size > 1) {
    out += "  per rank, for each of " + std::to_string(plan.world_size) + " ranks (momentum and gradient accumulators" +
           (plan.weights_sharded ? ", and INT8 weights," : "") + " sharded by rows)\n";
  }
  (void)arch;
  for (const auto& it : plan.items) {
    std::snprintf(line, sizeof line, "  %-36s %12s   %s\n", it.name.c_str(), in_unit(it.bytes, plan.total_bytes).c_str(), it.note.c_str());
    out += line;
  }
  if (plan.host_bytes && !plan.host_apart) {
    std::snprintf(line, sizeof line, "  %-36s %12s   %s\n", "layer-input stack (offloaded)",
                  in_unit(plan.host_bytes, plan.total_bytes).c_str(), "train.stack_offload: the same memory on the CPU");
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-36s %12s\n  model state: %.2f bytes/parameter (fp32 Adam: 16)\n", "total",
                in_unit(plan.total_bytes, plan.total_bytes).c_str(), plan.state_bytes_per_param());
  out += line;
  if (plan.host_bytes && plan.host_apart) {
    out += "  and " + in_unit(plan.host_bytes, plan.total_bytes) +
           " of page-locked host memory: the layer-input stack (train.stack_offload)\n";
  }
  if (plan.kept_weights_bytes) {
    const std::string extra = in_unit(plan.kept_weights_bytes, plan.total_bytes);
    out += plan.keep_layer_weights
               ? "  backward keeps a layer's dequantized matrices from its recompute (" + extra +
                     " of the total): each matrix is dequantized twice per step, not three times\n"
               : "  backward dequantizes each matrix again: keeping a layer's from its recompute would need " + extra +
                     " more\n";
  }
  if (plan.world_size > 1) {
    // Bandwidths per direction: NVLink 4 (H100, H200) and a 100 Gb/s network.
    const double bytes = double(plan.gradient_bytes_per_step + plan.weight_bytes_per_step);
    std::snprintf(line, sizeof line,
                  "  each rank receives %.2f GiB a step: %.2f GiB of fp32 gradient rows it owns, %.2f GiB of weight rows "
                  "(%s); %.3f s at NVLink (450 GB/s), %.2f s at 100 Gb/s\n",
                  bytes / double(1ull << 30), double(plan.gradient_bytes_per_step) / double(1ull << 30),
                  double(plan.weight_bytes_per_step) / double(1ull << 30),
                  plan.weights_sharded ? "each matrix gathered before each use" : "the others' updated rows",
                  bytes / 450e9, bytes / 12.5e9);
    out += line;
  }
  if (available != SIZE_MAX) {
    const std::string card = in_unit(available, plan.total_bytes);
    out += plan.total_bytes <= available
               ? "  fits " + card + "\n"
               : "  does not fit " + card + ": " + in_unit(plan.total_bytes - available, plan.total_bytes) +
                     " short (train.stack_offload, a shorter data.seq_len or a smaller train.batch_size help)\n";
  }
  return out;
}

std::string plan_json(const MemoryPlan& plan, size_t available) {
  nlohmann::ordered_json buffers = nlohmann::ordered_json::array();
  for (const auto& it : plan.items) buffers.push_back({{"name", it.name}, {"bytes", it.bytes}, {"note", it.note}});
  nlohmann::ordered_json j = {{"total_bytes", plan.total_bytes},     {"peak_bytes", plan.peak_bytes},
                              {"allowance_bytes", plan.allowance_bytes}, {"state_bytes", plan.state_bytes},
                              {"host_bytes", plan.host_bytes},       {"host_memory_apart", plan.host_apart},
                              {"parameters", plan.parameters},       {"state_bytes_per_param", plan.state_bytes_per_param()},
                              {"keep_layer_weights", plan.keep_layer_weights},
                              {"world_size", plan.world_size},
                              {"gradient_bytes_per_step", plan.gradient_bytes_per_step},
                              {"weight_bytes_per_step", plan.weight_bytes_per_step},
                              {"kept_weights_bytes", plan.kept_weights_bytes},
                              {"buffers", buffers}};
  if (available != SIZE_MAX) {
    j["available_bytes"] = available;
    j["fits"] = plan.total_bytes <= available;
  }
  return j.dump(2);
}

}  // namespace qft
