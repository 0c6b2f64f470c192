#pragma once
// cuDNN's fused flash attention (scaled dot-product attention, forward and backward) for the CUDA backend, through
// the header-only cuDNN frontend, with libcudnn loaded at run time: without it qft starts and trains on its own
// attention (ops/attention_composed.h) and its log says so.
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "ops/backend.h"

namespace qft::cuda {

class CudnnAttention {
 public:
  // Loads libcudnn ($QFT_CUDNN_LIBRARY, else libcudnn.so.9 on the loader's path) and makes a handle on `stream`;
  // null, with the reason in *why, when that fails or qft was built without the cuDNN frontend.
  static std::unique_ptr<CudnnAttention> open(cudaStream_t stream, std::string* why);
  virtual ~CudnnAttention() = default;
  virtual std::string version() const = 0;
  // Floats of lse this path writes: (B, H, T), or with packed documents (documents, H, longest document) with both
  // counts rounded up to powers of two, so that a few graphs serve every batch.
  virtual int64_t stats_elems(int B, int T, int H, const DocumentSpans& docs) const = 0;
  // Enqueue the op and return true, or return false with the reason (bf16 activations only; no plan for the shape).
  virtual bool forward(Backend& be, const AttentionParams& p, std::string* why) = 0;
  virtual bool backward(Backend& be, const AttentionBackwardParams& p, std::string* why) = 0;
};

}  // namespace qft::cuda
