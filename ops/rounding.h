#pragma once
// Stochastic rounding as a pure function of (seed, step, stream, element index): a counter-based hash, so the
// CPU and the GPU round identically and resuming needs no RNG state.
#include <cstdint>

#include "core/hd.h"

namespace qft {

QFT_HD uint64_t mix64(uint64_t x) {  // the SplitMix64 finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A uniform number in [0, 1) with 24 random bits.
QFT_HD float sr_uniform(uint64_t seed, uint64_t step, uint32_t stream, uint64_t index) {
  uint64_t h = mix64(seed);
  h = mix64(h ^ step);
  h = mix64(h ^ stream);
  h = mix64(h ^ index);
  return float(h >> 40) * (1.0f / 16777216.0f);
}

// Two standard normal numbers for pair `index` of a stream (Box-Muller over the two 24-bit halves of one hash),
// for seeded random weights: element 2 * index gets .first, 2 * index + 1 gets .second.
struct NormalPair {
  float first, second;
};
QFT_HD NormalPair normal_pair_hd(uint64_t seed, uint32_t stream, uint64_t index) {
  const uint64_t h = mix64(mix64(seed ^ (uint64_t(stream) << 32)) ^ index);
  const float u1 = (float(h >> 40) + 0.5f) * (1.0f / 16777216.0f);  // in (0, 1): log(u1) is finite
  const float u2 = float((h >> 16) & 0xFFFFFFu) * (1.0f / 16777216.0f);
  const float radius = sqrtf(-2.0f * log_hd(u1)), angle = 6.2831853f * u2;
  return {radius * cosf(angle), radius * sinf(angle)};
}

// Where the random numbers of one tensor come from; stream separates a tensor's weights from its momentum.
struct RoundingKey {
  uint64_t seed = 0;
  uint64_t step = 0;  // the optimizer step; for gradient accumulators accumulation_step(step, micro)
  uint32_t stream = 0;
  bool stochastic = true;  // false: round to nearest
};

// The step word of a gradient accumulator's key: (step, micro-batch) as one 64-bit value, so no two pairs share
// a stream (a 32-bit step * 65536 + micro wrapped at step 65,536 and replayed step 0's streams).
QFT_HD uint64_t accumulation_step(uint32_t step, uint32_t micro) { return (uint64_t(step) << 32) | micro; }

// v in units of the quantization step -> INT8 in [-127, 127]. Stochastic: floor(v + u), unbiased.
QFT_HD int8_t round_int8(float v, const RoundingKey& k, uint64_t index) {
  float r = k.stochastic ? floorf(v + sr_uniform(k.seed, k.step, k.stream, index)) : rintf(v);
  r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
  return int8_t(r);
}

}  // namespace qft
