#pragma once
// A backend that runs nothing and allocates nothing, but accounts for every allocation exactly as a real one
// does. Running the real model and training code on it yields the memory plan: the planner cannot drift from
// the code that allocates, because it is that code.
#include "ops/backend.h"

namespace qft {

class PlanningBackend final : public Backend {
 public:
  explicit PlanningBackend(DType activations = DType::F32) : Backend(activations) {}
  std::string name() const override { return "plan"; }
  size_t available_bytes() const override { return SIZE_MAX; }
  void copy_to_device(void*, const void*, size_t) override {}
  void copy_to_host(void*, const void*, size_t) override {}
  void copy(void*, const void*, size_t) override {}
  void zero(void*, size_t) override {}
  void convert(Act, CAct, int64_t) override {}

  void matmul_forward(Act, CAct, CAct, int, int, int) override {}
  void embedding_forward(Act, const int32_t*, CAct, int, int) override {}
  void rmsnorm_forward(Act, float*, CAct, const float*, int, int, float) override {}
  void rope(Act, const int32_t*, const float*, int, int, int, bool) override {}
  void attention_forward(const AttentionParams&) override {}
  void attention_decode(const DecodeAttentionParams&) override {}
  void swiglu_forward(Act, CAct, CAct, int64_t) override {}
  void residual_add(Act, CAct, int64_t) override {}
  void cross_entropy_forward(float*, float*, CAct, const int32_t*, int, int) override {}
  void matmul_backward_input(Act, CAct, CAct, int, int, int, bool) override {}
  void matmul_backward_weight(float*, CAct, CAct, int, int, int, bool) override {}
  void rmsnorm_backward(Act, float*, CAct, CAct, const float*, const float*, int, int, bool) override {}
  void attention_backward(const AttentionBackwardParams&) override {}
  void swiglu_backward(Act, Act, CAct, CAct, CAct, int64_t) override {}
  void cross_entropy_backward(Act, const float*, const int32_t*, int, int, int, int, float) override {}
  void embedding_backward(float*, CAct, const int32_t*, int, int, int, int) override {}
  void lion_step(float*, float*, const float*, int64_t, const LionParams&) override {}
  double sum_squares(const float*, int64_t) override { return 1.0; }
  void dequantize_hybrid(Act, const HybridView&) override {}
  void dequantize_blocks(float*, const BlockView&) override {}
  void quantize_blocks(const BlockView&, const float*, const RoundingKey&, int64_t) override {}
  void accumulate_blocks(const BlockView&, const float*, const RoundingKey&, int64_t) override {}
  void lion_step_rows(const LionRowStep&, int64_t) override {}

 protected:
  // Distinct, never dereferenced addresses: nothing here reads or writes backend memory.
  void* raw_alloc(size_t bytes) override {
    next_ += (bytes + 63) / 64 * 64 + 64;
    return reinterpret_cast<void*>(next_);
  }
  void raw_free(void*) override {}

 private:
  uintptr_t next_ = 4096;
};

}  // namespace qft
