#pragma once
// Group-Shared Exponent integers (GSE), the number format of GSQ-Tuning (arXiv 2502.12913): groups of G consecutive
// values along a row (the reduction dimension of the products that read them) share one power-of-two exponent,
// and each value is a signed integer mantissa of b bits: x = m * 2^e with |m| <= 2^(b-1) - 1. The exponent is the
// smallest that holds the group's largest magnitude without clamping (as OCP's MX formats store it, one byte), so
// a value's rounding error is at most half a step 2^e with nearest rounding, under one step with stochastic
// rounding (RowRandom, the INT8 state's counter-based rounding: the same bits on every backend). As there, the
// floor is taken by truncating v + 128 in fp32, which moves a value within 2^-17 of a step below an integer up to it
// (so either bound may be exceeded by 2^-16 of a step).
//
// An integer product of two GSE operands sums mantissa products per group in int32 (exact: G * (2^(b-1) - 1)^2 <
// 2^24 for G <= 1040 at b = 8, so the sum also converts to fp32 exactly) and scales each group's sum by
// 2^(e_a + e_b): the one rounding per group is the fp32 accumulation across groups.
#include <string>

#include "core/hd.h"
#include "ops/rounding.h"

namespace qft {

struct GseFormat {
  int group = 32;  // values per shared exponent
  int bits = 8;    // mantissa bits, sign included: 8, 6 or 4
  QFT_HD int max_mantissa() const { return (1 << (bits - 1)) - 1; }
};

constexpr int kGseMinExponent = -126, kGseMaxExponent = 127;  // the normal powers of two of fp32

// A GSE matrix in backend memory: mantissas (rows, cols) and exponents (rows, groups), grouped along each row.
struct GseView {
  int8_t* m;
  int8_t* e;
  int64_t rows, cols;
  GseFormat f;
  QFT_HD int64_t groups() const { return (cols + f.group - 1) / f.group; }
};

// 2^e for e in [kGseMinExponent, kGseMaxExponent], built from its bits: exact, and no libm call.
QFT_HD float pow2_hd(int e) { return bits_as<float>(uint32_t(e + 127) << 23); }

// x * 2^(ea + eb) for exponents in [kGseMinExponent, kGseMaxExponent] and an integer x with |x| < 2^24, as ldexp
// rounds it, without a libm call: the smaller power first keeps the first product normal and exact (|x| >= 1, or
// x = 0), so the second product is the one rounding, as in ldexp; and it overflows only when the result does.
QFT_HD float scale_pow2(float x, int ea, int eb) {
  const int lo = ea < eb ? ea : eb, hi = ea < eb ? eb : ea;
  return x * pow2_hd(lo) * pow2_hd(hi);
}

// The smallest exponent e with absmax <= max_mantissa * 2^e, within the fp32 normal range; kGseMinExponent for an
// all-zero group (or one too small to hold: its mantissas then round towards zero). NaN gives the largest.
QFT_HD int gse_exponent(float absmax, int max_mantissa) {
  if (!(absmax <= 3.4e38f)) return kGseMaxExponent;
  const float limit = float(max_mantissa);
  int e = kGseMinExponent;
  // absmax / limit is below 2^128: start from its binary exponent, then step to the exact smallest.
  const float ratio = absmax / limit;
  const uint32_t biased = (bits_as<uint32_t>(ratio) >> 23) & 0xFFu;
  if (biased > 0) e = int(biased) - 127;
  while (e < kGseMaxExponent && absmax > limit * pow2_hd(e)) e += 1;
  while (e > kGseMinExponent && absmax <= limit * pow2_hd(e - 1)) e -= 1;
  return e;
}

// One group of row r: its exponent, then its mantissas, rounded as the key says (its columns are the row's own,
// whichever group).
template <class T>
struct GseQuantize {
  int8_t* QFT_RESTRICT m;  // (rows, cols)
  int8_t* QFT_RESTRICT e;  // (rows, groups)
  const T* x;              // (rows, cols)
  int64_t cols;
  GseFormat f;
  RoundingKey key;
  int64_t row_base;  // the global row of row 0 (the rounding streams are keyed by it)
  QFT_HD int64_t groups() const { return (cols + f.group - 1) / f.group; }
  QFT_HD void operator()(int64_t i) const {
    const int64_t r = i / groups(), c0 = (i % groups()) * f.group;
    const int64_t c1 = c0 + f.group < cols ? c0 + f.group : cols;
    const T* row = x + r * cols;
    float absmax = 0.0f;
    for (int64_t c = c0; c < c1; ++c) absmax = max_hd(absmax, fabsf(to_f32(row[c])));
    const int exponent = gse_exponent(absmax, f.max_mantissa());
    e[i] = int8_t(exponent);
    // 2^-e in two exact halves: 2^-127 (e = 127) is not a normal fp32, and multiplying by powers of two is exact.
    const int half = -exponent / 2;
    const float inv_a = pow2_hd(half), inv_b = pow2_hd(-exponent - half);
    const float limit = float(f.max_mantissa());
    auto store = [&](int64_t c, float v) {  // v: the value in steps, plus u
      v = v > -limit ? v : -limit;  // NaN clamps too
      v = v < limit ? v : limit;
      m[r * cols + c] = int8_t(int32_t(v + 128.0f) - 128);  // floor(v + u) by truncation of a positive value
    };
    if (!key.stochastic) {  // u = 1/2, as RowRandom gives it, without hashing the key and every column for nothing
      for (int64_t c = c0; c < c1; ++c) store(c, to_f32(row[c]) * inv_a * inv_b + 0.5f);
      return;
    }
    const RowRandom rnd(key, uint64_t(row_base + r));
    for (int64_t c = c0; c < c1; ++c) store(c, to_f32(row[c]) * inv_a * inv_b + rnd.uniform(uint32_t(c)));
  }
};

// x = m * 2^e, exact (a mantissa times a power of two) where the result is a normal fp32.
template <class T>
struct GseDequantize {
  T* out;          // (rows, cols)
  const int8_t* m;  // (rows, cols)
  const int8_t* e;  // (rows, groups)
  int64_t cols;
  int group;
  QFT_HD void operator()(int64_t i) const {
    const int64_t r = i / cols, c = i % cols;
    const int64_t groups = (cols + group - 1) / group;
    out[i] = from_f32<T>(float(m[i]) * pow2_hd(e[r * groups + c / group]));  // |m| >= 1 or 0: exact while finite
  }
};

// Why two GSE operands cannot be multiplied (C = A B^T needs the same columns and groups), or "".
inline std::string gse_matmul_problem(const GseView& a, const GseView& b) {
  if (a.cols == b.cols && a.f.group == b.f.group) return "";
  return "gse_matmul: operands of " + std::to_string(a.cols) + " and " + std::to_string(b.cols) +
         " columns in groups of " + std::to_string(a.f.group) + " and " + std::to_string(b.f.group);
}

// C (M, N) = A (M, K) @ B (N, K)^T on GSE operands with the same group along K: one output per call, int32 sums
// per group, scaled exactly and added in group order in fp32. accumulate: C += instead of C =.
struct GseMatmul {
  float* c;                        // (M, N)
  const int8_t *am, *ae, *bm, *be;  // mantissas (M or N, K), exponents (M or N, groups)
  int64_t N, K;
  int group;
  bool accumulate;
  QFT_HD void operator()(int64_t i) const {
    const int64_t row = i / N, col = i % N, groups = (K + group - 1) / group;
    const int8_t* a = am + row * K;
    const int8_t* b = bm + col * K;
    float total = accumulate ? c[i] : 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k1 = (g + 1) * group < K ? (g + 1) * group : K;
      int32_t s = 0;
      for (int64_t k = g * group; k < k1; ++k) s += int32_t(a[k]) * int32_t(b[k]);
      total += scale_pow2(float(s), ae[row * groups + g], be[col * groups + g]);
    }
    c[i] = total;
  }
};

// The second half of an integer product computed by a library GEMM: sums (groups, M, N) holds each group's
// mantissa-product sums (int32 from an integer GEMM, or fp32 holding the same integers), which are scaled by
// 2^(e_a + e_b) and added in group order, as GseMatmul adds them. One output per call.
template <class Sum>
struct GseAddGroups {
  float* c;                  // (M, N)
  const Sum* sums;           // (groups, M, N)
  const int8_t *ae, *be;     // exponents (M or N, groups)
  int64_t M, N, groups;
  bool accumulate;
  QFT_HD void operator()(int64_t i) const {
    const int64_t row = i / N, col = i % N;
    float total = accumulate ? c[i] : 0.0f;
    for (int64_t g = 0; g < groups; ++g) {
      total += scale_pow2(float(sums[g * M * N + i]), ae[row * groups + g], be[col * groups + g]);
    }
    c[i] = total;
  }
};

}  // namespace qft
