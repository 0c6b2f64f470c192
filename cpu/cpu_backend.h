#pragma once
// The reference backend: OpenBLAS GEMMs and OpenMP loops over the shared functors of ops/kernels.h.
#include "ops/backend.h"

namespace qft {

class CpuBackend final : public Backend {
 public:
  CpuBackend();
  std::string name() const override { return "cpu"; }
  size_t available_bytes() const override;  // MemAvailable from /proc/meminfo
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;

  void matmul_forward(float* out, const float* inp, const float* weight, int N, int I, int O) override;
  void embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C) override;
  void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps) override;
  void rope(float* x, const int32_t* pos, const float* inv_freq, int N, int H, int D, bool backward) override;
  void attention_forward(const AttentionParams& p) override;
  void attention_decode(const DecodeAttentionParams& p) override;
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override;
  void residual_add(float* x, const float* y, int64_t n) override;
  void cross_entropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int N, int V) override;

  void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int I, int O,
                             bool accumulate) override;
  void matmul_backward_weight(float* dweight, const float* dout, const float* inp, int N, int I, int O,
                              bool accumulate) override;
  void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd, int N,
                        int C, bool accumulate_dx) override;
  void attention_backward(const AttentionBackwardParams& p) override;
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                       int64_t n) override;
  void cross_entropy_backward(float* logits, const float* lse, const int32_t* targets, int N, int cols, int v0, int V,
                              float scale) override;
  void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int N, int C, int v0,
                          int rows) override;
  void lion_step(float* theta, float* m, const float* g, int64_t n, const LionParams& p) override;
  double sum_squares(const float* x, int64_t n) override;
  void dequantize_hybrid(float* out, const HybridView& w) override;
  void dequantize_blocks(float* out, const BlockView& b) override;
  void quantize_blocks(const BlockView& b, const float* x, const RoundingKey& key, int64_t row_base) override;
  void accumulate_blocks(const BlockView& acc, const float* g, const RoundingKey& key, int64_t row_base) override;
  void lion_step_rows(const LionRowStep& step, int64_t rows) override;

 protected:
  void* raw_alloc(size_t bytes) override;
  void raw_free(void* p) override;
};

}  // namespace qft
