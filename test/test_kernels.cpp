// The shared functors against fp64 references, on the CPU backend, with fresh random inputs.
#include <catch2/catch.hpp>
#include <array>
#include <cmath>

#include "cpu/cpu_backend.h"
#include "ops/kernels.h"
#include "test/helpers.h"

using namespace qft;

TEST_CASE("rmsnorm_forward matches an fp64 reference", "[kernels]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  const int N = 7, C = 67;
  auto x = test::random_normal(N * C, rng, 2.0f), w = test::random_normal(C, rng);
  std::vector<float> y(N * C), rstd(N);
  be.rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
  std::vector<float> ref(N * C);
  for (int r = 0; r < N; ++r) {
    double ss = 0;
    for (int i = 0; i < C; ++i) ss += double(x[r * C + i]) * x[r * C + i];
    const double inv = 1.0 / std::sqrt(ss / C + 1e-5);
    REQUIRE(std::fabs(rstd[r] - inv) <= 1e-6 * inv);
    for (int i = 0; i < C; ++i) ref[r * C + i] = float(w[i] * x[r * C + i] * inv);
  }
  REQUIRE(test::max_rel_error(y, ref) < 1e-6);
}

TEST_CASE("attention_forward matches an fp64 causal GQA reference, with and without document masks", "[kernels]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  const int B = 2, T = 9, H = 4, KVH = 2, D = 6;
  auto q = test::random_normal(B * T * H * D, rng), k = test::random_normal(B * T * KVH * D, rng),
       v = test::random_normal(B * T * KVH * D, rng);
  std::vector<int32_t> doc_start(B * T);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) doc_start[b * T + t] = b == 1 && t >= 4 ? 4 : 0;  // row 1 packs two documents
  for (bool packed : {false, true}) {
    std::vector<float> out(B * T * H * D), lse(B * H * T);
    be.attention_forward({out.data(), lse.data(), q.data(), k.data(), v.data(), packed ? doc_start.data() : nullptr, {},
                          B, T, H, KVH, D});
    std::vector<float> ref(out.size());
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) {
          const int lo = packed ? doc_start[b * T + t] : 0, kh = h / (H / KVH);
          std::vector<double> p(T, 0.0);
          double m = -1e300, sum = 0;
          for (int j = lo; j <= t; ++j) {
            double s = 0;
            for (int d = 0; d < D; ++d) s += double(q[((b * T + t) * H + h) * D + d]) * k[((b * T + j) * KVH + kh) * D + d];
            p[j] = s / std::sqrt(double(D));
            m = std::max(m, p[j]);
          }
          for (int j = lo; j <= t; ++j) sum += (p[j] = std::exp(p[j] - m));
          for (int d = 0; d < D; ++d) {
            double o = 0;
            for (int j = lo; j <= t; ++j) o += p[j] / sum * v[((b * T + j) * KVH + kh) * D + d];
            ref[((b * T + t) * H + h) * D + d] = float(o);
          }
        }
    INFO("packed = " << packed);
    REQUIRE(test::max_rel_error(out, ref) < 1e-5);
  }
}

TEST_CASE("cross_entropy_forward matches an fp64 logsumexp and ignores -100", "[kernels]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  const int N = 6, V = 301;
  auto z = test::random_normal(N * V, rng, 4.0f);
  std::vector<int32_t> tgt{5, 300, kIgnoreIndex, 0, 17, 150};
  std::vector<float> loss(N);
  be.cross_entropy_forward(loss.data(), nullptr, z.data(), tgt.data(), N, V);
  for (int r = 0; r < N; ++r) {
    if (tgt[r] == kIgnoreIndex) {
      REQUIRE(loss[r] == 0.0f);
      continue;
    }
    double m = -1e300, s = 0;
    for (int i = 0; i < V; ++i) m = std::max(m, double(z[r * V + i]));
    for (int i = 0; i < V; ++i) s += std::exp(z[r * V + i] - m);
    const double ref = m + std::log(s) - z[r * V + tgt[r]];
    REQUIRE(std::fabs(loss[r] - ref) <= 2e-5 * std::max(1.0, ref));
  }
}

TEST_CASE("rope rotates half-split pairs by pos * inv_freq", "[kernels]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  const int N = 5, H = 3, D = 8;
  auto x = test::random_normal(N * H * D, rng);
  const std::vector<float> inv{1.0f, 0.3f, 0.05f, 0.001f};
  const std::vector<int32_t> pos{0, 1, 7, 100, 3};
  auto y = x;
  be.rope(y.data(), pos.data(), inv.data(), N, H, D, false);
  std::vector<float> ref(x.size());
  for (int n = 0; n < N; ++n)
    for (int h = 0; h < H; ++h)
      for (int d = 0; d < D / 2; ++d) {
        const double a = double(pos[n]) * inv[d], x1 = x[(n * H + h) * D + d], x2 = x[(n * H + h) * D + d + D / 2];
        ref[(n * H + h) * D + d] = float(x1 * std::cos(a) - x2 * std::sin(a));
        ref[(n * H + h) * D + d + D / 2] = float(x2 * std::cos(a) + x1 * std::sin(a));
      }
  REQUIRE(test::max_rel_error(y, ref) < 1e-5);
}

TEST_CASE("swiglu, embedding, residual and matmul match references", "[kernels]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  const int N = 4, I = 33, C = 10, V = 13;
  auto g = test::random_normal(N * I, rng, 3.0f), u = test::random_normal(N * I, rng);
  std::vector<float> h(N * I), ref(N * I);
  be.swiglu_forward(h.data(), g.data(), u.data(), N * I);
  for (int i = 0; i < N * I; ++i) ref[i] = float(g[i] / (1.0 + std::exp(-double(g[i]))) * u[i]);
  REQUIRE(test::max_rel_error(h, ref) < 1e-6);

  auto table = test::random_normal(V * C, rng);
  std::vector<int32_t> tok{12, 0, 5, 5};
  std::vector<float> e(N * C);
  be.embedding_forward(e.data(), tok.data(), table.data(), N, C);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) REQUIRE(e[n * C + c] == table[tok[n] * C + c]);

  auto y = test::random_normal(N * C, rng), x = e;
  be.residual_add(x.data(), y.data(), N * C);
  for (int i = 0; i < N * C; ++i) REQUIRE(x[i] == e[i] + y[i]);

  auto w = test::random_normal(I * C, rng);  // (O=I, C)
  std::vector<float> out(N * I), mref(N * I);
  be.matmul_forward(out.data(), e.data(), w.data(), N, C, I);
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < I; ++o) {
      double s = 0;
      for (int c = 0; c < C; ++c) s += double(e[n * C + c]) * w[o * C + c];
      mref[n * I + o] = float(s);
    }
  REQUIRE(test::max_rel_error(out, mref) < 1e-6);
}

TEST_CASE("the backend allocator tracks current and peak bytes", "[kernels]") {
  CpuBackend be;
  {
    Buffer a = be.alloc(1000);
    {
      Buffer b = be.alloc(3000);
      REQUIRE(be.memory().current_bytes == 4000);
    }
    REQUIRE(be.memory().current_bytes == 1000);
    Buffer c = std::move(a);
    REQUIRE(be.memory().current_bytes == 1000);
  }
  REQUIRE(be.memory().current_bytes == 0);
  REQUIRE(be.memory().peak_bytes == 4000);
  REQUIRE(be.memory().allocations == 2);
}

// The embedding gradient by token groups adds exactly what a walk over the positions in order adds, bit for bit.
TEST_CASE("embedding_backward by token groups equals adding every position in order", "[kernels]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  const int N = 300, C = 24, V = 50, v0 = 10, rows = 30;
  std::vector<int32_t> tokens = test::random_ids(N, V, rng);  // many repeats
  tokens[0] = v0;
  tokens[1] = v0 + rows - 1;
  tokens[2] = v0 + rows;  // just outside
  const auto dout = test::random_normal(size_t(N) * C, rng);
  const auto init = test::random_normal(size_t(rows) * C, rng);
  std::vector<float> want = init, got = init;
  for (int n = 0; n < N; ++n) {
    const int v = tokens[size_t(n)] - v0;
    if (v < 0 || v >= rows) continue;
    for (int c = 0; c < C; ++c) want[size_t(v * C + c)] += dout[size_t(n * C + c)];
  }
  const TokenGroups g = TokenGroups::of(tokens);
  REQUIRE(g.start.back() == N);
  for (int k = 1; k < g.groups(); ++k) REQUIRE(g.token[size_t(k - 1)] < g.token[size_t(k)]);
  be.embedding_backward(got.data(), dout.data(), test::host_view(g, v0, rows), C, v0);
  REQUIRE(got == want);
}


TEST_CASE("GEMMs too few rows to share split by columns and match an fp64 reference (decoding)", "[kernels]") {
  std::mt19937_64 rng(test::fresh_seed());
  CpuBackend be;
  // One token row against a vocabulary-sized head: far above the size where the GEMM is shared among threads.
  for (int N : {1, 3}) {
    const int C = 96, O = 4099;  // an odd column count: the parts are unequal
    const auto x = test::random_normal(size_t(N) * C, rng), w = test::random_normal(size_t(O) * C, rng);
    std::vector<float> out(size_t(N) * O, NAN), ref(size_t(N) * O), dx(size_t(N) * C, NAN), dx_ref(size_t(N) * C);
    be.matmul_forward(out.data(), x.data(), w.data(), N, C, O);
    const auto dout = test::random_normal(size_t(N) * O, rng);
    be.matmul_backward_input(dx.data(), dout.data(), w.data(), N, C, O, false, C);
    for (int n = 0; n < N; ++n) {
      for (int o = 0; o < O; ++o) {
        double s = 0;
        for (int c = 0; c < C; ++c) s += double(x[size_t(n * C + c)]) * w[size_t(o) * C + c];
        ref[size_t(n) * O + o] = float(s);
      }
      for (int c = 0; c < C; ++c) {
        double s = 0;
        for (int o = 0; o < O; ++o) s += double(dout[size_t(n) * O + o]) * w[size_t(o) * C + c];
        dx_ref[size_t(n * C + c)] = float(s);
      }
    }
    INFO("N = " << N);
    REQUIRE(test::max_rel_error(out, ref) < 1e-5);
    REQUIRE(test::max_rel_error(dx, dx_ref) < 1e-5);
  }
}

TEST_CASE("exp_fast, attention's vectorizable exponential, is within 2 ulp of exp over the range it serves", "[kernels]") {
  std::mt19937_64 rng(test::fresh_seed());
  std::uniform_real_distribution<float> x(-87.0f, 88.0f);
  double worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const float v = i < 3 ? std::array<float, 3>{0.0f, -87.0f, 88.0f}[size_t(i)] : x(rng);
    const double want = std::exp(double(v));
    worst = std::max(worst, std::fabs(double(exp_fast(v)) - want) / want);
  }
  INFO("worst relative error " << worst);
  CHECK(worst < 2.5e-7);  // 2 ulp of fp32 (2^-22 = 2.4e-7)
  CHECK(exp_fast(-1000.0f) < 2e-38f);  // far below: the clamp, e^-87
  CHECK(exp_fast(-1000.0f) >= 0.0f);
}
