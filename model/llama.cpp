#include "model/llama.h"

#include <algorithm>

#include "core/error.h"
#include "model/hf_model.h"
#include "model/llama_internal.h"
#include "ops/kernels.h"

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

}  // namespace

Batch Batch::from_labels(int B, int T, const std::vector<int32_t>& input_ids, const std::vector<int32_t>& labels) {
  if (input_ids.size() != size_t(B) * T || labels.size() != size_t(B) * T) {
    throw Error("Batch::from_labels: expected " + std::to_string(B * T) + " input ids and labels");
  }
  Batch b;
  b.B = B;
  b.T = T;
  b.tokens = input_ids;
  b.targets.assign(size_t(B) * T, kIgnoreIndex);
  b.positions.resize(size_t(B) * T);
  for (int r = 0; r < B; ++r) {
    for (int t = 0; t < T; ++t) {
      b.positions[size_t(r) * T + t] = t;
      if (t + 1 < T) b.targets[size_t(r) * T + t] = labels[size_t(r) * T + t + 1];
    }
  }
  return b;
}

Batch Batch::sequence(const std::vector<int32_t>& tokens, int first_position) {
  Batch b;
  b.B = 1;
  b.T = int(tokens.size());
  b.tokens = tokens;
  b.targets.assign(tokens.size(), kIgnoreIndex);
  for (int t = 0; t < b.T; ++t) b.positions.push_back(first_position + t);
  return b;
}

void Batch::validate(int vocab_size) const {
  const size_t n = size_t(B) * T;
  if (B <= 0 || T <= 0) throw Error("batch: B and T must be positive");
  if (tokens.size() != n || targets.size() != n || positions.size() != n || (!doc_start.empty() && doc_start.size() != n)) {
    throw Error("batch: tokens, targets, positions and doc_start must each hold B*T entries");
  }
  for (size_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab_size) {
      throw Error("batch: token id " + std::to_string(tokens[i]) + " outside the vocabulary of " + std::to_string(vocab_size));
    }
    if (targets[i] != kIgnoreIndex && (targets[i] < 0 || targets[i] >= vocab_size)) {
      throw Error("batch: target id " + std::to_string(targets[i]) + " outside the vocabulary of " + std::to_string(vocab_size));
    }
    const int t = int(i % size_t(T));
    if (!doc_start.empty() && (doc_start[i] < 0 || doc_start[i] > t)) throw Error("batch: doc_start must lie in [0, t]");
  }
}

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

int64_t Batch::target_count() const {
  int64_t n = 0;
  for (int32_t t : targets) n += t != kIgnoreIndex;
  return n;
}

LlamaModel::LlamaModel(const LlamaConfig& config, Backend& backend, const WeightStorage& storage)
    : config_(config), backend_(backend), storage_(storage) {
  for (const TensorSpec& spec : llama_tensor_specs(config_)) {
    const bool is_1d = spec.shape.size() == 1;
    Param p{spec.name, is_1d ? 1 : spec.shape[0], is_1d ? spec.shape[0] : spec.shape[1], is_1d, {}, {}};
    if (storage.int8 && !is_1d) {
      p.int8 = allocate_hybrid(backend_, p.rows, p.cols, storage.outlier_fraction);
    } else {
      p.fp32 = backend_.alloc(size_t(p.numel()) * 4, "weights");
    }
    params_.push_back(std::move(p));
  }
  inv_freq_ = upload_f32(backend_, config_.rope_inv_freq());
}

LlamaModel::LlamaModel(const HfModel& hf, Backend& backend, const WeightStorage& storage)
    : LlamaModel(hf.config(), backend, storage) {
  for (size_t i = 0; i < params_.size(); ++i) load_weight(int(i), hf.read_f32(params_[i].name).data());
}

std::vector<float> LlamaModel::read_weight(int param) const {
  std::vector<float> host(size_t(params_[size_t(param)].numel()));
  backend_.copy_to_host(host.data(), dense(param).f32(), host.size() * 4);
  return host;
}

void LlamaModel::load_weight(int param, const float* host) {
  Param& p = params_[size_t(param)];
  if (p.quantized()) {
    quantize_hybrid_into(backend_, p.int8, host, storage_.outlier_fraction);
  } else {
    backend_.copy_to_device(p.fp32.get(), host, size_t(p.numel()) * 4);
  }
}

DenseWeight LlamaModel::dense(int param) const {
  const Param& p = params_[size_t(param)];
  DenseWeight d;
  if (!p.quantized()) {
    d.ptr = p.fp32.f32();
    return d;
  }
  d.copy = backend_.alloc(size_t(p.numel()) * 4, "dequantized weights");
  backend_.dequantize_hybrid(d.copy.f32(), p.int8.view());
  d.ptr = d.copy.f32();
  return d;
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

LlamaModel::DeviceBatch LlamaModel::upload(const Batch& batch) {
  batch.validate(config_.vocab_size);
  DeviceBatch db{batch.B, batch.T, batch.B * batch.T, {}, {}, {}, {}};
  db.tokens = upload_i32(backend_, batch.tokens);
  db.targets = upload_i32(backend_, batch.targets);
  db.positions = upload_i32(backend_, batch.positions);
  if (!batch.doc_start.empty()) db.doc_start = upload_i32(backend_, batch.doc_start);
  return db;
}

LlamaModel::LayerActs LlamaModel::layer_forward(int layer, const float* x_in, float* x_out, const DeviceBatch& db,
                                                KvCache* cache) {
  Backend& be = backend_;
  const LlamaConfig& c = config_;
  const int N = db.N, C = c.hidden_size, I = c.intermediate_size, H = c.num_attention_heads,
            KVH = c.num_key_value_heads, D = c.head_dim;
  const float eps = float(c.rms_norm_eps);
  // Each matrix is dequantized right before its GEMM and dropped after it: one matrix of fp32 workspace at a time.
  const int P = layer_param(layer);
  LayerActs a;
  a.xn1 = be.alloc(size_t(N) * C * 4, "layer activations");                      // (N, C)
  a.rstd1 = be.alloc(size_t(N) * 4, "layer activations");                        // (N,)
  a.q = be.alloc(size_t(N) * c.q_dim() * 4, "layer activations");                // (N, H, D), after RoPE
  a.k = be.alloc(size_t(N) * c.kv_dim() * 4, "layer activations");               // (N, KVH, D), after RoPE
  a.v = be.alloc(size_t(N) * c.kv_dim() * 4, "layer activations");               // (N, KVH, D)
  if (!cache) a.probs = be.alloc(size_t(db.B) * H * db.T * db.T * 4, "layer activations");  // (B, H, T, T)
  a.att_out = be.alloc(size_t(N) * c.q_dim() * 4, "layer activations");          // (N, H, D)
  a.x_mid = be.alloc(size_t(N) * C * 4, "layer activations");                    // (N, C) residual after attention
  Buffer proj = be.alloc(size_t(N) * C * 4, "layer activations");                // (N, C)

  be.rmsnorm_forward(a.xn1.f32(), a.rstd1.f32(), x_in, dense(P).f32(), N, C, eps);
  be.matmul_forward(a.q.f32(), a.xn1.f32(), dense(P + 1).f32(), N, C, c.q_dim());
  be.matmul_forward(a.k.f32(), a.xn1.f32(), dense(P + 2).f32(), N, C, c.kv_dim());
  be.matmul_forward(a.v.f32(), a.xn1.f32(), dense(P + 3).f32(), N, C, c.kv_dim());
  be.rope(a.q.f32(), db.positions.i32(), inv_freq_.f32(), N, H, D, false);
  be.rope(a.k.f32(), db.positions.i32(), inv_freq_.f32(), N, KVH, D, false);
  if (cache) {
    const size_t at = size_t(cache->past) * c.kv_dim() * 4, bytes = size_t(N) * c.kv_dim() * 4;
    be.copy(static_cast<uint8_t*>(cache->k[size_t(layer)].get()) + at, a.k.get(), bytes);
    be.copy(static_cast<uint8_t*>(cache->v[size_t(layer)].get()) + at, a.v.get(), bytes);
    Buffer scratch = be.alloc(size_t(N) * H * cache->max_t * 4, "layer activations");  // (N * H, max_t)
    be.attention_decode({a.att_out.f32(), scratch.f32(), a.q.f32(), cache->k[size_t(layer)].f32(),
                         cache->v[size_t(layer)].f32(), N, cache->past, cache->max_t, H, KVH, D});
  } else {
    be.attention_forward({a.att_out.f32(), a.probs.f32(), a.q.f32(), a.k.f32(), a.v.f32(), db.doc_start.i32(), db.B,
                          db.T, H, KVH, D});
  }
  be.matmul_forward(proj.f32(), a.att_out.f32(), dense(P + 4).f32(), N, c.q_dim(), C);
  be.copy(a.x_mid.get(), x_in, size_t(N) * C * 4);
  be.residual_add(a.x_mid.f32(), proj.f32(), int64_t(N) * C);

  a.xn2 = be.alloc(size_t(N) * C * 4, "layer activations");  // (N, C)
  a.rstd2 = be.alloc(size_t(N) * 4, "layer activations");    // (N,)
  a.gate = be.alloc(size_t(N) * I * 4, "layer activations"); // (N, I)
  a.up = be.alloc(size_t(N) * I * 4, "layer activations");   // (N, I)
  a.act = be.alloc(size_t(N) * I * 4, "layer activations");  // (N, I) silu(gate) * up
  be.rmsnorm_forward(a.xn2.f32(), a.rstd2.f32(), a.x_mid.f32(), dense(P + 5).f32(), N, C, eps);
  be.matmul_forward(a.gate.f32(), a.xn2.f32(), dense(P + 6).f32(), N, C, I);
  be.matmul_forward(a.up.f32(), a.xn2.f32(), dense(P + 7).f32(), N, C, I);
  be.swiglu_forward(a.act.f32(), a.gate.f32(), a.up.f32(), int64_t(N) * I);
  if (x_out) {
    be.matmul_forward(proj.f32(), a.act.f32(), dense(P + 8).f32(), N, I, C);
    be.copy(x_out, a.x_mid.get(), size_t(N) * C * 4);
    be.residual_add(x_out, proj.f32(), int64_t(N) * C);
  }
  return a;
}

Buffer LlamaModel::forward_hidden(const DeviceBatch& db, KvCache* cache) {
  const int N = db.N, C = config_.hidden_size;
  Buffer x = backend_.alloc(size_t(N) * C * 4, "head activations");  // (N, C) residual stream
  backend_.embedding_forward(x.f32(), db.tokens.i32(), dense(0).f32(), N, C);
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    layer_forward(l, x.f32(), x.f32(), db, cache);  // in place: x_in is read before x_out is written
  }
  Buffer out = backend_.alloc(size_t(N) * C * 4, "head activations");
  backend_.rmsnorm_forward(out.f32(), nullptr, x.f32(), params_[size_t(final_norm_param())].fp32.f32(), N, C,
                           float(config_.rms_norm_eps));
  return out;
}

void LlamaModel::lm_head(const float* hidden, const float* weight, int N, const std::function<void(int, int, float*)>& fn) {
  const int C = config_.hidden_size, V = config_.vocab_size;
  const int chunk = std::max(1, std::min(N, logits_chunk_tokens));
  Buffer logits = backend_.alloc(size_t(chunk) * V * 4, "logits chunk");  // (chunk, V)
  for (int r0 = 0; r0 < N; r0 += chunk) {
    const int rows = std::min(chunk, N - r0);
    backend_.matmul_forward(logits.f32(), hidden + size_t(r0) * C, weight, rows, C, V);
    fn(r0, rows, logits.f32());
  }
}

KvCache LlamaModel::new_kv_cache(int max_t) {
  KvCache c;
  c.max_t = max_t;
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    c.k.push_back(backend_.alloc(size_t(max_t) * config_.kv_dim() * 4, "kv cache"));
    c.v.push_back(backend_.alloc(size_t(max_t) * config_.kv_dim() * 4, "kv cache"));
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
  Buffer logits = backend_.alloc(size_t(V) * 4, "logits chunk");  // (1, V) of the last position
  backend_.matmul_forward(logits.f32(), hidden.f32() + size_t(n - 1) * C, dense(head_param()).f32(), 1, C, V);
  std::vector<float> out(static_cast<size_t>(V));
  backend_.copy_to_host(out.data(), logits.get(), out.size() * 4);
  return out;
}

LossSum LlamaModel::forward_loss(const Batch& batch) {
  DeviceBatch db = upload(batch);
  Buffer hidden = forward_hidden(db);
  Buffer loss = backend_.alloc(size_t(db.N) * 4, "head activations");  // (N,)
  lm_head(hidden.f32(), dense(head_param()).f32(), db.N, [&](int r0, int rows, float* logits) {
    backend_.cross_entropy_forward(loss.f32() + r0, nullptr, logits, db.targets.i32() + r0, rows, config_.vocab_size);
  });
  return sum_losses(backend_, loss, batch);
}

std::vector<float> LlamaModel::forward_logits(const Batch& batch) {
  DeviceBatch db = upload(batch);
  Buffer hidden = forward_hidden(db);
  const size_t V = size_t(config_.vocab_size);
  std::vector<float> out(size_t(db.N) * V);
  lm_head(hidden.f32(), dense(head_param()).f32(), db.N, [&](int r0, int rows, float* logits) {
    backend_.copy_to_host(out.data() + size_t(r0) * V, logits, size_t(rows) * V * 4);
  });
  return out;
}

}  // namespace qft
