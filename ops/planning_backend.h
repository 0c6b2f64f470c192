#pragma once
// A backend that runs nothing and allocates nothing, but accounts for every allocation exactly as a real one
// does. Running the real model and training code on it yields the memory plan: the planner cannot drift from
// the code that allocates, because it is that code. Its ops are the reference compositions with launchers that
// launch nothing, so the scratch an op allocates is counted too, and a new op needs nothing here.
#include <cstdint>

#include "ops/functor_backend.h"

namespace qft {

class PlanningBackend final : public FunctorBackend<PlanningBackend> {
 public:
  explicit PlanningBackend(DType activations = DType::F32) : FunctorBackend(activations) {}
  std::string name() const override { return "plan"; }
  size_t available_bytes() const override { return SIZE_MAX; }
  void copy_to_device(void*, const void*, size_t) override {}
  void offload(void*, const void*, size_t) override {}
  void reload(void*, const void*, size_t) override {}
  void copy(void*, const void*, size_t) override {}
  void zero(void*, size_t) override {}

  // ---- what FunctorBackend runs ops with: nothing ----
  template <class F>
  void launch_elementwise(const F&, int64_t) {}
  template <class F>
  void launch_rows(const F&, int64_t) {}
  void run_gemm(const GemmArgs&) {}
  void after_op(const char*) {}

 protected:
  // Distinct, never dereferenced addresses: nothing here reads or writes backend memory.
  void* raw_alloc(size_t bytes) override {
    next_ += (bytes + 63) / 64 * 64 + 64;
    return reinterpret_cast<void*>(next_);
  }
  void raw_free(void*) override {}
  void raw_copy_to_host(void*, const void*, size_t) override {}

 private:
  uintptr_t next_ = 4096;
};

}  // namespace qft
