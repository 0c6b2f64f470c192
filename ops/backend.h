#pragma once
// The backend seam: memory plus the ops the model composes. The model code calls only this interface and
// never includes CUDA headers. All ops are fp32, row-major; weights are (out_features, in_features) as HF
// stores them. Pointers are backend memory.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "quant/int8.h"

namespace qft {

struct MemoryStats {
  size_t current_bytes = 0;
  size_t peak_bytes = 0;
  size_t allocations = 0;
  std::map<std::string, size_t> current_by_tag;
  std::map<std::string, size_t> at_peak_by_tag;  // what was live, by tag, when the peak was reached
};

class Backend;

// Owning handle to backend memory; freeing goes through the backend so that accounting stays exact.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend* owner, void* ptr, size_t bytes, const char* tag) : owner_(owner), ptr_(ptr), bytes_(bytes), tag_(tag) {}
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  void reset();
  size_t bytes() const { return bytes_; }
  void* get() const { return ptr_; }
  float* f32() const { return static_cast<float*>(ptr_); }
  int32_t* i32() const { return static_cast<int32_t*>(ptr_); }

 private:
  Backend* owner_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  const char* tag_ = nullptr;
};

struct AttentionParams {
  float* out;                // (B, T, H, D)
  float* scratch;            // (B, H, T, T) probabilities, kept for the backward pass
  const float* q;            // (B, T, H, D)
  const float* k;            // (B, T, KVH, D)
  const float* v;            // (B, T, KVH, D)
  const int32_t* doc_start;  // (B, T) first visible key of each query, or null for plain causal
  int B, T, H, KVH, D;
};

struct AttentionBackwardParams {
  float* dq;            // (B, T, H, D)
  float* dk;            // (B, T, KVH, D)
  float* dv;            // (B, T, KVH, D)
  float* scratch;       // (T, T) workspace
  const float* dout;    // (B, T, H, D)
  const float* probs;   // (B, H, T, T) from attention_forward
  const float* q;
  const float* k;
  const float* v;
  int B, T, H, KVH, D;
};

// Attention of n new queries against a KV cache (generation); see DecodeAttention in ops/kernels.h.
struct DecodeAttentionParams {
  float* out;          // (n, H, D)
  float* scratch;      // (n * H, max_t)
  const float* q;      // (n, H, D)
  const float* k;      // (max_t, KVH, D) cache
  const float* v;      // (max_t, KVH, D) cache
  int n, past, max_t, H, KVH, D;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory ----
  // Tracked, by tag (a string literal naming what the memory is for); throws qft::Error on failure.
  Buffer alloc(size_t bytes, const char* tag = "scratch");
  const MemoryStats& memory() const { return stats_; }
  virtual size_t available_bytes() const = 0;  // what a new run may still allocate
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() {}
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // within backend memory
  virtual void zero(void* dst, size_t bytes) = 0;

  // ---- ops ----
  // out (N, O) = inp (N, I) @ weight (O, I)^T
  virtual void matmul_forward(float* out, const float* inp, const float* weight, int N, int I, int O) = 0;
  virtual void embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C) = 0;
  virtual void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps) = 0;
  // In place; backward applies the inverse rotation to a gradient.
  virtual void rope(float* x, const int32_t* pos, const float* inv_freq, int N, int H, int D, bool backward) = 0;
  virtual void attention_forward(const AttentionParams& p) = 0;
  virtual void attention_decode(const DecodeAttentionParams& p) = 0;
  virtual void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) = 0;
  virtual void residual_add(float* x, const float* y, int64_t n) = 0;
  // loss (N,) per row, ignored targets give 0; lse (N,) logsumexp, may be null
  virtual void cross_entropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int N, int V) = 0;

  // ---- backward ops ----
  // dinp (N, I) (+)= dout (N, O) @ weight (O, I)
  virtual void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int I, int O,
                                     bool accumulate) = 0;
  // dweight (O, I) (+)= dout (N, O)^T @ inp (N, I)
  virtual void matmul_backward_weight(float* dweight, const float* dout, const float* inp, int N, int I, int O,
                                      bool accumulate) = 0;
  // dx (+)= d rmsnorm / dx; dw = d rmsnorm / dw (dw may be null)
  virtual void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,
                                int N, int C, bool accumulate_dx) = 0;
  virtual void attention_backward(const AttentionBackwardParams& p) = 0;
  // dgate, dup may alias gate, up
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                               int64_t n) = 0;
  // In place over a (N, cols) tile of logits holding vocabulary columns [v0, v0 + cols):
  // logits <- scale * (softmax - onehot(target)), using lse from cross_entropy_forward.
  virtual void cross_entropy_backward(float* logits, const float* lse, const int32_t* targets, int N, int cols, int v0,
                                      int V, float scale) = 0;
  // dtable (rows, C) += scatter of dout (N, C) into the rows [v0, v0 + rows) that tokens name
  virtual void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int N, int C, int v0,
                                  int rows) = 0;

  // ---- optimizer and reductions ----
  virtual void lion_step(float* theta, float* m, const float* g, int64_t n, const LionParams& p) = 0;
  virtual double sum_squares(const float* x, int64_t n) = 0;

  // ---- INT8 state (quant/int8.h) ----
  virtual void dequantize_hybrid(float* out, const HybridView& w) = 0;
  virtual void dequantize_blocks(float* out, const BlockView& b) = 0;
  virtual void quantize_blocks(const BlockView& b, const float* x, const RoundingKey& key, int64_t row_base) = 0;
  virtual void accumulate_blocks(const BlockView& acc, const float* g, const RoundingKey& key, int64_t row_base) = 0;
  virtual void lion_step_rows(const LionRowStep& step, int64_t rows) = 0;

 protected:
  virtual void* raw_alloc(size_t bytes) = 0;  // nullptr when out of memory
  virtual void raw_free(void* p) = 0;

 private:
  friend class Buffer;
  void release(void* p, size_t bytes, const char* tag);
  MemoryStats stats_;
};

// "auto" picks CUDA when a GPU is usable and the CUDA backend is built, else the CPU. "cpu" and "cuda" are explicit.
// debug_sync (CUDA only) waits after every op so that a fault names the op.
std::unique_ptr<Backend> make_backend(const std::string& device, bool debug_sync = false);

}  // namespace qft
