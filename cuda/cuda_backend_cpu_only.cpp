// A CPU-only build: asking for the CUDA backend says why there is none.
#include "core/error.h"
#include "cuda/cuda_backend.h"

namespace qft {

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions&) {
  throw UnsupportedError("device 'cuda': this qft was built without CUDA (-DQFT_CUDA=OFF or no nvcc)");
}

}  // namespace qft
