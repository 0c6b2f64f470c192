#pragma once
// Stochastic rounding as a pure function of (seed, step, stream, row, column): a counter-based hash, so the CPU
// and the GPU round identically and resuming needs no RNG state. The 64-bit key of a row is hashed once per row;
// each element then hashes only its column in 32 bits, which the CPU runs in vector lanes and the GPU in a few
// integer instructions.
#include <cstdint>

#include "core/dtype.h"
#include "core/hd.h"

namespace qft {

QFT_HD uint64_t mix64(uint64_t x) {  // the SplitMix64 finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A 32-bit integer hash with full avalanche and low bias (Wellons' "lowbias32"): two 32-bit multiplies.
QFT_HD uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  return x ^ (x >> 16);
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

// The random numbers of one row of a tensor (its global row index, whichever chunk of rows a call covers).
// Columns fit 32 bits: a config's widest matrix row is 2^22 elements.
struct RowRandom {
  uint32_t lo = 0, hi = 0;
  uint32_t keep = 0xFFFFFFu, fixed = 0;  // nearest rounding: keep none of the 24 random bits, fix u at 1/2
  QFT_HD RowRandom(const RoundingKey& k, uint64_t row) {
    const uint64_t h = mix64(mix64(mix64(mix64(k.seed) ^ k.step) ^ k.stream) ^ row);
    lo = uint32_t(h);
    hi = uint32_t(h >> 32);
    if (!k.stochastic) keep = 0, fixed = 0x800000u;
  }
  // Uniform in [0, 1) with 24 random bits (1/2 for nearest rounding). Masks, not a branch: a conversion inside a
  // branch counts as a possible trap to g++ and keeps the loop scalar.
  QFT_HD float uniform(uint32_t col) const {
    const uint32_t bits = ((hash32(hash32(col ^ lo) + hi) >> 8) & keep) | fixed;
    return float(int32_t(bits)) * (1.0f / 16777216.0f);
  }
  // v in units of the quantization step -> INT8 in [-127, 127]: floor(v + u), unbiased; nearest (halves up) with
  // u = 1/2. Clamped first (NaN to -127), then x + 128 >= 1 floors by truncation, which vectorizes (floorf only
  // without trapping math). Rounding x + 128 to fp32 moves values within 2^-17 below an integer up to it: a bias
  // of about 1e-5 of a step.
  QFT_HD int8_t round(float v, uint32_t col) const {
    float x = v + uniform(col);
    x = x > -127.0f ? x : -127.0f;
    x = x < 127.0f ? x : 127.0f;
    return int8_t(int32_t(x + 128.0f) - 128);
  }
};

// |x| as an integer that orders as |x| does (the bits of a non-negative float). Maxima of magnitudes are taken
// over these: an integer max reduction vectorizes, a float one (which must honour NaN) does not. NaN orders above
// every finite value and infinity.
QFT_HD int32_t magnitude_bits(float x) { return int32_t(f32_to_bits(x) & 0x7FFFFFFFu); }
QFT_HD float magnitude_of(int32_t bits) { return bits_to_f32(uint32_t(bits)); }
QFT_HD int32_t max_i32(int32_t a, int32_t b) { return a > b ? a : b; }

}  // namespace qft
