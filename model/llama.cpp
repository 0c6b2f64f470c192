#include "model/llama.h"

#include <algorithm>

#include "core/error.h"
#include "model/hf_model.h"
#include "ops/kernels.h"

namespace qft {

namespace {

Buffer upload_f32(Backend& be, const std::vector<float>& host) {
  Buffer b = be.alloc(host.size() * sizeof(float));
  be.copy_to_device(b.get(), host.data(), host.size() * sizeof(float));
  return b;
}

Buffer upload_i32(Backend& be, const std::vector<int32_t>& host) {
  Buffer b = be.alloc(host.size() * sizeof(int32_t));
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

struct LlamaModel::DeviceBatch {
  int B, T, N;
  Buffer tokens, targets, positions, doc_start;
};

LlamaModel::LlamaModel(const HfModel& hf, Backend& backend) : config_(hf.config()), backend_(backend) {
  embed_ = upload_f32(backend_, hf.read_f32("model.embed_tokens.weight"));
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights w;
    w.attn_norm = upload_f32(backend_, hf.read_f32(p + "input_layernorm.weight"));
    w.wq = upload_f32(backend_, hf.read_f32(p + "self_attn.q_proj.weight"));
    w.wk = upload_f32(backend_, hf.read_f32(p + "self_attn.k_proj.weight"));
    w.wv = upload_f32(backend_, hf.read_f32(p + "self_attn.v_proj.weight"));
    w.wo = upload_f32(backend_, hf.read_f32(p + "self_attn.o_proj.weight"));
    w.mlp_norm = upload_f32(backend_, hf.read_f32(p + "post_attention_layernorm.weight"));
    w.w_gate = upload_f32(backend_, hf.read_f32(p + "mlp.gate_proj.weight"));
    w.w_up = upload_f32(backend_, hf.read_f32(p + "mlp.up_proj.weight"));
    w.w_down = upload_f32(backend_, hf.read_f32(p + "mlp.down_proj.weight"));
    layers_.push_back(std::move(w));
  }
  final_norm_ = upload_f32(backend_, hf.read_f32("model.norm.weight"));
  if (!config_.tie_word_embeddings) lm_head_ = upload_f32(backend_, hf.read_f32("lm_head.weight"));
  inv_freq_ = upload_f32(backend_, config_.rope_inv_freq());
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

void LlamaModel::layer_forward(const LayerWeights& w, float* x, const DeviceBatch& db) {
  Backend& be = backend_;
  const LlamaConfig& c = config_;
  const int N = db.N, C = c.hidden_size, I = c.intermediate_size, H = c.num_attention_heads,
            KVH = c.num_key_value_heads, D = c.head_dim;
  Buffer xn = be.alloc(size_t(N) * C * 4);               // (N, C)
  Buffer q = be.alloc(size_t(N) * c.q_dim() * 4);        // (N, H, D)
  Buffer k = be.alloc(size_t(N) * c.kv_dim() * 4);       // (N, KVH, D)
  Buffer v = be.alloc(size_t(N) * c.kv_dim() * 4);       // (N, KVH, D)
  Buffer att = be.alloc(size_t(db.B) * H * db.T * db.T * 4);  // (B, H, T, T)
  Buffer att_out = be.alloc(size_t(N) * c.q_dim() * 4);  // (N, H, D)
  Buffer proj = be.alloc(size_t(N) * C * 4);             // (N, C)

  be.rmsnorm_forward(xn.f32(), nullptr, x, w.attn_norm.f32(), N, C, float(c.rms_norm_eps));
  be.matmul_forward(q.f32(), xn.f32(), w.wq.f32(), N, C, c.q_dim());
  be.matmul_forward(k.f32(), xn.f32(), w.wk.f32(), N, C, c.kv_dim());
  be.matmul_forward(v.f32(), xn.f32(), w.wv.f32(), N, C, c.kv_dim());
  be.rope_forward(q.f32(), db.positions.i32(), inv_freq_.f32(), N, H, D);
  be.rope_forward(k.f32(), db.positions.i32(), inv_freq_.f32(), N, KVH, D);
  be.attention_forward({att_out.f32(), att.f32(), q.f32(), k.f32(), v.f32(), db.doc_start.i32(), db.B, db.T, H, KVH, D});
  be.matmul_forward(proj.f32(), att_out.f32(), w.wo.f32(), N, c.q_dim(), C);
  be.residual_add(x, proj.f32(), int64_t(N) * C);

  Buffer gate = be.alloc(size_t(N) * I * 4);  // (N, I)
  Buffer up = be.alloc(size_t(N) * I * 4);    // (N, I)
  be.rmsnorm_forward(xn.f32(), nullptr, x, w.mlp_norm.f32(), N, C, float(c.rms_norm_eps));
  be.matmul_forward(gate.f32(), xn.f32(), w.w_gate.f32(), N, C, I);
  be.matmul_forward(up.f32(), xn.f32(), w.w_up.f32(), N, C, I);
  be.swiglu_forward(gate.f32(), gate.f32(), up.f32(), int64_t(N) * I);
  be.matmul_forward(proj.f32(), gate.f32(), w.w_down.f32(), N, I, C);
  be.residual_add(x, proj.f32(), int64_t(N) * C);
}

Buffer LlamaModel::forward_hidden(const DeviceBatch& db) {
  const int N = db.N, C = config_.hidden_size;
  Buffer x = backend_.alloc(size_t(N) * C * 4);  // (N, C) residual stream
  backend_.embedding_forward(x.f32(), db.tokens.i32(), embed_.f32(), N, C);
  for (const auto& w : layers_) layer_forward(w, x.f32(), db);
  Buffer out = backend_.alloc(size_t(N) * C * 4);
  backend_.rmsnorm_forward(out.f32(), nullptr, x.f32(), final_norm_.f32(), N, C, float(config_.rms_norm_eps));
  return out;
}

void LlamaModel::lm_head(const float* hidden, int N, const std::function<void(int, int, const float*)>& fn) {
  const int C = config_.hidden_size, V = config_.vocab_size;
  const int chunk = std::max(1, std::min(N, logits_chunk_tokens));
  Buffer logits = backend_.alloc(size_t(chunk) * V * 4);  // (chunk, V)
  for (int r0 = 0; r0 < N; r0 += chunk) {
    const int rows = std::min(chunk, N - r0);
    backend_.matmul_forward(logits.f32(), hidden + size_t(r0) * C, lm_head_weight(), rows, C, V);
    fn(r0, rows, logits.f32());
  }
}

LossSum LlamaModel::forward_loss(const Batch& batch) {
  DeviceBatch db = upload(batch);
  Buffer hidden = forward_hidden(db);
  Buffer loss = backend_.alloc(size_t(db.N) * 4);  // (N,)
  lm_head(hidden.f32(), db.N, [&](int r0, int rows, const float* logits) {
    backend_.cross_entropy_forward(loss.f32() + r0, logits, db.targets.i32() + r0, rows, config_.vocab_size);
  });
  std::vector<float> host(db.N);
  backend_.copy_to_host(host.data(), loss.get(), host.size() * 4);
  LossSum out;
  for (int i = 0; i < db.N; ++i) {
    if (batch.targets[i] == kIgnoreIndex) continue;
    out.loss_sum += host[i];
    out.tokens += 1;
  }
  return out;
}

std::vector<float> LlamaModel::forward_logits(const Batch& batch) {
  DeviceBatch db = upload(batch);
  Buffer hidden = forward_hidden(db);
  const size_t V = size_t(config_.vocab_size);
  std::vector<float> out(size_t(db.N) * V);
  lm_head(hidden.f32(), db.N, [&](int r0, int rows, const float* logits) {
    backend_.copy_to_host(out.data() + size_t(r0) * V, logits, size_t(rows) * V * 4);
  });
  return out;
}

}  // namespace qft
