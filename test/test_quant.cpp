// INT8 state: hybrid round trips, stochastic rounding, the fused INT8 Lion step against an fp64 reference of
// the same quantized arithmetic, scale growth, and INT8 gradient accumulation.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>

#include "cpu/cpu_backend.h"
#include "model/hf_model.h"
#include "model/llama.h"
#include "trainer/train_step.h"
#include "quant/quantized.h"
#include "test/helpers.h"

using namespace qft;

namespace {

template <class T>
std::vector<T> to_host(Backend& be, const Buffer& b) {
  std::vector<T> v(b.bytes() / sizeof(T));
  be.copy_to_host(v.data(), b.get(), b.bytes());
  return v;
}

std::vector<float> dequantize(Backend& be, const HybridMatrix& m) {
  Buffer out = be.alloc(size_t(m.rows * m.cols) * 4);
  be.dequantize_hybrid(out.f32(), m.view());
  return to_host<float>(be, out);
}

// Heavy-tailed weights like an LLM's: mostly N(0, 0.02) with a few large entries.
std::vector<float> llm_like(std::mt19937_64& rng, int64_t n) {
  auto w = test::random_normal(size_t(n), rng, 0.02f);
  std::uniform_int_distribution<int64_t> at(0, n - 1);
  for (int64_t i = 0; i < n / 200; ++i) w[size_t(at(rng))] *= 40.0f;
  return w;
}

}  // namespace

TEST_CASE("hybrid quantization: dense error within half a step, outliers exact, the fraction asked for", "[quant]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  const int64_t rows = 24, cols = 300;
  const auto w = llm_like(rng, rows * cols);
  double l2_none = 0, l2_one = 0;
  for (double frac : {0.0, 0.01, 0.05}) {
    const HybridMatrix m = quantize_hybrid(be, w.data(), rows, cols, frac);
    const int64_t k = outliers_per_row(cols, frac);
    REQUIRE(m.nnz == rows * k);
    REQUIRE(k == std::llround(frac * cols));
    const auto back = dequantize(be, m);
    const auto scale = to_host<float>(be, m.scale);
    const auto q = to_host<int8_t>(be, m.q);
    double l2 = 0;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t slots = 0;
      for (int64_t i = 0; i < cols; ++i) {
        const size_t at = size_t(r * cols + i);
        l2 += std::pow(double(back[at]) - w[at], 2);
        if (q[at] == kOutlierSlot) {
          ++slots;
          REQUIRE(back[at] == w[at]);  // exact
        } else {
          // half a step, plus the fp32 rounding of w / scale and q * scale
          REQUIRE(std::fabs(back[at] - w[at]) <= scale[size_t(r)] * 0.5f + 4 * FLT_EPSILON * std::fabs(w[at]));
        }
      }
      REQUIRE(slots == k);
    }
    if (frac == 0.0) l2_none = std::sqrt(l2);
    if (frac == 0.01) l2_one = std::sqrt(l2);
  }
  INFO("L2 error: no outliers " << l2_none << ", 1% outliers " << l2_one);
  REQUIRE(l2_one < 0.5 * l2_none);  // the paper's ablation in miniature

  // Column indices take the narrowest type: one byte up to 256 columns, two up to 65536.
  CHECK(quantize_hybrid(be, w.data(), rows, cols, 0.01).col_bytes == 2);
  const HybridMatrix narrow = quantize_hybrid(be, w.data(), rows * cols / 200, 200, 0.05);
  REQUIRE(narrow.col_bytes == 1);
  const auto back = dequantize(be, narrow);
  const auto q = to_host<int8_t>(be, narrow.q);
  for (size_t i = 0; i < q.size(); ++i)
    if (q[i] == kOutlierSlot) REQUIRE(back[i] == w[i]);
}

// bf16 checkpoints hold many equal magnitudes: the outliers must be the k largest |w| with ties going to the lower
// column, whatever algorithm picks them, so that a model quantizes the same on every machine and thread count.
TEST_CASE("hybrid quantization picks the k largest magnitudes, ties to the lower column", "[quant]") {
  std::mt19937_64 rng(test::fresh_seed());
  std::uniform_int_distribution<int> level(-6, 6);  // few distinct magnitudes: ties everywhere
  CpuBackend be;
  const int64_t rows = 40, cols = 200;
  std::vector<float> w(size_t(rows * cols));
  for (float& x : w) x = 0.25f * float(level(rng));
  for (double frac : {0.01, 0.05, 0.2}) {
    const HybridMatrix m = quantize_hybrid(be, w.data(), rows, cols, frac);
    const int64_t k = outliers_per_row(cols, frac);
    std::vector<uint8_t> col(size_t(m.nnz));
    be.copy_to_host(col.data(), m.col.get(), col.size());
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<int64_t> order(static_cast<size_t>(cols));
      for (int64_t i = 0; i < cols; ++i) order[size_t(i)] = i;
      const float* wr = w.data() + r * cols;
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return std::fabs(wr[a]) > std::fabs(wr[b]); });
      std::vector<int64_t> want(order.begin(), order.begin() + k);
      std::sort(want.begin(), want.end());
      INFO("row " << r << ", " << k << " outliers");
      for (int64_t j = 0; j < k; ++j) REQUIRE(int64_t(col[size_t(r * k + j)]) == want[size_t(j)]);
    }
  }
}

TEST_CASE("stochastic rounding moves a weight by updates of 1% of a step; nearest rounding does not", "[quant]") {
  CpuBackend be;
  const int64_t cols = 256, steps = 10000;
  std::mt19937_64 rng(test::fresh_seed());
  std::vector<float> w(cols);
  // Values end near their start minus 100 steps, sd 10: starting in [20, 60] they stay inside +-127.
  std::uniform_real_distribution<float> u(20.0f, 60.0f);
  for (auto& x : w) x = u(rng);
  w[0] = 127.0f;  // pins the row's absmax, so the scale is exactly 1
  w[1] = 20.0f;
  const std::vector<float> g(cols, 1.0f);  // sign(c) = +1 every step: each step subtracts lr
  for (bool stochastic : {true, false}) {
    HybridMatrix m = quantize_hybrid(be, w.data(), 1, cols, 0.0);
    std::vector<float> m32(cols, 0.0f);
    const auto q0 = to_host<int8_t>(be, m.q);
    LionRowStep s{};
    s.p = {0.01f, 0.9f, 0.99f, 0.0f, 1.0f};  // lr = 1% of the quantization step
    s.g = g.data();
    s.w = m.view();
    s.m32 = m32.data();
    s.cols = cols;
    s.wkey = {test::fresh_seed(), 0, 1, stochastic};
    for (int64_t t = 0; t < steps; ++t) {
      s.wkey.step = uint32_t(t);
      be.lion_step_rows(s, 1);
    }
    const auto q1 = to_host<int8_t>(be, m.q);
    REQUIRE(to_host<float>(be, m.scale)[0] == 1.0f);  // never had to grow
    double moved = 0;
    for (int64_t i = 2; i < cols; ++i) moved += double(q0[size_t(i)]) - double(q1[size_t(i)]);
    moved /= double(cols - 2);
    // Expected 100 steps; per element the count is Binomial(10^4, 0.01), sd 9.95, so the mean's sd is 0.63.
    INFO("stochastic " << stochastic << ": mean move " << moved << " steps");
    if (stochastic) {
      REQUIRE(std::fabs(moved - 100.0) < 5 * 9.95 / std::sqrt(double(cols - 2)));
    } else {
      REQUIRE(moved == 0.0);
    }
  }
}

TEST_CASE("the fused INT8 Lion step matches an fp64 reference of the same quantized arithmetic", "[quant][lion]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  const int64_t rows = 12, cols = 600, block = 256;  // a partial last block in every row
  const auto w = llm_like(rng, rows * cols);
  HybridMatrix hm = quantize_hybrid(be, w.data(), rows, cols, 0.02);
  BlockMatrix mm = BlockMatrix::zeros(be, rows, cols, block, "momentum");
  const auto m0 = test::random_normal(size_t(rows * cols), rng, 1e-3f);
  be.quantize_blocks(mm.view(), m0.data(), {1, 0, 2, true}, 0);
  const auto g = test::random_normal(size_t(rows * cols), rng, 1e-3f);

  for (bool stochastic : {false, true}) {
    // Host copies of the state before the step.
    const auto q = to_host<int8_t>(be, hm.q), mq = to_host<int8_t>(be, mm.q);
    const auto sc = to_host<float>(be, hm.scale), am = to_host<float>(be, mm.absmax), val = to_host<float>(be, hm.val);
    const auto cols16 = to_host<uint16_t>(be, hm.col);
    std::vector<uint32_t> rescales(rows, 7);
    LionRowStep s{};
    s.p = {2e-3f, 0.9f, 0.99f, 0.1f, 1.0};
    const StepTotals totals{1.0, std::pow(1.0 / 0.7 - 1e-6, 2)};  // clipping scales the gradient by about 0.7
    s.totals = &totals;
    s.g = g.data();
    s.w = hm.view();
    s.m = mm.view();
    s.cols = cols;
    s.wkey = {99, 5, 10, stochastic};
    s.mkey = {99, 5, 11, stochastic};
    s.rescales = rescales.data();
    be.lion_step_rows(s, rows);
    const auto q1 = to_host<int8_t>(be, hm.q), mq1 = to_host<int8_t>(be, mm.q);
    const auto sc1 = to_host<float>(be, hm.scale), am1 = to_host<float>(be, mm.absmax), val1 = to_host<float>(be, hm.val);

    int64_t off_by_one = 0;
    const int64_t bpr = (cols + block - 1) / block;
    for (int64_t r = 0; r < rows; ++r) {
      auto mom = [&](int64_t i) { return double(mq[size_t(r * cols + i)]) * am[size_t(r * bpr + i / block)] / 127.0; };
      auto grad = [&](int64_t i) { return double(g[size_t(r * cols + i)]) * double(totals.clip_factor(1.0)); };
      auto lion = [&](double wv, int64_t i) {
        const double c = 0.9 * mom(i) + 0.1 * grad(i);
        return wv - 2e-3 * ((c > 0) - (c < 0) + 0.1 * wv);
      };
      double mx = 0;
      for (int64_t i = 0; i < cols; ++i)
        if (q[size_t(r * cols + i)] != kOutlierSlot) mx = std::max(mx, std::fabs(lion(q[size_t(r * cols + i)] * double(sc[size_t(r)]), i)));
      const double s_new = mx > 127.0 * sc[size_t(r)] ? double(s.growth) * mx / 127.0 : sc[size_t(r)];
      REQUIRE(sc1[size_t(r)] == Approx(s_new).epsilon(1e-6));
      REQUIRE(rescales[size_t(r)] == 7u + (s_new != sc[size_t(r)]));
      for (int64_t i = 0; i < cols; ++i) {
        const size_t at = size_t(r * cols + i);
        if (q[at] == kOutlierSlot) {
          REQUIRE(q1[at] == kOutlierSlot);
          continue;
        }
        const double v = lion(q[at] * double(sc[size_t(r)]), i) / s_new;
        const double u = stochastic ? RowRandom({99, 5, 10, true}, uint64_t(r)).uniform(uint32_t(i)) : 0.5;
        const double want = std::clamp(std::floor(v + u), -127.0, 127.0);
        REQUIRE(std::fabs(q1[at] - want) <= 1.0);  // equal except at fp32/fp64 rounding boundaries
        off_by_one += q1[at] != want;
      }
      for (int64_t k = r * 0; k < int64_t(val.size()); ++k) {
        if (k / (hm.nnz / rows) != r) continue;
        REQUIRE(val1[size_t(k)] == Approx(lion(val[size_t(k)], cols16[size_t(k)])).epsilon(1e-6));
      }
      for (int64_t b = 0; b < bpr; ++b) {
        double bmax = 0;
        for (int64_t i = b * block; i < std::min(cols, (b + 1) * block); ++i) bmax = std::max(bmax, std::fabs(0.99 * mom(i) + 0.01 * grad(i)));
        REQUIRE(am1[size_t(r * bpr + b)] == Approx(bmax).epsilon(1e-5));
        for (int64_t i = b * block; i < std::min(cols, (b + 1) * block); ++i) {
          const double v = (0.99 * mom(i) + 0.01 * grad(i)) * 127.0 / bmax;
          const double u = stochastic ? RowRandom({99, 5, 11, true}, uint64_t(r)).uniform(uint32_t(i)) : 0.5;
          REQUIRE(std::fabs(mq1[size_t(r * cols + i)] - std::floor(v + u)) <= 1.0);
          off_by_one += mq1[size_t(r * cols + i)] != std::floor(v + u);
        }
      }
    }
    INFO("stochastic " << stochastic << ": " << off_by_one << " of " << 2 * rows * cols << " values off by one");
    REQUIRE(off_by_one <= rows * cols / 500);
  }
}

TEST_CASE("a row whose update overflows grows its scale, and only then", "[quant]") {
  CpuBackend be;
  std::vector<float> w(64);
  for (int i = 0; i < 64; ++i) w[size_t(i)] = float(i - 32) / 32.0f;  // absmax 1: scale 1/127
  HybridMatrix m = quantize_hybrid(be, w.data(), 1, 64, 0.0);
  std::vector<float> m32(64, 0.0f), g(64, -1.0f);  // sign(c) = -1: every weight grows by lr
  std::vector<uint32_t> rescales(1, 0);
  LionRowStep s{};
  s.p = {0.5f, 0.9f, 0.99f, 0.0f};
  s.g = g.data();
  s.w = m.view();
  s.m32 = m32.data();
  s.cols = 64;
  s.wkey = {1, 0, 0, true};
  s.rescales = rescales.data();
  be.lion_step_rows(s, 1);
  REQUIRE(rescales[0] == 1);
  // The largest new value (the dequantized 31/32, q = 123, plus 0.5) with the growth headroom.
  REQUIRE(to_host<float>(be, m.scale)[0] == Approx(s.growth * (123.0f / 127.0f + 0.5f) / 127.0f));
  const auto back = dequantize(be, m);
  // within one new step (stochastic rounding) plus half an old step (the initial quantization)
  for (int i = 0; i < 64; ++i) REQUIRE(back[size_t(i)] == Approx(w[size_t(i)] + 0.5f).margin(1.6f / 127.0f + 0.5f / 127.0f));
}

TEST_CASE("INT8 gradient accumulation keeps updates of 1% of a step with stochastic rounding", "[quant]") {
  CpuBackend be;
  const int64_t rows = 4, cols = 512, block = 256, n = 100;
  for (bool stochastic : {true, false}) {
    BlockMatrix acc = BlockMatrix::zeros(be, rows, cols, block, "momentum");
    // Each block's first element anchors its absmax at 1.27, so its step is 0.01 throughout.
    std::vector<float> anchor(size_t(rows * cols), 0.0f), tiny(size_t(rows * cols), 1e-4f);
    for (size_t i = 0; i < anchor.size(); i += size_t(block)) anchor[i] = 1.27f, tiny[i] = 0.0f;
    const uint64_t seed = test::fresh_seed();
    be.quantize_blocks(acc.view(), anchor.data(), {seed, 0, 7, stochastic}, 0);
    for (int64_t k = 1; k <= n; ++k) be.accumulate_blocks(acc.view(), tiny.data(), {seed, uint32_t(k), 7, stochastic}, 0);
    Buffer out = be.alloc(size_t(rows * cols) * 4);
    be.dequantize_blocks(out.f32(), acc.view());
    const auto got = to_host<float>(be, out);
    double mean = 0;
    int64_t count = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      if (i % size_t(block) == 0) {
        REQUIRE(got[i] == Approx(1.27f));
        continue;
      }
      mean += got[i] / 0.01;  // in steps
      ++count;
    }
    mean /= double(count);
    // Expected 100 x 0.01 = 1 step. Per element the count is Binomial(100, 0.01): sd 0.995 steps, so the mean
    // over 2040 elements has sd 0.022; nearest rounding drops every update.
    INFO("stochastic " << stochastic << ": mean accumulated " << mean << " steps");
    if (stochastic) {
      REQUIRE(std::fabs(mean - 1.0) < 0.15);
    } else {
      REQUIRE(mean == 0.0);
    }
  }
}

TEST_CASE("re-selecting outliers after training keeps the weights within half a step", "[quant]") {
  std::mt19937_64 rng(test::fresh_seed());
  HfModel hf(test::fixture("gqa_tied"));
  CpuBackend be;
  LlamaModel model(hf, be, WeightStorage{true, 0.02});
  // Move the weights away from their initial quantization first, so that the largest entries change.
  Optimizer opt(model, OptimizerSettings{});
  std::uniform_int_distribution<int32_t> tok(3, 499);
  std::vector<int32_t> ids(32);
  for (auto& t : ids) t = tok(rng);
  const Batch batch = Batch::from_labels(2, 16, ids, ids);
  for (int s = 0; s < 3; ++s) {
    opt.set_step(uint32_t(s));
    train_step(model, opt, nullptr, {batch}, 5e-3f, std::nullopt);
  }
  std::vector<std::vector<float>> before;
  for (size_t i = 0; i < model.params().size(); ++i) {
    before.push_back(model.read_weight(int(i)));
  }
  const double loss_before = model.forward_loss(batch).mean();
  model.reselect_outliers();
  for (size_t i = 0; i < model.params().size(); ++i) {
    const Param& p = model.params()[i];
    if (!p.quantized()) continue;
    const auto scale = to_host<float>(be, p.int8.scale);
    const auto q = to_host<int8_t>(be, p.int8.q);
    const std::vector<float> after = model.read_weight(int(i));
    for (int64_t r = 0; r < p.rows; ++r) {
      // The outliers are again the k largest |w| of the row, and exact; the rest within half a step.
      float smallest_outlier = INFINITY, largest_dense = 0;
      for (int64_t c = 0; c < p.cols; ++c) {
        const size_t at = size_t(r * p.cols + c);
        if (q[at] == kOutlierSlot) {
          REQUIRE(after[at] == before[i][at]);
          smallest_outlier = std::min(smallest_outlier, std::fabs(before[i][at]));
        } else {
          REQUIRE(std::fabs(after[at] - before[i][at]) <= scale[size_t(r)] * 0.5f + 4 * FLT_EPSILON * std::fabs(before[i][at]));
          largest_dense = std::max(largest_dense, std::fabs(before[i][at]));
        }
      }
      REQUIRE(smallest_outlier >= largest_dense);
    }
  }
  REQUIRE(std::fabs(model.forward_loss(batch).mean() - loss_before) < 0.05);
}

// The accumulators' rounding stream is keyed by (step, micro-batch); a 32-bit step * 65536 + micro wrapped at
// step 65,536 and replayed step 0's random numbers.
TEST_CASE("INT8 gradient accumulators draw fresh rounding streams at steps 65,536 apart", "[quant]") {
  CpuBackend be;
  const HfModel hf(test::fixture("gqa_tied"));
  const LlamaModel model(hf, be, WeightStorage{});
  OptimizerSettings s;
  s.grad_int8 = true;
  s.seed = test::fresh_seed();
  GradAccumulators acc(model, s);
  const int param = model.layer_params(0).q;
  const Param& p = model.params()[size_t(param)];
  std::mt19937_64 rng(s.seed);
  const std::vector<float> g = test::random_normal(size_t(p.numel()), rng);
  auto accumulated_at = [&](uint32_t step, uint32_t micro) {
    acc.set_step(step);
    acc.add(param, 0, p.rows, g.data(), true, micro);
    return acc.to_host(param);
  };
  const std::vector<float> first = accumulated_at(0, 0);
  CHECK(accumulated_at(0, 0) == first);  // a pure function of the key
  CHECK(accumulated_at(65536, 0) != first);
  CHECK(accumulated_at(1, 0) != accumulated_at(0, 65536));
}

TEST_CASE("the rounding streams are uniform and independent across columns, rows and steps; rounding is unbiased",
          "[quant]") {
  const uint64_t seed = test::fresh_seed();
  INFO("seed " << seed);
  const int rows = 64, cols = 4096;
  const double n = double(rows) * cols;
  std::vector<double> u(size_t(rows * cols)), next_step(u.size());
  for (int r = 0; r < rows; ++r) {
    const RowRandom now({seed, 7, 3, true}, uint64_t(r)), later({seed, 8, 3, true}, uint64_t(r));
    for (int c = 0; c < cols; ++c) {
      u[size_t(r * cols + c)] = now.uniform(uint32_t(c));
      next_step[size_t(r * cols + c)] = later.uniform(uint32_t(c));
    }
  }
  double mean = 0, var = 0;
  std::vector<double> bins(16, 0.0);
  int64_t outside = 0;
  for (double x : u) {
    outside += !(x >= 0.0 && x < 1.0);
    mean += x / n;
    bins[size_t(std::clamp(x, 0.0, 0.999) * 16)] += 1;
  }
  REQUIRE(outside == 0);
  for (double x : u) var += (x - mean) * (x - mean) / n;
  CHECK(std::fabs(mean - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
  CHECK(var == Approx(1.0 / 12).epsilon(0.01));
  double chi2 = 0;
  for (double b : bins) chi2 += (b - n / 16) * (b - n / 16) / (n / 16);
  CHECK(chi2 < 60);  // 15 degrees of freedom: p < 1e-6 beyond 60
  // Correlation with the next column, the next row and the next step: about 0, within 5 standard errors.
  auto correlation = [&](auto pair) {
    double s = 0, count = 0;
    for (int r = 0; r + 1 < rows; ++r)
      for (int c = 0; c + 1 < cols; ++c, count += 1) s += (u[size_t(r * cols + c)] - 0.5) * (pair(r, c) - 0.5);
    return std::make_pair(s / count * 12, 5 / std::sqrt(count));
  };
  for (const auto& [rho, bound] : {correlation([&](int r, int c) { return u[size_t(r * cols + c + 1)]; }),
                                   correlation([&](int r, int c) { return u[size_t((r + 1) * cols + c)]; }),
                                   correlation([&](int r, int c) { return next_step[size_t(r * cols + c)]; })}) {
    CHECK(std::fabs(rho) < bound);
  }

  // Stochastic rounding is unbiased over a row's columns; nearest rounds halves up; both clamp to [-127, 127].
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> value(-126.0f, 126.0f);
  const RowRandom stochastic({seed, 1, 2, true}, 5), nearest({seed, 1, 2, false}, 5);
  for (int t = 0; t < 20; ++t) {
    const float v = value(rng);
    double sum = 0;
    for (int c = 0; c < cols; ++c) sum += stochastic.round(v, uint32_t(c));
    const double frac = double(v) - std::floor(double(v));
    INFO("v " << v);
    CHECK(std::fabs(sum / cols - double(v)) < 5 * std::sqrt(frac * (1 - frac) / cols) + 1e-4);
    CHECK(nearest.round(v, 0) == int8_t(std::floor(double(v) + 0.5)));
  }
  CHECK(nearest.round(2.5f, 0) == 3);
  CHECK(nearest.round(-2.5f, 0) == -2);
  for (const RowRandom& r : {stochastic, nearest}) {
    CHECK(r.round(1e9f, 0) == 127);
    CHECK(r.round(-1e9f, 0) == -127);
    CHECK(r.round(NAN, 0) == -127);
  }
}
