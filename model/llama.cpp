#include "model/llama.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "dist/communicator.h"
#include "model/hf_model.h"
#include "model/llama_internal.h"
#include "ops/rounding.h"

namespace qft {

namespace {

Buffer upload_f32(Backend& be, const std::vector<float>& host) {
  Buffer b = be.alloc(host.size() * sizeof(float), "weights");
  be.copy_to_device(b.get(), host.data(), host.size() * sizeof(float));
  return b;
}

Buffer upload_i32(Backend& be, const std::vector<int32_t>& host) {
  Buffer b = be.alloc(host.size() * sizeof(int32_t), "batch");
  be.copy_to_device(b.get(), host.data(), host.size() * sizeof(int32_t));
  return b;
}

// n new queries (n, H, D) against the cache's positions, in chunks of queries whose (rows * H, max_t) scores fit
// attention_scores_bytes (one query at least): the scratch grows with the cache, not with its square.
void attend_to_cache(Backend& be, Act out, CAct q, const KvCache& cache, int layer, int n, int H, int KVH, int D) {
  const size_t query_bytes = size_t(H) * size_t(cache.max_t) * 4;
  const int rows = int(std::clamp<size_t>(be.attention_scores_bytes / query_bytes, 1, size_t(n)));
  Buffer scores = be.alloc(size_t(rows) * query_bytes, "attention scores");  // (rows * H, max_t)
  for (int first = 0; first < n; first += rows) {
    const int64_t at = int64_t(first) * H * D;
    be.attention_decode({out + at, scores.f32(), q + at, cache.k[size_t(layer)].act(), cache.v[size_t(layer)].act(),
                         std::min(rows, n - first), cache.past + first, cache.max_t, H, KVH, D});
  }
}

}  // namespace

LossSum sum_losses(Backend& be, const Buffer& loss, const Batch& batch) {
  std::vector<float> host(batch.targets.size());
  be.copy_to_host(host.data(), loss.get(), host.size() * 4);
  LossSum out;
  for (size_t i = 0; i < host.size(); ++i) {
    if (batch.targets[i] == kIgnoreIndex) continue;
    out.loss_sum += host[i];
    out.tokens += 1;
  }
  return out;
}

LlamaModel::LlamaModel(const LlamaConfig& config, Backend& backend, const WeightStorage& storage,
                       Communicator* shard_over)
    : config_(config), backend_(backend), storage_(storage), shard_over_(shard_over) {
  if (shard_over_) weight_shards_ = {shard_over_->rank(), shard_over_->world_size()};
  layers_.resize(size_t(config_.num_hidden_layers));
  for (const TensorSpec& spec : llama_tensor_specs(config_)) {
    const int index = int(params_.size());
    const bool is_1d = spec.shape.size() == 1;
    Param p{spec.name, spec.shape, spec.role, is_1d ? 1 : spec.shape[0], is_1d ? spec.shape[0] : spec.shape[1], {}, {}, {}, false};
    if (storage.int8 && quantizable(spec.role)) {
      const int64_t held = weight_shards_.mine(p.rows).size();
      if (held == 0) {
        throw Error(p.name + ": " + std::to_string(p.rows) + " rows cannot be shared by " +
                    std::to_string(weight_shards_.world_size) + " ranks");
      }
      p.int8 = allocate_hybrid(backend_, held, p.cols, storage.outlier_fraction);
    } else {
      p.fp32 = backend_.alloc(size_t(p.numel()) * 4, "weights");
    }
    params_.push_back(std::move(p));
    if (spec.slot) {
      layers_[size_t(spec.layer)].*spec.slot = index;
    } else if (spec.role == ParamRole::Embedding) {
      embedding_ = index;
    } else if (spec.role == ParamRole::Norm) {
      final_norm_ = index;
    } else if (spec.role == ParamRole::Head) {
      head_ = index;
    }
  }
  if (config_.tie_word_embeddings) head_ = embedding_;
  const LoraSettings& lora = storage.lora;
  for (Param& p : params_) p.frozen = lora.enabled();
  // Each adapter takes its shape from its base matrix (out, in): A (r, in), B (out, r).
  auto add_adapter = [&](int layer, LoraTarget t, bool is_b) {
    const Param& base = params_[size_t(layers_[size_t(layer)].matrix(t))];
    const int64_t rows = is_b ? base.rows : lora.rank, cols = is_b ? lora.rank : base.cols;
    Param p{lora_tensor_name(layer, t, is_b), {rows, cols}, ParamRole::Adapter, rows, cols, {}, {}, {}, false};
    if (lora.gse) {
      p.gse = GseMatrix::allocate(backend_, rows, cols, lora.format, "weights");
    } else {
      p.fp32 = backend_.alloc(size_t(p.numel()) * 4, "weights");
    }
    params_.push_back(std::move(p));
    return int(params_.size()) - 1;
  };
  for (int l = 0; lora.enabled() && l < config_.num_hidden_layers; ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      if (!lora.targets[size_t(t)]) continue;
      layers_[size_t(l)].lora_a[size_t(t)] = add_adapter(l, LoraTarget(t), false);
      layers_[size_t(l)].lora_b[size_t(t)] = add_adapter(l, LoraTarget(t), true);
    }
  }
  inv_freq_ = upload_f32(backend_, config_.rope_inv_freq());
}

LlamaModel::LlamaModel(const HfModel& hf, Backend& backend, const WeightStorage& storage, Communicator* shard_over)
    : LlamaModel(hf.config(), backend, storage, shard_over) {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].role != ParamRole::Adapter) load_weight(int(i), hf.read_f32(params_[i].name).data());
  }
  init_adapters();
}

void LlamaModel::init_adapters() {
  for (const LayerParams& lp : layers_) {
    for (int t = 0; t < kLoraTargets; ++t) {
      const int a = lp.lora_a[size_t(t)], b = lp.lora_b[size_t(t)];
      if (a < 0) continue;
      const Param& A = params_[size_t(a)];
      std::vector<float> host(size_t(A.numel()));
      const float bound = 1.0f / std::sqrt(float(A.cols));
      for (int64_t r = 0; r < A.rows; ++r) {
        const RowRandom rnd(RoundingKey{storage_.lora.seed, 0, uint32_t(a), true}, uint64_t(r));
        for (int64_t c = 0; c < A.cols; ++c) host[size_t(r * A.cols + c)] = bound * (2.0f * rnd.uniform(uint32_t(c)) - 1.0f);
      }
      load_weight(a, host.data());
      load_weight(b, std::vector<float>(size_t(params_[size_t(b)].numel()), 0.0f).data());
    }
  }
}

void LlamaModel::init_random(uint64_t seed, float stddev) {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = params_[i];
    if (p.role == ParamRole::Adapter) continue;  // init_adapters
    std::vector<float> host(size_t(p.numel()), p.role == ParamRole::Bias ? 0.0f : 1.0f);
    if (p.role != ParamRole::Norm && p.role != ParamRole::Bias) {
      const int64_t n = p.numel();
#pragma omp parallel for schedule(static)
      for (int64_t pair = 0; pair < (n + 1) / 2; ++pair) {
        const NormalPair z = normal_pair_hd(seed, uint32_t(i), uint64_t(pair));
        host[size_t(2 * pair)] = stddev * z.first;
        if (2 * pair + 1 < n) host[size_t(2 * pair + 1)] = stddev * z.second;
      }
    }
    load_weight(int(i), host.data());
  }
  init_adapters();
}

std::vector<float> LlamaModel::read_weight(int param) const {
  return backend_.read_f32(dense(param, DType::F32).get(), params_[size_t(param)].numel());
}

RowRange LlamaModel::held_rows(int param) const {
  const Param& p = params_[size_t(param)];
  return shard_over_ && p.quantized() ? weight_shards_.mine(p.rows) : RowRange{0, p.rows};
}

void LlamaModel::load_weight(int param, const float* host) {
  Param& p = params_[size_t(param)];
  if (p.quantized()) {
    // Rows are quantized independently: this rank's rows come out as they would in the whole matrix.
    quantize_hybrid_into(backend_, p.int8, host + held_rows(param).begin * p.cols, storage_.outlier_fraction);
  } else if (p.is_gse()) {
    // Nearest rounding: a value that GSE holds (a checkpoint's) comes back exactly.
    Buffer tmp = backend_.alloc(size_t(p.numel()) * 4, "optimizer scratch");
    backend_.copy_to_device(tmp.get(), host, tmp.bytes());
    backend_.gse_quantize(p.gse.view(), CAct{tmp.get(), DType::F32}, {0, 0, 0, false}, 0);
  } else {
    backend_.copy_to_device(p.fp32.get(), host, size_t(p.numel()) * 4);
  }
}

DenseWeight LlamaModel::dense(int param, DType as) const {
  const Param& p = params_[size_t(param)];
  DenseWeight d;
  if (!dense_held_.empty() && as == backend_.act_dtype() && dense_held_[size_t(param)].ptr.ptr) {
    d.ptr = dense_held_[size_t(param)].ptr;  // a view of the held copy
    return d;
  }
  if (!dense_copies(p, as)) {
    d.ptr = p.fp32.f32();
    return d;
  }
  d.copy = backend_.alloc(size_t(p.numel()) * act_size(as), "dequantized weights");
  const Act out{d.copy.get(), as};
  if (p.quantized() && shard_over_) {
    const HybridMatrix whole = gathered(param);
    backend_.dequantize_hybrid(out, whole.view());
  } else if (p.quantized()) {
    backend_.dequantize_hybrid(out, p.int8.view());
  } else if (p.is_gse()) {
    backend_.gse_dequantize(out, p.gse.view());
  } else {
    backend_.convert(out, p.fp32.f32(), p.numel());
  }
  d.ptr = out;
  return d;
}

HybridMatrix LlamaModel::gathered(int param) const {
  const Param& p = params_[size_t(param)];
  HybridMatrix whole = allocate_hybrid(backend_, p.rows, p.cols, storage_.outlier_fraction, "gathered weights");
  const int64_t k = whole.nnz / p.rows;  // outliers per row, the same in every row
  const RowRange mine = weight_shards_.mine(p.rows);
  // Each part in place: this rank's rows copied where they belong, the others' gathered around them.
  auto gather = [&](Buffer& to, const Buffer& from, int64_t bytes_per_row) {
    backend_.copy(static_cast<uint8_t*>(to.get()) + mine.begin * bytes_per_row, from.get(),
                  size_t(mine.size() * bytes_per_row));
    shard_over_->all_gather_v(to.get(), weight_shards_.piece_bytes(p.rows, 0, p.rows, bytes_per_row));
  };
  gather(whole.q, p.int8.q, p.cols);
  gather(whole.scale, p.int8.scale, 4);
  gather(whole.val, p.int8.val, k * 4);
  gather(whole.col, p.int8.col, k * whole.col_bytes);
  set_uniform_row_ptr(backend_, whole);
  return whole;
}

LlamaModel::DenseHold LlamaModel::hold_dense_weights() {
  auto copied = [&](const Param& p) { return p.shape.size() == 2 && dense_copies(p, backend_.act_dtype()); };
  size_t bytes = 0;
  for (const Param& p : params_) bytes += copied(p) ? backend_.act_bytes(p.numel()) : 0;
  if (shard_over_ || !dense_held_.empty() || bytes == 0 || bytes > backend_.available_bytes() / 2) return DenseHold{};
  std::vector<DenseWeight> held(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (copied(params_[i])) held[i] = dense(int(i));
  }
  dense_held_ = std::move(held);
  return DenseHold{this};
}

CAct LlamaModel::dense_into(DenseWeight& slot, int param) const {
  slot = DenseWeight{};
  slot = dense(param);
  return slot.get();
}

void LlamaModel::reselect_outliers() {
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = params_[i];
    if (p.quantized()) load_weight(int(i), read_weight(int(i)).data());
  }
}

size_t LlamaModel::weight_bytes() const {
  size_t n = 0;
  for (const Param& p : params_) n += p.bytes();
  return n;
}

LlamaModel::DeviceBatch LlamaModel::upload(const Batch& batch, bool token_groups) {
  batch.validate(config_.vocab_size);
  DeviceBatch db{batch.B, batch.T, batch.B * batch.T, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  db.tokens = upload_i32(backend_, batch.tokens);
  if (token_groups) {
    db.groups = TokenGroups::of(batch.tokens);
    db.group_order = upload_i32(backend_, db.groups.order);
    db.group_start = upload_i32(backend_, db.groups.start);
    db.group_token = upload_i32(backend_, db.groups.token);
  }
  db.targets = upload_i32(backend_, batch.targets);
  db.positions = upload_i32(backend_, batch.positions);
  if (!batch.doc_start.empty()) {
    db.doc_start = upload_i32(backend_, batch.doc_start);
    // A document starts where a token's first visible key is itself.
    std::vector<int32_t> starts;
    for (int i = 0; i < db.N; ++i) {
      if (batch.doc_start[size_t(i)] == i % db.T) starts.push_back(i);
    }
    starts.push_back(db.N);
    for (size_t d = 0; d + 1 < starts.size(); ++d) db.docs.max_len = std::max(db.docs.max_len, starts[d + 1] - starts[d]);
    db.docs.count = int(starts.size()) - 1;
    db.doc_span_start = upload_i32(backend_, starts);
    db.docs.start = db.doc_span_start.i32();
  }
  return db;
}

LlamaModel::LayerActs LlamaModel::layer_forward(int layer, CAct x_in, Act x_out, const DeviceBatch& db,
                                                KvCache* cache, LayerWeights* keep) {
  Backend& be = backend_;
  const LlamaConfig& c = config_;
  const int N = db.N, C = c.hidden_size, I = c.intermediate_size, H = c.num_attention_heads,
            KVH = c.num_key_value_heads, D = c.head_dim;
  const float eps = float(c.rms_norm_eps);
  // Each matrix is dequantized right before its GEMM and, unless kept, dropped after it: one matrix of workspace.
  const LayerParams& P = layer_params(layer);
  DenseWeight dropped;
  auto matrix = [&](int param, DenseWeight LayerWeights::*slot) {
    return dense_into(keep ? keep->*slot : dropped, param);
  };
  LayerActs a;
  a.xn1 = be.alloc_act(int64_t(N) * C, "layer activations");                      // (N, C)
  a.rstd1 = be.alloc(size_t(N) * 4, "layer activations");                         // (N,)
  a.q = be.alloc_act(int64_t(N) * c.q_dim(), "layer activations");                // (N, H, D), after RoPE
  a.k = be.alloc_act(int64_t(N) * c.kv_dim(), "layer activations");               // (N, KVH, D), after RoPE
  a.v = be.alloc_act(int64_t(N) * c.kv_dim(), "layer activations");               // (N, KVH, D)
  // Training, and a prompt into an empty cache, run the flash-style attention (nothing (T, T)); tokens after a
  // cache's first attend to it through the decode op.
  const bool attends_to_cache = cache && cache->past > 0;
  if (!attends_to_cache) {
    a.lse = be.alloc(size_t(be.attention_stats_elems(db.B, db.T, H, db.docs)) * 4, "layer activations");
  }
  a.att_out = be.alloc_act(int64_t(N) * c.q_dim(), "layer activations");          // (N, H, D)
  a.x_mid = be.alloc_act(int64_t(N) * C, "layer activations");                    // (N, C) residual after attention

  be.rmsnorm_forward(a.xn1.act(), a.rstd1.f32(), x_in, norm_weight(P.attn_norm), N, C, eps);
  be.matmul_forward(a.q.act(), a.xn1.act(), matrix(P.q, &LayerWeights::q), N, C, c.q_dim());
  be.matmul_forward(a.k.act(), a.xn1.act(), matrix(P.k, &LayerWeights::k), N, C, c.kv_dim());
  be.matmul_forward(a.v.act(), a.xn1.act(), matrix(P.v, &LayerWeights::v), N, C, c.kv_dim());
  adapter_forward(layer, LoraTarget::Q, a.q.act(), a.xn1.act(), N, C, c.q_dim());
  adapter_forward(layer, LoraTarget::K, a.k.act(), a.xn1.act(), N, C, c.kv_dim());
  adapter_forward(layer, LoraTarget::V, a.v.act(), a.xn1.act(), N, C, c.kv_dim());
  a.xn1.reset();  // the backward normalizes x_in again for the weight gradients: cheaper than holding it
  be.rope(a.q.act(), db.positions.i32(), inv_freq_.f32(), N, H, D, false);
  be.rope(a.k.act(), db.positions.i32(), inv_freq_.f32(), N, KVH, D, false);
  if (cache) {
    const int64_t at = int64_t(cache->past) * c.kv_dim();
    const size_t bytes = be.act_bytes(int64_t(N) * c.kv_dim());
    be.copy((cache->k[size_t(layer)].act() + at).ptr, a.k.get(), bytes);
    be.copy((cache->v[size_t(layer)].act() + at).ptr, a.v.get(), bytes);
  }
  if (attends_to_cache) {
    attend_to_cache(be, a.att_out.act(), a.q.act(), *cache, layer, N, H, KVH, D);
  } else {
    be.attention_forward({a.att_out.act(), a.lse.f32(), a.q.act(), a.k.act(), a.v.act(), db.doc_start.i32(), db.docs, db.B,
                          db.T, H, KVH, D});
  }
  // A forward that produces x_out (training's forward, inference) keeps nothing for a backward: each buffer goes
  // after its last read. The backward's recompute (no x_out) stops before the down projection and keeps what
  // layer_backward reads; it recomputes the cheap silu(gate) * up itself rather than hold it all along.
  const bool keeps_nothing = x_out.ptr != nullptr;
  Buffer proj = be.alloc_act(int64_t(N) * C, "layer activations");  // (N, C)
  be.matmul_forward(proj.act(), a.att_out.act(), matrix(P.o, &LayerWeights::o), N, c.q_dim(), C);
  adapter_forward(layer, LoraTarget::O, proj.act(), a.att_out.act(), N, c.q_dim(), C);
  be.copy(a.x_mid.get(), x_in.ptr, be.act_bytes(int64_t(N) * C));
  be.residual_add(a.x_mid.act(), proj.act(), int64_t(N) * C);
  if (keeps_nothing) {
    for (Buffer* b : {&a.rstd1, &a.q, &a.k, &a.v, &a.lse, &a.att_out}) b->reset();
  } else {
    proj.reset();
  }

  a.xn2 = be.alloc_act(int64_t(N) * C, "layer activations");  // (N, C)
  a.rstd2 = be.alloc(size_t(N) * 4, "layer activations");     // (N,)
  be.rmsnorm_forward(a.xn2.act(), a.rstd2.f32(), a.x_mid.act(), norm_weight(P.mlp_norm), N, C, eps);
  // Long sequences take the MLP in pieces (model/llama_mlp.cpp): the forward by tokens, and the backward by
  // columns, which recomputes gate and up itself from xn2 (the recompute stops here).
  if (keeps_nothing) {
    if (const int rows = mlp_forward_rows(layer, N); rows < N) {
      mlp_forward_by_rows(layer, a.xn2.act(), a.x_mid.act(), x_out, proj.act(), N, rows);
      return a;
    }
  } else if (mlp_backward_columns(layer, N) < I) {
    return a;
  }
  a.gate = be.alloc_act(int64_t(N) * I, "layer activations"); // (N, I)
  a.up = be.alloc_act(int64_t(N) * I, "layer activations");   // (N, I)
  be.matmul_forward(a.gate.act(), a.xn2.act(), matrix(P.gate, &LayerWeights::gate), N, C, I);
  be.matmul_forward(a.up.act(), a.xn2.act(), matrix(P.up, &LayerWeights::up), N, C, I);
  adapter_forward(layer, LoraTarget::Gate, a.gate.act(), a.xn2.act(), N, C, I);
  adapter_forward(layer, LoraTarget::Up, a.up.act(), a.xn2.act(), N, C, I);
  a.xn2.reset();  // as xn1
  if (keeps_nothing) {
    Buffer act = be.alloc_act(int64_t(N) * I, "layer activations");  // (N, I) silu(gate) * up
    be.swiglu_forward(act.act(), a.gate.act(), a.up.act(), int64_t(N) * I);
    a.gate.reset();
    a.up.reset();
    be.matmul_forward(proj.act(), act.act(), matrix(P.down, &LayerWeights::down), N, I, C);
    adapter_forward(layer, LoraTarget::Down, proj.act(), act.act(), N, I, C);
    be.copy(x_out.ptr, a.x_mid.get(), be.act_bytes(int64_t(N) * C));
    be.residual_add(x_out, proj.act(), int64_t(N) * C);
  }
  return a;
}

Buffer LlamaModel::forward_hidden(const DeviceBatch& db, KvCache* cache) {
  const int N = db.N, C = config_.hidden_size;
  Buffer x = backend_.alloc_act(int64_t(N) * C, "head activations");  // (N, C) residual stream
  backend_.embedding_forward(x.act(), db.tokens.i32(), dense(embedding_param()).get(), N, C);
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    layer_forward(l, x.act(), x.act(), db, cache);  // in place: x_in is read before x_out is written
  }
  Buffer out = backend_.alloc_act(int64_t(N) * C, "head activations");
  backend_.rmsnorm_forward(out.act(), nullptr, x.act(), norm_weight(final_norm_param()), N, C,
                           float(config_.rms_norm_eps));
  return out;
}

void LlamaModel::lm_head(CAct hidden, CAct weight, int N, const std::function<void(int, int, Act)>& fn) {
  const int C = config_.hidden_size, V = config_.vocab_size;
  const int chunk = std::max(1, std::min(N, logits_chunk_tokens));
  Buffer logits = backend_.alloc_act(int64_t(chunk) * V, "logits chunk");  // (chunk, V)
  for (int r0 = 0; r0 < N; r0 += chunk) {
    const int rows = std::min(chunk, N - r0);
    backend_.matmul_forward(logits.act(), hidden + int64_t(r0) * C, weight, rows, C, V);
    fn(r0, rows, logits.act());
  }
}

KvCache LlamaModel::new_kv_cache(int max_t) {
  KvCache c;
  c.max_t = max_t;
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    c.k.push_back(backend_.alloc_act(int64_t(max_t) * config_.kv_dim(), "kv cache"));
    c.v.push_back(backend_.alloc_act(int64_t(max_t) * config_.kv_dim(), "kv cache"));
  }
  return c;
}

std::vector<float> LlamaModel::decode(const std::vector<int32_t>& tokens, KvCache& cache) {
  const int n = int(tokens.size()), C = config_.hidden_size, V = config_.vocab_size;
  if (n == 0) throw Error("decode: no tokens");
  if (cache.past + n > cache.max_t) {
    throw Error("decode: " + std::to_string(cache.past + n) + " positions exceed the cache's " + std::to_string(cache.max_t));
  }
  const DeviceBatch db = upload(Batch::sequence(tokens, cache.past));
  const Buffer hidden = forward_hidden(db, &cache);  // (n, C)
  cache.past += n;
  Buffer logits = backend_.alloc_act(V, "logits chunk");  // (1, V) of the last position
  backend_.matmul_forward(logits.act(), hidden.act() + int64_t(n - 1) * C, dense(head_param()).get(), 1, C, V);
  return backend_.read_f32(logits.act(), V);
}

LossSum LlamaModel::forward_loss(const Batch& batch) {
  DeviceBatch db = upload(batch);
  Buffer hidden = forward_hidden(db);
  Buffer loss = backend_.alloc(size_t(db.N) * 4, "head activations");  // (N,)
  lm_head(hidden.act(), dense(head_param()).get(), db.N, [&](int r0, int rows, Act logits) {
    backend_.cross_entropy_forward(loss.f32() + r0, nullptr, logits, db.targets.i32() + r0, rows, config_.vocab_size);
  });
  return sum_losses(backend_, loss, batch);
}

std::vector<float> LlamaModel::forward_logits(const Batch& batch) {
  DeviceBatch db = upload(batch);
  Buffer hidden = forward_hidden(db);
  const int64_t V = config_.vocab_size;
  std::vector<float> out(size_t(db.N) * size_t(V));
  lm_head(hidden.act(), dense(head_param()).get(), db.N, [&](int r0, int rows, Act logits) {
    const std::vector<float> chunk = backend_.read_f32(logits, rows * V);
    std::copy(chunk.begin(), chunk.end(), out.begin() + int64_t(r0) * V);
  });
  return out;
}

}  // namespace qft
