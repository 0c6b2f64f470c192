// Attention without (T, T) storage against an fp64 reference: the forward's output and logsumexp and every
// gradient, causal, GQA and packed documents, for the CPU's tiled attention and for the composed reference in
// its largest and smallest blocks. Shapes span several 64-row tiles with a partial last one.
#include <catch2/catch.hpp>
#include <cmath>

#include "cpu/cpu_backend.h"
#include "test/helpers.h"

using namespace qft;

namespace {

struct AttnShape {
  int B, T, H, KVH, D;
  size_t nq() const { return size_t(B) * T * H * D; }
  size_t nkv() const { return size_t(B) * T * KVH * D; }
};

struct Grads {
  std::vector<float> out, lse, dq, dk, dv;
};

// Every quantity in double, straight from the definition; doc (B, T) or empty.
Grads reference(const AttnShape& s, const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                const std::vector<float>& dout, const std::vector<int32_t>& doc) {
  const int B = s.B, T = s.T, H = s.H, KVH = s.KVH, D = s.D;
  const double scale = 1.0 / std::sqrt(double(D));
  Grads g{std::vector<float>(s.nq()), std::vector<float>(size_t(B) * H * T), std::vector<float>(s.nq()),
          std::vector<float>(s.nkv()), std::vector<float>(s.nkv())};
  std::vector<double> dk(s.nkv(), 0.0), dv(s.nkv(), 0.0);
  auto qi = [&](int b, int t, int h) { return (size_t(b * T + t) * H + h) * D; };
  auto ki = [&](int b, int t, int h) { return (size_t(b * T + t) * KVH + h) * D; };
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t) {
        const int lo = doc.empty() ? 0 : doc[size_t(b * T + t)], kh = h / (H / KVH);
        std::vector<double> p(size_t(T), 0.0), dp(size_t(T), 0.0);
        double m = -1e300, sum = 0;
        for (int j = lo; j <= t; ++j) {
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += double(q[qi(b, t, h) + d]) * k[ki(b, j, kh) + d];
          p[size_t(j)] = dot * scale;
          m = std::max(m, p[size_t(j)]);
        }
        for (int j = lo; j <= t; ++j) sum += (p[size_t(j)] = std::exp(p[size_t(j)] - m));
        g.lse[(size_t(b) * H + h) * T + t] = float(m + std::log(sum));
        double pdp = 0;
        for (int j = lo; j <= t; ++j) {
          p[size_t(j)] /= sum;
          for (int d = 0; d < D; ++d) dp[size_t(j)] += double(dout[qi(b, t, h) + d]) * v[ki(b, j, kh) + d];
          pdp += p[size_t(j)] * dp[size_t(j)];
        }
        for (int d = 0; d < D; ++d) {
          double o = 0, dqd = 0;
          for (int j = lo; j <= t; ++j) {
            const double ds = p[size_t(j)] * (dp[size_t(j)] - pdp) * scale;
            o += p[size_t(j)] * v[ki(b, j, kh) + d];
            dqd += ds * k[ki(b, j, kh) + d];
            dk[ki(b, j, kh) + d] += ds * q[qi(b, t, h) + d];
            dv[ki(b, j, kh) + d] += p[size_t(j)] * dout[qi(b, t, h) + d];
          }
          g.out[qi(b, t, h) + d] = float(o);
          g.dq[qi(b, t, h) + d] = float(dqd);
        }
      }
  for (size_t i = 0; i < dk.size(); ++i) g.dk[i] = float(dk[i]), g.dv[i] = float(dv[i]);
  return g;
}

Grads run(Backend& be, const AttnShape& s, const std::vector<float>& q, const std::vector<float>& k,
          const std::vector<float>& v, const std::vector<float>& dout, const std::vector<int32_t>& doc) {
  Grads g{std::vector<float>(s.nq(), NAN), std::vector<float>(size_t(s.B) * s.H * s.T, NAN),
          std::vector<float>(s.nq(), NAN), std::vector<float>(s.nkv(), NAN), std::vector<float>(s.nkv(), NAN)};
  const int32_t* d = doc.empty() ? nullptr : doc.data();
  be.attention_forward({g.out.data(), g.lse.data(), q.data(), k.data(), v.data(), d, {}, s.B, s.T, s.H, s.KVH, s.D});
  be.attention_backward({g.dq.data(), g.dk.data(), g.dv.data(), dout.data(), g.out.data(), g.lse.data(), q.data(),
                         k.data(), v.data(), d, {}, s.B, s.T, s.H, s.KVH, s.D});
  return g;
}

void require_close(const Grads& got, const Grads& ref) {
  CHECK(test::max_rel_error(got.out, ref.out) < 1e-5);
  CHECK(test::max_rel_error(got.lse, ref.lse) < 1e-6);
  CHECK(test::max_rel_error(got.dq, ref.dq) < 2e-5);
  CHECK(test::max_rel_error(got.dk, ref.dk) < 2e-5);
  CHECK(test::max_rel_error(got.dv, ref.dv) < 2e-5);
}

}  // namespace

TEST_CASE("attention's forward and every gradient match fp64, tiled and composed, causal, GQA and packed",
          "[attention]") {
  const uint64_t seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (const AttnShape s : {AttnShape{2, 150, 6, 2, 16}, AttnShape{1, 70, 4, 4, 8}}) {
    const auto q = test::random_normal(s.nq(), rng), k = test::random_normal(s.nkv(), rng),
               v = test::random_normal(s.nkv(), rng), dout = test::random_normal(s.nq(), rng);
    // Row 0 packs documents [0, 37), [37, 100) and [100, T); row 1 (if any) is one document.
    std::vector<int32_t> doc(size_t(s.B) * s.T, 0);
    for (int t = 0; t < s.T; ++t) doc[size_t(t)] = t < 37 ? 0 : t < 100 ? 37 : 100;
    for (bool packed : {false, true}) {
      const std::vector<int32_t> d = packed ? doc : std::vector<int32_t>{};
      const Grads ref = reference(s, q, k, v, dout, d);
      INFO("T " << s.T << ", H " << s.H << ", KVH " << s.KVH << ", packed " << packed);
      {
        INFO("CPU tiled");
        CpuBackend be;
        require_close(run(be, s, q, k, v, dout, d), ref);
      }
      for (size_t budget : {size_t(64) << 20, size_t(1)}) {
        INFO("composed, scores budget " << budget);
        CpuReference be;
        be.attention_scores_bytes = budget;
        require_close(run(be, s, q, k, v, dout, d), ref);
      }
    }
  }
}

TEST_CASE("attention's scratch grows linearly with the sequence, tiled and composed", "[attention]") {
  std::mt19937_64 rng(test::fresh_seed());
  // Peak tracked bytes of one forward and backward beyond the inputs, at T and 4T.
  auto scratch_at = [&](Backend& be, int T) {
    const AttnShape s{1, T, 4, 2, 16};
    const auto q = test::random_normal(s.nq(), rng), k = test::random_normal(s.nkv(), rng),
               v = test::random_normal(s.nkv(), rng), dout = test::random_normal(s.nq(), rng);
    const size_t before = be.memory().peak_bytes;
    run(be, s, q, k, v, dout, {});
    return be.memory().peak_bytes - before;
  };
  for (bool tiled : {true, false}) {
    INFO((tiled ? "tiled" : "composed"));
    std::unique_ptr<Backend> a, b;
    if (tiled) {
      a = std::make_unique<CpuBackend>();
      b = std::make_unique<CpuBackend>();
    } else {
      a = std::make_unique<CpuReference>();
      b = std::make_unique<CpuReference>();
      a->attention_scores_bytes = b->attention_scores_bytes = 1 << 16;
    }
    const size_t small = scratch_at(*a, 512), large = scratch_at(*b, 2048);
    CHECK(small > 0);
    CHECK(large <= 4 * small + 4096);
  }
}

// On a GPU with cuDNN, attention is cuDNN's fused SDPA for bf16 (packed documents as variable-length sequences);
// a GPU machine where it does not load fails here rather than testing the fallback twice.
TEST_CASE("cuda: cuDNN's fused attention matches fp64, forward and every gradient, GQA and packed documents",
          "[cuda][attention]") {
  auto gpu = test::gpu_or_skip(DType::BF16);
  if (!gpu) return;
  Backend& be = *gpu;
  INFO(be.attention_implementation());
  REQUIRE(be.attention_implementation().rfind("cuDNN", 0) == 0);
  const uint64_t seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const AttnShape s{2, 150, 8, 2, 64};
  const auto q = test::bf16_rounded(test::random_normal(s.nq(), rng)), k = test::bf16_rounded(test::random_normal(s.nkv(), rng)),
             v = test::bf16_rounded(test::random_normal(s.nkv(), rng)), dout = test::bf16_rounded(test::random_normal(s.nq(), rng));
  std::vector<int32_t> doc(size_t(s.B) * s.T, 0);
  for (int t = 0; t < s.T; ++t) doc[size_t(t)] = t < 37 ? 0 : t < 100 ? 37 : 100;  // row 0: three documents
  const std::vector<int32_t> span_start{0, 37, 100, s.T, 2 * s.T};                 // and row 1 one
  std::vector<Buffer> keep;
  auto upload = [&](const void* host, size_t bytes) {
    keep.push_back(be.alloc(bytes, "test"));
    be.copy_to_device(keep.back().get(), host, bytes);
    return keep.back().get();
  };
  auto act = [&](const std::vector<float>& host) {
    const std::vector<bf16> b = test::to_bf16(host);
    return Act{upload(b.data(), b.size() * 2), DType::BF16};
  };
  for (bool packed : {false, true}) {
    INFO("packed " << packed);
    const std::vector<int32_t> d = packed ? doc : std::vector<int32_t>{};
    const Grads ref = reference(s, q, k, v, dout, d);
    const int32_t* doc_dev = packed ? static_cast<const int32_t*>(upload(doc.data(), doc.size() * 4)) : nullptr;
    DocumentSpans spans;
    if (packed) spans = {static_cast<const int32_t*>(upload(span_start.data(), span_start.size() * 4)), 4, 100};
    const Act qd = act(q), kd = act(k), vd = act(v), dd = act(dout);
    Buffer out = be.alloc_act(int64_t(s.nq()), "test"), dq = be.alloc_act(int64_t(s.nq()), "test");
    Buffer dk = be.alloc_act(int64_t(s.nkv()), "test"), dv = be.alloc_act(int64_t(s.nkv()), "test");
    Buffer lse = be.alloc(size_t(be.attention_stats_elems(s.B, s.T, s.H, spans)) * 4, "test");
    be.attention_forward({out.act(), lse.f32(), qd, kd, vd, doc_dev, spans, s.B, s.T, s.H, s.KVH, s.D});
    be.attention_backward({dq.act(), dk.act(), dv.act(), dd, out.act(), lse.f32(), qd, kd, vd, doc_dev, spans, s.B, s.T,
                           s.H, s.KVH, s.D});
    CHECK(be.take_notes().empty());  // no fallback
    const double tol = 2e-2;  // bf16 probabilities and outputs, as the composed bf16 attention's test allows
    CHECK(test::max_rel_error(be.read_f32(out.act(), int64_t(s.nq())), ref.out) < tol);
    CHECK(test::max_rel_error(be.read_f32(dq.act(), int64_t(s.nq())), ref.dq) < tol);
    CHECK(test::max_rel_error(be.read_f32(dk.act(), int64_t(s.nkv())), ref.dk) < tol);
    CHECK(test::max_rel_error(be.read_f32(dv.act(), int64_t(s.nkv())), ref.dv) < tol);
  }
}
