#pragma once
// The reference backend: OpenBLAS GEMMs and OpenMP loops over the shared functors of ops/kernels.h.
#include "ops/backend.h"

namespace qft {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;

  void matmul_forward(float* out, const float* inp, const float* weight, int N, int I, int O) override;
  void embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C) override;
  void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps) override;
  void rope_forward(float* x, const int32_t* pos, const float* inv_freq, int N, int H, int D) override;
  void attention_forward(const AttentionParams& p) override;
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override;
  void residual_add(float* x, const float* y, int64_t n) override;
  void cross_entropy_forward(float* loss, const float* logits, const int32_t* targets, int N, int V) override;

 protected:
  void* raw_alloc(size_t bytes) override;
  void raw_free(void* p) override;
};

}  // namespace qft
