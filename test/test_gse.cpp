// The GSE format (ops/gse.h) against fp64 references: the exponent is the smallest that holds each group, nearest
// rounding errs by at most half a step and stochastic rounding by under one step and without bias, and the integer
// product equals the fp64 product of the dequantized operands up to its fp32 sums across groups.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/cpu_backend.h"
#include "ops/gse.h"
#include "test/helpers.h"

using namespace qft;

namespace {

struct Gse {
  std::vector<int8_t> m, e;
  std::vector<float> dense;  // dequantized
};

// Rows whose groups span magnitudes from 1e-30 to 1e30, with an all-zero group and a group of one outlier.
std::vector<float> awkward_rows(std::mt19937_64& rng, int64_t rows, int64_t cols, int group) {
  std::vector<float> x(size_t(rows * cols));
  std::uniform_real_distribution<float> scale_exp(-30.0f, 30.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < cols; c0 += group) {
      const float scale = std::pow(10.0f, scale_exp(rng));
      const int kind = int(rng() % 6);
      for (int64_t c = c0; c < std::min(cols, c0 + group); ++c) {
        float v = kind == 0 ? 0.0f : scale * normal(rng);
        if (kind == 1 && c != c0) v *= 1e-6f;  // one outlier, the rest near zero
        x[size_t(r * cols + c)] = v;
      }
    }
  }
  return x;
}

Gse quantize(const std::vector<float>& x, int64_t rows, int64_t cols, GseFormat f, RoundingKey key) {
  Gse q;
  const int64_t groups = (cols + f.group - 1) / f.group;
  q.m.assign(size_t(rows * cols), 0);
  q.e.assign(size_t(rows * groups), 0);
  const GseQuantize<float> quant{q.m.data(), q.e.data(), x.data(), cols, f, key, 0};
  for (int64_t i = 0; i < rows * groups; ++i) quant(i);
  q.dense.assign(x.size(), NAN);
  const GseDequantize<float> deq{q.dense.data(), q.m.data(), q.e.data(), cols, f.group};
  for (int64_t i = 0; i < rows * cols; ++i) deq(i);
  return q;
}

}  // namespace

TEST_CASE("GSE exponents are the smallest that hold each group; nearest rounding errs by half a step at most", "[gse]") {
  std::mt19937_64 rng(test::fresh_seed());
  for (int bits : {8, 6, 4}) {
    for (int group : {32, 16, 7}) {
      const GseFormat f{group, bits};
      const int64_t rows = 5, cols = 1 + int64_t(rng() % 300);
      const auto x = awkward_rows(rng, rows, cols, group);
      const Gse q = quantize(x, rows, cols, f, {rng(), 3, 1, false});
      const int64_t groups = (cols + group - 1) / group;
      const double limit = f.max_mantissa();
      INFO("bits " << bits << ", group " << group << ", cols " << cols);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < groups; ++g) {
          const int e = q.e[size_t(r * groups + g)];
          double absmax = 0;
          for (int64_t c = g * group; c < std::min(cols, (g + 1) * group); ++c) {
            absmax = std::max(absmax, std::fabs(double(x[size_t(r * cols + c)])));
          }
          CHECK(absmax <= limit * std::ldexp(1.0, e));
          if (e > kGseMinExponent) CHECK(absmax > limit * std::ldexp(1.0, e - 1));
          for (int64_t c = g * group; c < std::min(cols, (g + 1) * group); ++c) {
            const size_t i = size_t(r * cols + c);
            CHECK(std::abs(int(q.m[i])) <= f.max_mantissa());
            CHECK(double(q.dense[i]) == std::ldexp(double(q.m[i]), e));
            // Half a step, plus the 2^-16 of one by which the fp32 floor may round up (ops/gse.h).
            CHECK(std::fabs(double(q.dense[i]) - double(x[i])) <= std::ldexp(0.5 + std::ldexp(1.0, -16), e));
          }
        }
      }
    }
  }
}

// Stochastic rounding: within one step (plus the 2^-16 of one that the fp32 floor may add), and unbiased. Each value
// is rounded under many keys; the mean's error is bounded by 5 standard errors of a variable within one step
// (sd <= step / 2).
TEST_CASE("GSE stochastic rounding stays within a step and is unbiased", "[gse]") {
  std::mt19937_64 rng(test::fresh_seed());
  const GseFormat f{32, 4};
  const int64_t rows = 3, cols = 64, draws = 2000;
  const auto x = awkward_rows(rng, rows, cols, f.group);
  std::vector<double> sum(x.size(), 0.0);
  const uint64_t seed = rng();
  std::vector<int8_t> exponents;
  for (int64_t d = 0; d < draws; ++d) {
    const Gse q = quantize(x, rows, cols, f, {seed, uint64_t(d), 2, true});
    if (d == 0) exponents = q.e;
    REQUIRE(q.e == exponents);  // the exponents do not depend on the rounding
    for (size_t i = 0; i < x.size(); ++i) {
      const double step = std::ldexp(1.0, q.e[i / size_t(cols) * 2 + i % size_t(cols) / 32]);
      CHECK(std::fabs(double(q.dense[i]) - double(x[i])) < step * (1.0 + std::ldexp(1.0, -16)));
      sum[i] += q.dense[i];
    }
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const double step = std::ldexp(1.0, exponents[i / size_t(cols) * 2 + i % size_t(cols) / 32]);
    INFO("value " << x[i] << ", step " << step);
    CHECK(std::fabs(sum[i] / double(draws) - double(x[i])) <= 5.0 * 0.5 * step / std::sqrt(double(draws)));
  }
}

// Each group's int32 sum scaled by its exponents is exactly the fp64 dot product of the dequantized group; only the
// fp32 additions across groups round, within (groups - 1) fp32 roundings of the sum of the groups' magnitudes.
TEST_CASE("the GSE integer product equals the fp64 product of the dequantized operands up to fp32 sums", "[gse]") {
  std::mt19937_64 rng(test::fresh_seed());
  for (int bits : {8, 4}) {
    const GseFormat f{32, bits};
    const int64_t M = 7, N = 9, K = 1 + int64_t(rng() % 500), groups = (K + f.group - 1) / f.group;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> a(size_t(M * K)), b(size_t(N * K));
    for (auto& v : a) v = normal(rng) * 3.0f;
    for (auto& v : b) v = normal(rng) * 1e-3f;
    const Gse qa = quantize(a, M, K, f, {rng(), 0, 0, true}), qb = quantize(b, N, K, f, {rng(), 0, 1, true});
    std::vector<float> c(size_t(M * N), NAN);
    const GseMatmul mm{c.data(), qa.m.data(), qa.e.data(), qb.m.data(), qb.e.data(), N, K, f.group, false};
    for (int64_t i = 0; i < M * N; ++i) mm(i);
    INFO("bits " << bits << ", K " << K);
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        double exact = 0, magnitude = 0;
        for (int64_t g = 0; g < groups; ++g) {
          double part = 0;
          for (int64_t k = g * f.group; k < std::min(K, (g + 1) * f.group); ++k) {
            part += double(qa.dense[size_t(i * K + k)]) * double(qb.dense[size_t(j * K + k)]);
          }
          exact += part;
          magnitude += std::fabs(part);
        }
        CHECK(std::fabs(double(c[size_t(i * N + j)]) - exact) <= double(groups) * std::ldexp(1.0, -24) * magnitude);
      }
    }
  }
}

TEST_CASE("scale_pow2 rounds x * 2^(ea + eb) as ldexp does, over every pair of exponents", "[gse]") {
  std::mt19937_64 rng(test::fresh_seed());
  std::uniform_int_distribution<int32_t> sum(-(1 << 23), 1 << 23);
  for (int ea = kGseMinExponent; ea <= kGseMaxExponent; ++ea) {
    for (int eb = kGseMinExponent; eb <= kGseMaxExponent; eb += 7) {
      for (const float x : {float(sum(rng)), 1.0f, -127.0f, 0.0f, float((1 << 24) - 1)}) {
        const float want = std::ldexp(x, ea + eb), got = scale_pow2(x, ea, eb);
        INFO(x << " * 2^(" << ea << " + " << eb << ")");
        REQUIRE(std::memcmp(&want, &got, sizeof want) == 0);
      }
    }
  }
}

TEST_CASE("the CPU's integer GEMM (sgemm on the mantissas) equals the reference bit for bit across row blocks",
          "[gse]") {
  std::mt19937_64 rng(test::fresh_seed());
  // 3 groups of 32 over 70 columns (the last partial); 2000 columns of C make the CPU kernel work in 2 row blocks
  const int64_t M = 2100, N = 2000, K = 70;
  CpuReference ref;
  CpuBackend cpu;
  for (const bool accumulate : {false, true}) {
    auto operand = [&](Backend& be, int64_t rows, uint32_t stream, std::vector<Buffer>& keep) {
      keep.push_back(be.alloc(size_t(rows * K), "test"));
      keep.push_back(be.alloc(size_t(rows * 3), "test"));
      const GseView v{static_cast<int8_t*>(keep[keep.size() - 2].get()), static_cast<int8_t*>(keep.back().get()), rows, K,
                      {32, 8}};
      std::vector<float> x = test::random_normal(size_t(rows * K), rng, 3.0f);
      for (size_t i = 0; i < x.size(); i += 97) x[i] *= 1e4f;  // groups of very different exponents
      keep.push_back(be.alloc(x.size() * 4, "test"));
      be.copy_to_device(keep.back().get(), x.data(), x.size() * 4);
      be.gse_quantize(v, CAct{keep.back().get(), DType::F32}, {7, 1, stream, true}, 0);
      return v;
    };
    std::vector<Buffer> keep;
    const GseView a = operand(ref, M, 1, keep), b = operand(ref, N, 2, keep);
    std::vector<float> start = test::random_normal(size_t(M * N), rng);
    std::vector<float> want = start, got = start;
    ref.gse_matmul(want.data(), a, b, accumulate);
    cpu.gse_matmul(got.data(), a, b, accumulate);
    REQUIRE(std::memcmp(want.data(), got.data(), want.size() * 4) == 0);
  }
}
