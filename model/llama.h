#pragma once
// LlamaForCausalLM composed from backend ops: the forward pass, and a backward pass that recomputes one layer
// at a time from a stack of layer inputs and hands each parameter's gradient to a GradSink as soon as it is
// final. Activations and the compute copies of weights are in the backend's activation dtype (bf16 on the GPU).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "dist/row_shards.h"
#include "model/batch.h"
#include "model/llama_config.h"
#include "model/weight_storage.h"
#include "ops/backend.h"
#include "quant/quantized.h"

namespace qft {

class Communicator;
class HfModel;

// One tensor of the model, (rows, cols) row-major; 1-D tensors have rows = 1. Stored in fp32, or when its role is
// quantizable and the weights are INT8, as a hybrid INT8 matrix with sparse fp32 outliers, or (a LoRA adapter in
// the GSE format) as a GSE matrix; only one of them. Under LoRA every tensor but the adapters is frozen: the
// backward pass delivers no gradient for it and the optimizer keeps no state.
struct Param {
  std::string name;
  Shape shape;  // as HF stores it
  ParamRole role = ParamRole::Matrix;
  int64_t rows = 0, cols = 0;
  Buffer fp32;
  HybridMatrix int8;
  GseMatrix gse;
  bool frozen = false;
  bool quantized() const { return int8.rows > 0; }
  bool is_gse() const { return gse.rows > 0; }
  int64_t numel() const { return rows * cols; }
  size_t bytes() const { return quantized() ? int8.bytes() : (is_gse() ? gse.bytes() : fp32.bytes()); }
};

// A weight for compute: the stored fp32 buffer itself, or a dequantized or converted copy that lives as long
// as this.
struct DenseWeight {
  Buffer copy;
  CAct ptr;
  CAct get() const { return ptr; }
};

// Receives gradients during backward. A call delivers rows [row0, row0 + rows) of a parameter's gradient
// (rows x cols floats in backend memory, valid only during the call). Once delivered, the backward pass no
// longer reads those rows of the parameter, so the sink may update them in place. Every row of every
// parameter is delivered exactly once per backward pass.
class GradSink {
 public:
  virtual ~GradSink() = default;
  virtual void consume(int param, int64_t row0, int64_t rows, const float* grad) = 0;
};

// Keys and values of every layer for the positions seen so far, for generation.
struct KvCache {
  int max_t = 0;              // capacity in positions
  int past = 0;               // positions filled
  std::vector<Buffer> k, v;   // per layer (max_t, KVH, D), after RoPE
};

class LlamaModel {
 public:
  // Loads every tensor of the HF checkpoint into backend memory: fp32, or hybrid INT8 matrices. With
  // `shard_over` (dist.shard_weights), each INT8 matrix keeps only this rank's rows (dist/row_shards.h): using a
  // matrix gathers the other ranks' rows first, and an update writes this rank's alone.
  LlamaModel(const HfModel& hf, Backend& backend, const WeightStorage& storage = {}, Communicator* shard_over = nullptr);
  // Allocates the parameters without loading them (the memory planner's dry run).
  LlamaModel(const LlamaConfig& config, Backend& backend, const WeightStorage& storage,
             Communicator* shard_over = nullptr);

  const LlamaConfig& config() const { return config_; }
  Backend& backend() const { return backend_; }
  const WeightStorage& storage() const { return storage_; }
  const std::vector<Param>& params() const { return params_; }
  // Parameter indices by name: embedding, final norm, head (the embedding when tied) and each layer's tensors.
  int embedding_param() const { return embedding_; }
  int final_norm_param() const { return final_norm_; }
  int head_param() const { return head_; }
  const LayerParams& layer_params(int layer) const { return layers_[size_t(layer)]; }
  Param& param(int i) { return params_[size_t(i)]; }
  // The rows of a parameter this rank stores: all of them, unless its INT8 weights are sharded.
  RowRange held_rows(int param) const;
  bool weights_sharded() const { return shard_over_ != nullptr; }
  // A sharded INT8 matrix whole, every rank's rows gathered (collective: every rank calls it in the same order).
  HybridMatrix gathered(int param) const;
  // The weight in the activation dtype (or `as`): INT8 weights dequantized, fp32 ones converted when needed.
  DenseWeight dense(int param) const { return dense(param, backend_.act_dtype()); }
  DenseWeight dense(int param, DType as) const;
  // Whether dense() makes a copy: INT8 or GSE storage, or fp32 wanted in another type.
  static bool dense_copies(const Param& p, DType as) { return p.quantized() || p.is_gse() || as != DType::F32; }
  // `slot` = dense(param), the slot's previous copy freed first: one matrix of workspace at a time.
  CAct dense_into(DenseWeight& slot, int param) const;

  // Generation and scoring read every matrix once per token. While the hold this returns lives, nothing updates the
  // weights and dense() serves every matrix from one dequantized copy made here. The hold is empty (each use
  // dequantizes again, as in training) where that copy would take more than half the memory available, with
  // sharded weights (the ranks could decide differently), or inside another hold.
  class DenseHold {
   public:
    explicit DenseHold(LlamaModel* model = nullptr) : model_(model) {}
    DenseHold(DenseHold&& o) noexcept : model_(std::exchange(o.model_, nullptr)) {}
    DenseHold& operator=(DenseHold&&) = delete;
    ~DenseHold() {
      if (model_) model_->dense_held_.clear();
    }
    bool holds() const { return model_ != nullptr; }

   private:
    LlamaModel* model_;
  };
  [[nodiscard]] DenseHold hold_dense_weights();
  // A parameter's values as fp32 on the host (dequantized for INT8), and the reverse: stores host values,
  // quantizing them when the parameter is INT8.
  std::vector<float> read_weight(int param) const;
  void load_weight(int param, const float* host);
  // read_weight with the adapter of a base matrix merged in: W + alpha/r B A (fp32 on the host).
  std::vector<float> read_merged_weight(int param) const;
  // Draws every weight from a seeded N(0, stddev), norm weights 1, biases 0 (transformers' LLaMA initialisation
  // with its default initializer_range 0.02): benchmarks and tests then need no weight files. The same seed gives
  // the same weights on every machine.
  void init_random(uint64_t seed, float stddev = 0.02f);
  // Draws every LoRA adapter as PEFT does: A from U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5)),
  // seeded by the settings' seed, and B = 0, so that the adapted model starts as the base.
  void init_adapters();
  bool has_adapters() const { return storage_.lora.enabled(); }
  // Picks each INT8 matrix's outliers again from its current values (QFT re-selects about once per epoch).
  void reselect_outliers();
  size_t weight_bytes() const;

  KvCache new_kv_cache(int max_t);
  // Runs tokens at positions [cache.past, cache.past + n) and appends their keys and values to the cache;
  // returns the logits (V,) of the last token, on the host. INT8 weights are dequantized per use, as in training.
  std::vector<float> decode(const std::vector<int32_t>& tokens, KvCache& cache);

  LossSum forward_loss(const Batch& batch);
  std::vector<float> forward_logits(const Batch& batch);  // (B*T, V) on the host

  // Forward, then backward with the loss gradient scaled by loss_scale (1 / target tokens of the whole step).
  // Gradients go to `sink` parameter by parameter; no full-model gradient ever exists. The batch's summed loss
  // is added to *loss_sum (one double in backend memory, or null): nothing here waits on the host.
  void backward(const Batch& batch, float loss_scale, GradSink& sink, double* loss_sum);

  // Token rows per LM-head chunk: full-vocabulary logits never exist for the whole batch at once.
  int logits_chunk_tokens = 256;
  // Vocabulary rows per chunk of the LM-head / embedding gradient.
  int vocab_chunk_rows = 4096;
  // Most bytes of a layer matrix's fp32 gradient at a time: it reaches the sink in chunks of rows.
  size_t weight_grad_chunk_bytes = size_t(32) << 20;
  // Long sequences: most bytes of one (tokens, intermediate) MLP activation at a time, where taking the MLP in
  // pieces holds less in all than taking it whole (model/llama_mlp.cpp): the forward by tokens, the backward by
  // intermediate columns. Shorter sequences run it whole.
  size_t mlp_chunk_bytes = size_t(64) << 20;
  // Backward keeps a layer's matrices as its recompute dequantized them until their last GEMM: each INT8 matrix
  // is dequantized twice per step instead of three times, for one layer's matrices of memory (the planner's
  // choice, trainer/plan.cpp). Either way the GEMMs read the same values.
  bool keep_layer_weights = true;
  // How backward keeps each layer's input for the recompute (train.stack_dtype). The forward runs on exact values
  // either way; only the recompute, and so the gradients, see the stored ones.
  StackStorage stack_storage = StackStorage::Activations;
  // Keeps the stack in host memory (train.stack_offload): the device holds one layer's entry at a time.
  bool stack_offload = false;
  // Keys the stochastic rounding of GSE adapter gradients (model/llama_lora.cpp): accumulation_step(step, micro),
  // set by the training step, so that a backward pass repeated on a micro-batch (clipping) rounds the same.
  uint64_t gradient_rounding_step = 0;

 private:
  struct DeviceBatch;
  struct LayerActs;
  struct LayerWeights;
  // The batch in backend memory; with token_groups, also its positions grouped by token (the embedding gradient).
  DeviceBatch upload(const Batch& batch, bool token_groups = false);
  // x_out = layer(x_in), keeping nothing. Without x_out (the backward's recompute), the forward stops before the
  // down projection (before gate and up where the backward takes the MLP in pieces) and returns the activations
  // layer_backward reads. With a cache (generation, B = 1)
  // the batch's keys and values are appended to it and attention runs against everything cached. With `keep`,
  // the dequantized matrices stay there (the backward pass reads them); else each is dropped after its GEMM.
  LayerActs layer_forward(int layer, CAct x_in, Act x_out, const DeviceBatch& db, KvCache* cache = nullptr,
                          LayerWeights* keep = nullptr);
  // Backward through one layer: dx (N, C) holds d x_out on entry and d x_in on exit.
  void layer_backward(int layer, CAct x_in, Act dx, const DeviceBatch& db, GradSink& sink);
  // (N, C) final-normed hidden states; with a cache, as layer_forward, for the batch's positions after it.
  Buffer forward_hidden(const DeviceBatch& db, KvCache* cache = nullptr);
  // Runs the LM head chunk by chunk; fn(first_row, rows, logits) sees each (rows, V) chunk in backend memory.
  void lm_head(CAct hidden, CAct weight, int N, const std::function<void(int, int, Act)>& fn);
  // Gradient of the LM head weight (plus, when tied, the embedding), delivered by vocabulary chunks.
  void head_weight_backward(CAct weight, CAct hidden, const float* lse, CAct dx0, const DeviceBatch& db,
                            float loss_scale, GradSink& sink);
  void embedding_weight_backward(CAct dx0, const DeviceBatch& db, GradSink& sink);
  // rmsnorm(x) (N, C) with a norm parameter's weight, again: the backward recomputes it rather than keep it.
  Buffer normalized(CAct x, int norm_param, int N);
  // The A and B parameters of a layer's target adapter; a = -1 where it has none.
  std::pair<int, int> adapter_of(int layer, LoraTarget t) const {
    const LayerParams& P = layers_[size_t(layer)];
    return {P.lora_a[size_t(t)], P.lora_b[size_t(t)]};
  }
  // out (N, O) += s (inp A^T) B^T: the adapter of a layer's target, when it has one (model/llama_lora.cpp).
  void adapter_forward(int layer, LoraTarget t, Act out, CAct inp, int N, int I, int O);
  // The adapter's backward: dinp (N, I) += s (dout B) A, and the gradients of A and B to the sink.
  void adapter_backward(int layer, LoraTarget t, CAct dout, CAct inp, Act dinp, int N, int I, int O, GradSink& sink);
  // A norm weight's gradient buffer (C,), or none when the norm is frozen (its backward then skips dw).
  Buffer norm_gradient(int norm_param);
  // dx (N, C) += d rmsnorm(x) / dx given dxn, the gradient of its output; the norm weight's gradient to the sink.
  void norm_backward(int norm_param, Act dx, CAct dxn, CAct x, const float* rstd, int N, GradSink& sink);
  // dW (O, I) = dout (N, O)^T @ inp (N, I) of a layer matrix's rows [row0, row0 + O) (none when it is frozen),
  // delivered in chunks of weight_grad_chunk_bytes.
  void weight_gradient(int param, CAct dout, CAct inp, int N, int I, int O, GradSink& sink, int row0 = 0);
  // Rows of a weight gradient's chunk (of `rows` of `cols` floats): weight_grad_chunk_bytes at most, one row at least.
  int64_t gradient_chunk_rows(int64_t cols, int64_t rows) const {
    return std::clamp<int64_t>(int64_t(weight_grad_chunk_bytes / (size_t(cols) * 4)), 1, rows);
  }
  // rows (rows, cols) of a parameter's whole fp32 gradient in backend memory, to the sink in chunks of
  // weight_grad_chunk_bytes.
  void deliver_rows(int param, const float* grad, int64_t rows, int64_t cols, GradSink& sink);

  // The MLP in pieces (model/llama_mlp.cpp). Tokens the forward takes at a time, and intermediate columns the
  // backward takes at a time: N and I (whole) unless pieces of mlp_chunk_bytes hold less in all.
  int mlp_forward_rows(int layer, int N) const;
  int mlp_backward_columns(int layer, int N) const;
  // x_out = x_mid + down(silu(gate(xn2)) * up(xn2)), by `rows` tokens at a time; proj (N, C) is scratch.
  void mlp_forward_by_rows(int layer, CAct xn2, CAct x_mid, Act x_out, Act proj, int N, int rows);
  // The MLP's backward by `cols` intermediate columns at a time, from a's x_mid, xn2 and rstd2: dx (N, C) holds
  // d x_out on entry and d x_mid on exit. Gate and up gradients reach the sink by rows as each piece ends; the
  // down projection's is whole only after the last piece.
  void mlp_backward_by_columns(int layer, const LayerActs& a, Act dx, int N, int cols, GradSink& sink);
  const float* norm_weight(int param) const { return params_[size_t(param)].fp32.f32(); }  // always fp32

  LlamaConfig config_;
  Backend& backend_;
  WeightStorage storage_;
  Communicator* shard_over_ = nullptr;
  RowShards weight_shards_;
  Buffer inv_freq_;
  std::vector<Param> params_;  // in llama_tensor_specs order
  std::vector<DenseWeight> dense_held_;  // by parameter, while a DenseHold lives (hold_dense_weights)
  int embedding_ = -1, final_norm_ = -1, head_ = -1;
  std::vector<LayerParams> layers_;
};

}  // namespace qft
