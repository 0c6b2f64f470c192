// Launchers for the INT8 state: the arithmetic is quant/int8.h, shared with the CPU backend.
#include "cuda/cuda_ops.h"
#include "cuda/launch.cuh"
#include "quant/int8.h"

namespace qft::cuda {

void dequantize_hybrid(float* out, const HybridView& w, Stream stream) {
  launch_rows(HybridDequantRows{out, w}, w.rows, stream);
}

void quantize_blocks(const BlockView& b, const float* x, const RoundingKey& key, int64_t row_base, Stream stream) {
  launch_rows(BlockQuantizeRows{b, x, key, row_base}, b.rows, stream);
}

void lion_step_rows(const LionRowStep& step, int64_t rows, Stream stream) { launch_rows(step, rows, stream); }

}  // namespace qft::cuda
