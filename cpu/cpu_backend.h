#pragma once
// The host backends: OpenBLAS GEMMs and OpenMP loops over the shared functors (ops/functor_backend.h).
// Activations are fp32 by default, the reference; with BF16 they are stored as the GPU stores them, which lets
// the CPU check the GPU's bf16 path.
//   CpuReference  every op exactly as tier one composes it: what every replacement is tested against.
//   CpuBackend    the backend qft runs on the host: the reference, with some ops replaced by host-specific code.
#include <cstdlib>
#include <cstring>

#include "cpu/parallel.h"
#include "ops/functor_backend.h"

namespace qft {

namespace cpu {
void use_one_blas_thread();
size_t available_bytes();  // MemAvailable from /proc/meminfo
void* alloc_aligned(size_t bytes);
void run_gemm(const GemmArgs& g);
}  // namespace cpu

// Memory and launchers on the host, shared by both host backends.
template <class Self>
class HostBackend : public FunctorBackend<Self> {
 public:
  explicit HostBackend(DType activations) : FunctorBackend<Self>(activations) { cpu::use_one_blas_thread(); }
  std::string name() const override { return "cpu"; }
  size_t available_bytes() const override { return cpu::available_bytes(); }
  // Empty copies are allowed (an empty vector's data() may be null, and memcpy(nullptr, ...) is undefined).
  void copy_to_device(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes); }
  void offload(void* host_dst, const void* src, size_t bytes) override { copy(host_dst, src, bytes); }
  void reload(void* dst, const void* host_src, size_t bytes) override { copy(dst, host_src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void zero(void* dst, size_t bytes) override {
    if (bytes) std::memset(dst, 0, bytes);
  }

  // ---- what FunctorBackend runs ops with ----
  template <class F>
  void launch_elementwise(const F& f, int64_t n) { parallel_for(n, f); }
  template <class F>
  void launch_rows(const F& f, int64_t rows) { parallel_rows(rows, f); }
  void run_gemm(const GemmArgs& g) { cpu::run_gemm(g); }
  void after_op(const char*) {}

 protected:
  void* raw_alloc(size_t bytes) override { return cpu::alloc_aligned(bytes); }
  void raw_free(void* p) override { std::free(p); }
  void raw_copy_to_host(void* dst, const void* src, size_t bytes) override { this->copy(dst, src, bytes); }
};

class CpuReference final : public HostBackend<CpuReference> {
 public:
  explicit CpuReference(DType activations = DType::F32) : HostBackend(activations) {}
  std::string name() const override { return "cpu-reference"; }
};

// The reference with attention replaced by tiles threaded over (batch, head, query tile): each tile's scores
// exist only on its thread, and causal tiles skip the keys they cannot see (cpu/cpu_attention.cpp). With bf16
// storage attention is the reference's.
class CpuBackend final : public HostBackend<CpuBackend> {
 public:
  explicit CpuBackend(DType activations = DType::F32) : HostBackend(activations) {}
  std::string attention_implementation() const override {
    return act_dtype() == DType::F32 ? "qft's own, 64-row tiles threaded over (batch, head, query tile)"
                                     : HostBackend::attention_implementation() + " (bf16 storage)";
  }
  void attention_forward(const AttentionParams& p) override;
  void attention_backward(const AttentionBackwardParams& p) override;
  // The integer GEMM of GSE operands through OpenBLAS, exactly as the reference computes it (cpu/cpu_gse.cpp).
  void gse_matmul(float* c, const GseView& a, const GseView& b, bool accumulate) override;
};

}  // namespace qft
