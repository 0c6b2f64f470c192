// The CUDA backend: memory from a stream-ordered pool, cuBLASLt GEMMs, and launchers that run the very functors
// the CPU backend runs (ops/kernels*.h, quant/*.h). No arithmetic is written here.
#include <cmath>
#include <string>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/cuda_backend.h"
#include "cuda/gemm.cuh"
#include "cuda/launch.cuh"
#include "ops/attention_compose.h"
#include "ops/kernels_backward.h"

namespace qft {

namespace {

using cuda::launch_elementwise;
using cuda::launch_rows;

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

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& o) : opts_(o), ctx_(o.device), gemm_(ctx_.stream, o.bf16_gemm) {}
  ~CudaBackend() override { cudaStreamSynchronize(ctx_.stream); }

  std::string name() const override { return "cuda"; }

  size_t available_bytes() const override {
    size_t free_bytes = 0, total = 0;
    QFT_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    return free_bytes;
  }
  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_.stream));
    done("copy_to_device");
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_.stream));
    synchronize();
  }
  void synchronize() override { QFT_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream)); }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_.stream));
    done("copy");
  }
  void zero(void* dst, size_t bytes) override {
    if (bytes) QFT_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, ctx_.stream));
    done("zero");
  }

  // ---- forward ----
  void matmul_forward(float* out, const float* inp, const float* weight, int N, int I, int O) override {
    gemm({false, true, N, O, I, inp, I, weight, I, 0.0f, out, O});  // (N, I) @ (O, I)^T -> (N, O)
    done("matmul_forward");
  }
  void embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C) override {
    launch_elementwise(EmbeddingForward{out, tokens, table, C}, int64_t(N) * C, ctx_.stream);
    done("embedding_forward");
  }
  void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int C, float eps) override {
    launch_rows(RmsNormForward{y, rstd, x, w, C, eps}, N, ctx_.stream);
    done("rmsnorm_forward");
  }
  void rope(float* x, const int32_t* pos, const float* inv_freq, int N, int H, int D, bool backward) override {
    launch_elementwise(Rope{x, pos, inv_freq, H, D, backward ? -1.0f : 1.0f}, int64_t(N) * H * (D / 2), ctx_.stream);
    done("rope");
  }
  void attention_forward(const AttentionParams& p) override;
  void attention_decode(const DecodeAttentionParams& p) override {
    launch_rows(DecodeAttention{p.out, p.scratch, p.q, p.k, p.v, p.past, p.H, p.KVH, p.D, p.max_t,
                                1.0f / std::sqrt(float(p.D))},
                int64_t(p.n) * p.H, ctx_.stream);
    done("attention_decode");
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override {
    launch_elementwise(SwigluForward{out, gate, up}, n, ctx_.stream);
    done("swiglu_forward");
  }
  void residual_add(float* x, const float* y, int64_t n) override {
    launch_elementwise(ResidualAdd{x, y}, n, ctx_.stream);
    done("residual_add");
  }
  void cross_entropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int N,
                             int V) override {
    launch_rows(CrossEntropyForward{loss, lse, logits, targets, V}, N, ctx_.stream);
    done("cross_entropy_forward");
  }

  // ---- backward ----
  void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int I, int O,
                             bool accumulate) override {
    gemm({false, false, N, I, O, dout, O, weight, I, accumulate ? 1.0f : 0.0f, dinp, I});  // (N, O) @ (O, I)
    done("matmul_backward_input");
  }
  void matmul_backward_weight(float* dweight, const float* dout, const float* inp, int N, int I, int O,
                              bool accumulate) override {
    gemm({true, false, O, I, N, dout, O, inp, I, accumulate ? 1.0f : 0.0f, dweight, I});  // (N, O)^T @ (N, I)
    done("matmul_backward_weight");
  }
  void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,
                        int N, int C, bool accumulate_dx) override {
    launch_rows(RmsNormBackwardInput{dx, dy, x, w, rstd, C, accumulate_dx}, N, ctx_.stream);
    if (dw) launch_elementwise(RmsNormBackwardWeight{dw, dy, x, rstd, N, C}, C, ctx_.stream);
    done("rmsnorm_backward");
  }
  void attention_backward(const AttentionBackwardParams& p) override;
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                       int64_t n) override {
    launch_elementwise(SwigluBackward{dgate, dup, dout, gate, up}, n, ctx_.stream);
    done("swiglu_backward");
  }
  void cross_entropy_backward(float* logits, const float* lse, const int32_t* targets, int N, int cols, int v0, int V,
                              float scale) override {
    launch_elementwise(CrossEntropyBackward{logits, lse, targets, V, v0, cols, scale}, int64_t(N) * cols, ctx_.stream);
    done("cross_entropy_backward");
  }
  void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int N, int C, int v0,
                          int rows) override {
    // One thread per column walks the tokens in order: the same sums, in the same order, as the CPU.
    launch_elementwise(EmbeddingBackward{dtable, dout, tokens, N, C, v0, rows}, C, ctx_.stream);
    done("embedding_backward");
  }

  // ---- optimizer and reductions ----
  void lion_step(float* theta, float* m, const float* g, int64_t n, const LionParams& p) override {
    launch_elementwise(LionStepF32{theta, m, g, p}, n, ctx_.stream);
    done("lion_step");
  }
  double sum_squares(const float* x, int64_t n) override {
    // Partial sums of 1024 elements on the device, added on the host in double: the CPU's order exactly.
    const int64_t parts = (n + 1023) / 1024;
    Buffer partial = alloc(size_t(parts) * 4, "optimizer scratch");
    launch_elementwise(SquaredNormPartial{partial.f32(), x, n}, parts, ctx_.stream);
    std::vector<float> host(static_cast<size_t>(parts));
    copy_to_host(host.data(), partial.get(), host.size() * 4);
    double s = 0;
    for (float v : host) s += v;
    return s;
  }

  // ---- INT8 state ----
  void dequantize_hybrid(float* out, const HybridView& w) override {
    launch_rows(HybridDequantRows{out, w}, w.rows, ctx_.stream);
    done("dequantize_hybrid");
  }
  void dequantize_blocks(float* out, const BlockView& b) override {
    launch_rows(BlockDequantRows{out, b}, b.rows, ctx_.stream);
    done("dequantize_blocks");
  }
  void quantize_blocks(const BlockView& b, const float* x, const RoundingKey& key, int64_t row_base) override {
    launch_rows(BlockQuantizeRows{b, x, key, row_base}, b.rows, ctx_.stream);
    done("quantize_blocks");
  }
  void accumulate_blocks(const BlockView& acc, const float* g, const RoundingKey& key, int64_t row_base) override {
    launch_rows(BlockAccumulateRows{acc, g, key, row_base}, acc.rows, ctx_.stream);
    done("accumulate_blocks");
  }
  void lion_step_rows(const LionRowStep& step, int64_t rows) override {
    launch_rows(step, rows, ctx_.stream);
    done("lion_step_rows");
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

 private:
  void gemm(const GemmArgs& g) { gemm_.run(g); }
  // The row launcher the shared attention composition runs its softmax functors with.
  auto rows_launcher() {
    return [stream = ctx_.stream](const auto& f, int64_t rows) { launch_rows(f, rows, stream); };
  }
  // With debug_sync, wait for the op and name it if it faulted; otherwise errors surface at the next sync.
  void done(const char* op) {
    if (!opts_.debug_sync) return;
    const cudaError_t e = cudaStreamSynchronize(ctx_.stream);
    if (e != cudaSuccess) throw DeviceError(std::string("CUDA error after op ") + op + ": " + cudaGetErrorString(e));
  }

  CudaOptions opts_;
  DeviceContext ctx_;
  cuda::GemmEngine gemm_;
};

void CudaBackend::attention_forward(const AttentionParams& p) {
  compose_attention_forward(p, [this](const GemmArgs& g) { gemm(g); }, rows_launcher());
  done("attention_forward");
}

void CudaBackend::attention_backward(const AttentionBackwardParams& p) {
  compose_attention_backward(*this, p, [this](const GemmArgs& g) { gemm(g); }, rows_launcher());
  done("attention_backward");
}

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
