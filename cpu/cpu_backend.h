#pragma once
// The reference backend: OpenBLAS GEMMs and OpenMP loops over the shared functors (ops/functor_backend.h).
// Activations are fp32 by default, the reference; with BF16 it stores them as the GPU does, which lets the
// CPU check the GPU's bf16 path.
#include "cpu/parallel.h"
#include "ops/functor_backend.h"

namespace qft {

class CpuBackend final : public FunctorBackend<CpuBackend> {
 public:
  explicit CpuBackend(DType activations = DType::F32);
  std::string name() const override { return "cpu"; }
  size_t available_bytes() const override;  // MemAvailable from /proc/meminfo
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;

  // ---- what FunctorBackend runs ops with ----
  template <class F>
  void launch_elementwise(const F& f, int64_t n) { parallel_for(n, f); }
  template <class F>
  void launch_rows(const F& f, int64_t rows) { parallel_rows(rows, f); }
  void run_gemm(const GemmArgs& g);
  void after_op(const char*) {}

 protected:
  void* raw_alloc(size_t bytes) override;
  void raw_free(void* p) override;
};

}  // namespace qft
