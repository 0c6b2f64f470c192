#pragma once
// The backend seam: memory plus the ops the model composes, in two tiers. Tier one: every op has a reference
// composed from the shared QFT_HD functors (ops/functor_backend.h), which the CPU runs. Tier two: a backend may
// replace any op with its own kernel or a library call by overriding it; replaces(op) says which it replaced,
// and test/test_backend_ops.cpp checks every replacement against the reference. The model code calls only this
// interface and never includes CUDA headers. Row-major; weights are (out_features, in_features) as HF stores
// them. Pointers are backend memory. Activations, activation gradients and dequantized weights are Act pointers,
// stored in the backend's activation dtype (fp32 on the CPU reference, bf16 on the GPU); every op computes in
// fp32. Losses, norm statistics, norm weights and weight gradients stay fp32.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "ops/adamw.h"
#include "ops/gse.h"
#include "ops/int8.h"
#include "ops/lion.h"
#include "ops/stack_quant.h"
#include "ops/op_profile.h"

namespace qft {

// Bytes of one element of an activation dtype (F32 or BF16).
inline size_t act_size(DType t) { return t == DType::BF16 ? 2 : 4; }

// A pointer into backend memory with its storage type. Plain float* converts implicitly (fp32).
struct Act {
  void* ptr = nullptr;
  DType dtype = DType::F32;
  Act() = default;
  Act(void* p, DType t) : ptr(p), dtype(t) {}
  Act(std::nullptr_t) {}
  Act(float* p) : ptr(p) {}
  Act(bf16* p) : ptr(p), dtype(DType::BF16) {}
  Act operator+(int64_t elems) const { return {static_cast<uint8_t*>(ptr) + elems * int64_t(act_size(dtype)), dtype}; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr); }
};

// The same, read-only; an Act converts to it.
struct CAct {
  const void* ptr = nullptr;
  DType dtype = DType::F32;
  CAct() = default;
  CAct(const void* p, DType t) : ptr(p), dtype(t) {}
  CAct(std::nullptr_t) {}
  CAct(const float* p) : ptr(p) {}
  CAct(const bf16* p) : ptr(p), dtype(DType::BF16) {}
  CAct(Act a) : ptr(a.ptr), dtype(a.dtype) {}
  CAct operator+(int64_t elems) const {
    return {static_cast<const uint8_t*>(ptr) + elems * int64_t(act_size(dtype)), dtype};
  }
  template <class T>
  const T* as() const { return static_cast<const T*>(ptr); }
};

// Every op of the seam, by the name of its Backend method: X(name) for each.
#define QFT_BACKEND_OPS(X)                                                                                    \
  X(convert) X(matmul_forward) X(embedding_forward) X(rmsnorm_forward) X(rope) X(attention_forward)           \
  X(attention_decode) X(swiglu_forward) X(residual_add) X(cross_entropy_forward) X(matmul_backward_input)      \
  X(matmul_backward_weight) X(rmsnorm_backward) X(attention_backward) X(swiglu_backward)                      \
  X(cross_entropy_backward) X(embedding_backward) X(add_sum) X(add_sum_f64) X(row_sums) X(dequantize_hybrid)  \
  X(dequantize_blocks)                                                                                        \
  X(quantize_blocks) X(accumulate_blocks) X(lion_step_rows) X(quantize_groups) X(dequantize_groups)         \
  X(gse_quantize) X(gse_dequantize) X(gse_matmul) X(scale) X(transpose) X(adamw_step)

enum class Op {
#define QFT_OP_ENUMERATOR(name) name,
  QFT_BACKEND_OPS(QFT_OP_ENUMERATOR)
#undef QFT_OP_ENUMERATOR
};
constexpr int kOpCount = 0
#define QFT_OP_COUNT(name) +1
    QFT_BACKEND_OPS(QFT_OP_COUNT)
#undef QFT_OP_COUNT
    ;
const char* op_name(Op op);

enum class SumOf { Values, Squares };

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
  Buffer(Backend* owner, void* ptr, size_t bytes, const char* tag, DType dtype = DType::F32, bool host = false)
      : owner_(owner), ptr_(ptr), bytes_(bytes), tag_(tag), dtype_(dtype), host_(host) {}
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
  Act act() const { return {ptr_, dtype_}; }  // F32 unless allocated by Backend::alloc_act

 private:
  Backend* owner_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  const char* tag_ = nullptr;
  DType dtype_ = DType::F32;
  bool host_ = false;  // from Backend::alloc_host
};

// Packed documents as variable-length sequences, for backends that take them so (cuDNN): document i covers tokens
// [start[i], start[i + 1]) of the B * T, none longer than max_len, none crossing a row. count and max_len are known
// on the host; start is backend memory. count 0 without packing.
struct DocumentSpans {
  const int32_t* start = nullptr;  // (count + 1,)
  int count = 0, max_len = 0;
};

// Causal attention with GQA (query head h reads kv head h / (H / KVH)) and packed documents. Nothing (T, T)
// outlives an op: the forward keeps each query row's logsumexp, from which the backward recomputes what it needs.
struct AttentionParams {
  Act out;                   // (B, T, H, D)
  float* lse;                // logsumexp of each query row's scaled scores, for the backward pass: (B, H, T),
                             // or attention_stats_elems values in a layout of the backend's own
  CAct q;                    // (B, T, H, D), after RoPE
  CAct k;                    // (B, T, KVH, D), after RoPE
  CAct v;                    // (B, T, KVH, D)
  const int32_t* doc_start;  // (B, T) first visible key of each query, or null for plain causal
  DocumentSpans docs;        // the same documents as spans
  int B, T, H, KVH, D;
};

struct AttentionBackwardParams {
  Act dq;                    // (B, T, H, D)
  Act dk;                    // (B, T, KVH, D)
  Act dv;                    // (B, T, KVH, D)
  CAct dout;                 // (B, T, H, D)
  CAct out;                  // (B, T, H, D) from attention_forward
  const float* lse;          // from attention_forward, in its layout
  CAct q;
  CAct k;
  CAct v;
  const int32_t* doc_start;  // as the forward's
  DocumentSpans docs;
  int B, T, H, KVH, D;
};

// Attention of n new queries against a KV cache (generation); see DecodeAttention in ops/attention.h.
struct DecodeAttentionParams {
  Act out;        // (n, H, D)
  float* scores;  // (n * H, max_t) scratch
  CAct q;         // (n, H, D)
  CAct k;         // (max_t, KVH, D) cache
  CAct v;         // (max_t, KVH, D) cache
  int n, past, max_t, H, KVH, D;
};

// Backend memory of a batch's TokenGroups (model/batch.h), and the groups an op is to use.
struct TokenGroupsView {
  const int32_t* order;  // (N,) positions by token, then position
  const int32_t* start;  // (groups + 1,)
  const int32_t* token;  // (groups,) ascending
  int first, count;      // groups [first, first + count)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  DType act_dtype() const { return act_dtype_; }
  // Whether this backend runs `op` with its own implementation instead of the shared reference (tier two).
  virtual bool replaces(Op op) const = 0;

  // Most bytes of attention scores (and their gradients) the composed attention holds at a time: it walks
  // blocks of query rows and kv heads that fit (ops/attention_composed.h).
  size_t attention_scores_bytes = size_t(64) << 20;

  // Floats of the per-query statistics (AttentionParams::lse) an attention call of this shape needs.
  virtual int64_t attention_stats_elems(int B, int T, int H, const DocumentSpans&) const { return int64_t(B) * T * H; }
  // How this backend computes attention, for the run's log.
  virtual std::string attention_implementation() const { return "qft's own, blocks of scores from GEMMs"; }
  // Things the run's log should say that happened inside an op (a fallback, say); taking them clears them.
  std::vector<std::string> take_notes() { return std::exchange(notes_, {}); }

  // ---- memory ----
  // Tracked, by tag (a string literal naming what the memory is for); throws qft::Error on failure.
  Buffer alloc(size_t bytes, const char* tag = "scratch");
  Buffer alloc_act(int64_t elems, const char* tag);  // elems values of the activation dtype
  size_t act_bytes(int64_t elems) const { return size_t(elems) * act_size(act_dtype_); }
  const MemoryStats& memory() const { return stats_; }
  virtual size_t available_bytes() const = 0;  // what a new run may still allocate
  // Device memory in use outside tracked allocations (CUDA context, library workspaces); the planner adds it.
  virtual size_t reserved_bytes() const { return 0; }
  // Tracked memory the backend holds from its start (the CUDA backend's GEMM workspace); the planner adds it.
  virtual size_t workspace_bytes() const { return 0; }
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  // Host memory for what a step parks outside the device (train.stack_offload): page-locked on a GPU, so that
  // offload and reload are queued with the ops like any other, and nothing waits. Accounted apart from the
  // device memory (host_memory()); on the host backends it is ordinary memory.
  Buffer alloc_host(size_t bytes, const char* tag);
  const MemoryStats& host_memory() const { return host_stats_; }
  virtual bool host_memory_is_apart() const { return false; }  // true on a GPU: alloc_host spares device memory
  virtual void offload(void* host_dst, const void* src, size_t bytes) = 0;  // device -> alloc_host memory
  virtual void reload(void* dst, const void* host_src, size_t bytes) = 0;   // alloc_host memory -> device
  // Waits for the device's queued work: the hot path avoids it, and host_reads() counts every one (--debug-sync
  // logs the count per step).
  void copy_to_host(void* dst, const void* src, size_t bytes) {
    host_reads_ += 1;
    raw_copy_to_host(dst, src, bytes);
  }
  int64_t host_reads() const { return host_reads_; }
  virtual void synchronize() {}
  // The CUDA stream (cudaStream_t) this backend queues its work on, for a library that queues its own with it
  // (NCCL's collectives); null on the host backends.
  virtual void* device_stream() const { return nullptr; }
  // Times every op into `profile` (null: stop); on an asynchronous device each op then waits for its end.
  void set_profile(OpProfile* profile) { profile_ = profile; }
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // within backend memory
  virtual void zero(void* dst, size_t bytes) = 0;
  // Between storage types, in backend memory (rounding to nearest even into bf16).
  virtual void convert(Act dst, CAct src, int64_t n) = 0;
  // n values as fp32 on the host, whatever their storage type.
  std::vector<float> read_f32(CAct src, int64_t n);

  // ---- ops ----
  // out (N, O) = inp (N, I) @ weight (O, I)^T
  virtual void matmul_forward(Act out, CAct inp, CAct weight, int N, int I, int O) = 0;
  virtual void embedding_forward(Act out, const int32_t* tokens, CAct table, int N, int C) = 0;
  virtual void rmsnorm_forward(Act y, float* rstd, CAct x, const float* w, int N, int C, float eps) = 0;
  // In place; backward applies the inverse rotation to a gradient.
  virtual void rope(Act x, const int32_t* pos, const float* inv_freq, int N, int H, int D, bool backward) = 0;
  virtual void attention_forward(const AttentionParams& p) = 0;
  virtual void attention_decode(const DecodeAttentionParams& p) = 0;
  virtual void swiglu_forward(Act out, CAct gate, CAct up, int64_t n) = 0;  // out = silu(gate) * up; may alias gate
  virtual void residual_add(Act x, CAct y, int64_t n) = 0;
  // loss (N,) per row; a negative target (model/batch.h's kIgnoreIndex) gives 0; lse (N,) logsumexp, may be null
  virtual void cross_entropy_forward(float* loss, float* lse, CAct logits, const int32_t* targets, int N, int V) = 0;

  // ---- backward ops ----
  // dinp (N, I) (+)= dout (N, O) @ weight (O, I); weight's rows are ld_weight apart (>= I): I columns of a wider
  // matrix (the MLP's backward by intermediate columns).
  virtual void matmul_backward_input(Act dinp, CAct dout, CAct weight, int N, int I, int O, bool accumulate,
                                     int ld_weight) = 0;
  // dweight (O, I) (+)= dout (N, O)^T @ inp (N, I); the weight gradient is fp32 whatever the activations are. dout's
  // rows are ld_dout apart (>= O): O columns of a wider gradient give the weight's rows in chunks; dweight's are
  // ld_dweight apart (>= I): I columns of a wider gradient.
  virtual void matmul_backward_weight(float* dweight, CAct dout, CAct inp, int N, int I, int O, bool accumulate,
                                      int ld_dout, int ld_dweight) = 0;
  // dx (+)= d rmsnorm / dx; dw = d rmsnorm / dw (dw may be null)
  virtual void rmsnorm_backward(Act dx, float* dw, CAct dy, CAct x, const float* w, const float* rstd, int N, int C,
                                bool accumulate_dx) = 0;
  virtual void attention_backward(const AttentionBackwardParams& p) = 0;
  // dgate, dup may alias gate, up
  virtual void swiglu_backward(Act dgate, Act dup, CAct dout, CAct gate, CAct up, int64_t n) = 0;
  // In place over a (N, cols) tile of logits holding vocabulary columns [v0, v0 + cols):
  // logits <- scale * (softmax - onehot(target)), using lse from cross_entropy_forward.
  virtual void cross_entropy_backward(Act logits, const float* lse, const int32_t* targets, int N, int cols, int v0,
                                      int V, float scale) = 0;
  // dtable (rows, C) += scatter of dout (N, C) into its rows: row token - v0 for each group of the view, whose
  // positions add in order
  virtual void embedding_backward(float* dtable, CAct dout, const TokenGroupsView& groups, int C, int v0) = 0;

  // ---- reductions ----
  // *total (one double in backend memory) += the sum of x (n,) or of its squares; the result stays on the device.
  virtual void add_sum(double* total, const float* x, int64_t n, SumOf what) = 0;
  // The same over doubles (n,): partial sums of add_sum's own kind, say.
  virtual void add_sum_f64(double* total, const double* x, int64_t n) = 0;
  // out (rows,) = the sum of each row of x (rows, cols), or of its squares, in column order. A gradient norm is the
  // sum of its rows' sums, so that it does not depend on which rank or chunk held which rows (dist/).
  virtual void row_sums(double* out, const float* x, int64_t rows, int64_t cols, SumOf what) = 0;

  // ---- INT8 state (ops/int8.h) and the Lion step over rows of any mix of fp32 / INT8 state (ops/lion.h) ----
  virtual void dequantize_hybrid(Act out, const HybridView& w) = 0;
  virtual void dequantize_blocks(float* out, const BlockView& b) = 0;
  virtual void quantize_blocks(const BlockView& b, const float* x, const RoundingKey& key, int64_t row_base) = 0;
  virtual void accumulate_blocks(const BlockView& acc, const float* g, const RoundingKey& key, int64_t row_base) = 0;
  virtual void lion_step_rows(const LionRowStep& step, int64_t rows) = 0;

  // ---- the layer-input stack at low precision (ops/stack_quant.h) ----
  virtual void quantize_groups(const PackedGroups& out, CAct x) = 0;  // out.n values of x
  virtual void dequantize_groups(Act x, const PackedGroups& in) = 0;

  // ---- GSE integers (ops/gse.h): GSQ-Tuning's format, and its integer product ----
  // out = x (out.rows, out.cols) in groups along each row, rounded as key says (rows keyed from row_base).
  virtual void gse_quantize(const GseView& out, CAct x, const RoundingKey& key, int64_t row_base) = 0;
  virtual void gse_dequantize(Act out, const GseView& in) = 0;  // out (in.rows, in.cols)
  // c (a.rows, b.rows) (+)= a @ b^T: int32 sums per group, exactly scaled, added in group order in fp32.
  virtual void gse_matmul(float* c, const GseView& a, const GseView& b, bool accumulate) = 0;

  // ---- LoRA adapters (model/llama_lora.cpp) ----
  virtual void scale(Act x, float s, int64_t n) = 0;                       // x *= s
  virtual void transpose(Act out, CAct in, int64_t rows, int64_t cols) = 0;  // out (cols, rows) = in^T
  virtual void adamw_step(const AdamwStep& step, int64_t n) = 0;

 protected:
  explicit Backend(DType act_dtype = DType::F32);  // F32 or BF16
  OpProfile* profile_ = nullptr;
  int op_depth_ = 0;  // ops running, nested: only the outermost is profiled
  virtual void* raw_alloc(size_t bytes) = 0;  // nullptr when out of memory
  virtual void raw_free(void* p) = 0;
  virtual void* raw_alloc_host(size_t bytes) { return raw_alloc(bytes); }
  virtual void raw_free_host(void* p, size_t /*bytes*/) { raw_free(p); }
  virtual void raw_copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  void note(std::string text) { notes_.push_back(std::move(text)); }

 private:
  std::vector<std::string> notes_;
  friend class Buffer;
  void release(void* p, size_t bytes, const char* tag, bool host);
  Buffer alloc_typed(size_t bytes, const char* tag, DType dtype);
  MemoryStats stats_, host_stats_;
  int64_t host_reads_ = 0;
  DType act_dtype_;
};

}  // namespace qft
