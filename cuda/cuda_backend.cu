// The CUDA backend: memory from a stream-ordered pool, cuBLASLt GEMMs (int8 ones for GSE products), and the
// launchers with which FunctorBackend runs the very functors the CPU backend runs (ops/kernels*.h, quant/*.h).
// No arithmetic here.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/cudnn_attention.h"
#include "cuda/gemm.cuh"
#include "cuda/gse_gemm.cuh"
#include "cuda/launch.cuh"
#include "ops/functor_backend.h"

namespace qft {

namespace {

// Owns the device choice and the stream; destroyed last, after the GEMM engine and every buffer.
struct DeviceContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  explicit DeviceContext(int dev) : device(dev) {
    QFT_CUDA_CHECK(cudaSetDevice(dev));
    QFT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    // Keep freed memory in the pool: per-layer buffers come and go every step and must not go back to the driver.
    cudaMemPool_t pool = nullptr;
    QFT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
    uint64_t keep = UINT64_MAX;
    QFT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  ~DeviceContext() {
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;
};

// Page-locked host blocks, kept for reuse by size once freed: page-locking is slow and cudaFreeHost waits for
// the device, and an offloaded stack asks for the same sizes every step. Blocks are only ever touched by copies
// queued on the backend's one stream, so a block reused is written after every earlier copy of it has run.
class PinnedHostBlocks {
 public:
  PinnedHostBlocks() = default;
  PinnedHostBlocks(const PinnedHostBlocks&) = delete;
  PinnedHostBlocks& operator=(const PinnedHostBlocks&) = delete;
  ~PinnedHostBlocks() {  // after the backend's destructor waited for the stream
    for (auto& [bytes, blocks] : free_) {
      for (void* p : blocks) cudaFreeHost(p);
    }
  }
  void* take(size_t bytes) {
    std::vector<void*>& same = free_[bytes];
    if (!same.empty()) {
      void* p = same.back();
      same.pop_back();
      return p;
    }
    void* p = nullptr;
    if (cudaMallocHost(&p, bytes) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return p;
  }
  void give_back(void* p, size_t bytes) { free_[bytes].push_back(p); }

 private:
  std::map<size_t, std::vector<void*>> free_;
};

class CudaBackend final : public FunctorBackend<CudaBackend> {
 public:
  explicit CudaBackend(const CudaOptions& o)
      : FunctorBackend(o.activations),
        opts_(o),
        ctx_(o.device),
        gemm_workspace_(alloc(kCudaGemmWorkspaceBytes, "GEMM workspace")),
        gemm_(ctx_.stream, gemm_workspace_.get(), gemm_workspace_.bytes()) {
    if (o.cudnn_attention) {
      cudnn_ = cuda::CudnnAttention::open(ctx_.stream, &no_cudnn_);
    } else {
      no_cudnn_ = "cuDNN attention turned off";
    }
  }
  ~CudaBackend() override { cudaStreamSynchronize(ctx_.stream); }

  std::string name() const override { return "cuda"; }

  size_t reserved_bytes() const override { return kCudaReservedBytes; }
  bool host_memory_is_apart() const override { return true; }
  void* device_stream() const override { return ctx_.stream; }
  size_t workspace_bytes() const override { return kCudaGemmWorkspaceBytes; }
  size_t available_bytes() const override {
    size_t free_bytes = 0, total = 0;
    QFT_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    return free_bytes;
  }
  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_.stream));
    after_op("copy_to_device");
  }
  void offload(void* host_dst, const void* src, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
    after_op("offload");
  }
  void reload(void* dst, const void* host_src, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, ctx_.stream));
    after_op("reload");
  }
  void synchronize() override { QFT_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream)); }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_.stream));
    after_op("copy");
  }
  void zero(void* dst, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, ctx_.stream));
    after_op("zero");
  }

  // ---- attention: cuDNN's fused SDPA, or the composed reference where it cannot serve ----
  std::string attention_implementation() const override {
    if (cudnn_) return "cuDNN " + cudnn_->version() + " fused SDPA (flash attention) for bf16, qft's own otherwise";
    return "qft's own, blocks of scores from cuBLASLt GEMMs (no cuDNN: " + no_cudnn_ + ")";
  }
  int64_t attention_stats_elems(int B, int T, int H, const DocumentSpans& docs) const override {
    // cuDNN's layout holds the composed attention's too: the documents' padded lengths cover every token.
    return cudnn_ ? cudnn_->stats_elems(B, T, H, docs) : Backend::attention_stats_elems(B, T, H, docs);
  }
  void attention_forward(const AttentionParams& p) override {
    const OpScope scope(*this, "attention_forward");
    std::string why;
    if (cudnn_ && cudnn_->forward(*this, p, &why)) return;
    fall_back(why);
    FunctorBackend::attention_forward(p);
  }
  void attention_backward(const AttentionBackwardParams& p) override {
    const OpScope scope(*this, "attention_backward");
    std::string why;
    if (cudnn_ && cudnn_->backward(*this, p, &why)) return;
    fall_back(why);
    FunctorBackend::attention_backward(p);
  }

  // ---- GSE products: cuBLASLt's int8 GEMM, or the reference functor for shapes it has no kernel for ----
  void gse_matmul(float* c, const GseView& a, const GseView& b, bool accumulate) override {
    const OpScope scope(*this, "gse_matmul");
    if (const std::string problem = gse_matmul_problem(a, b); !problem.empty()) throw Error(problem);
    if (cuda::gse_matmul_int8(*this, gemm_, ctx_.stream, c, a, b, accumulate)) return;
    if (int8_fallbacks_++ == 0) note("gse_matmul: qft's own kernel for a shape cuBLASLt's int8 GEMM does not take");
    FunctorBackend::gse_matmul(c, a, b, accumulate);
  }

  // ---- what FunctorBackend runs ops with ----
  template <class F>
  void launch_elementwise(const F& f, int64_t n) { cuda::launch_elementwise(f, n, ctx_.stream); }
  template <class F>
  void launch_rows(const F& f, int64_t rows) { cuda::launch_rows(f, rows, ctx_.stream); }
  void run_gemm(const GemmArgs& g) { gemm_.run(g); }
  // With debug_sync, wait for the op and name it if it faulted; otherwise errors surface at the next sync.
  void after_op(const char* op) {
    if (!opts_.debug_sync) return;
    const cudaError_t e = cudaStreamSynchronize(ctx_.stream);
    if (e != cudaSuccess) throw DeviceError(std::string("CUDA error after op ") + op + ": " + cudaGetErrorString(e));
  }

 protected:
  void* raw_alloc(size_t bytes) override {
    void* p = nullptr;
    const cudaError_t e = cudaMallocAsync(&p, bytes, ctx_.stream);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // not sticky; Backend::alloc reports the failure with the bytes in use
      return nullptr;
    }
    QFT_CUDA_CHECK(e);
    return p;
  }
  void raw_free(void* p) override { cudaFreeAsync(p, ctx_.stream); }  // stream-ordered: pending kernels finish first
  void* raw_alloc_host(size_t bytes) override { return host_blocks_.take(bytes); }
  void raw_free_host(void* p, size_t bytes) override { host_blocks_.give_back(p, bytes); }
  void raw_copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
    synchronize();
  }

 private:
  // The run's log hears of each reason to use qft's own attention once.
  void fall_back(const std::string& why) {
    if (cudnn_ && fallbacks_.insert(why).second) note("attention: qft's own for this shape: " + why);
  }

  // In this order: the stream first, the workspace before the GEMM engine that uses it (destroyed in reverse).
  CudaOptions opts_;
  DeviceContext ctx_;
  Buffer gemm_workspace_;
  cuda::GemmEngine gemm_;
  std::unique_ptr<cuda::CudnnAttention> cudnn_;  // null: not loaded, no_cudnn_ says why
  std::string no_cudnn_;
  std::set<std::string> fallbacks_;
  int64_t int8_fallbacks_ = 0;
  PinnedHostBlocks host_blocks_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& options) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    throw DeviceError(std::string("device 'cuda': no usable GPU (") +
                      (e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device") + ")");
  }
  if (options.device < 0 || options.device >= n) {
    throw DeviceError("device 'cuda': GPU " + std::to_string(options.device) + " does not exist (" +
                      std::to_string(n) + " visible)");
  }
  return std::make_unique<CudaBackend>(options);
}

}  // namespace qft
