#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/dtype.h"
#include "test/helpers.h"

using namespace qft;

TEST_CASE("every fp16 and bf16 bit pattern survives a round trip through fp32", "[dtype]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f16 = f16_to_f32(uint16_t(h)), bf = bf16_to_f32(uint16_t(h));
    if (!std::isnan(f16)) REQUIRE(f32_to_f16(f16) == h);
    else REQUIRE(std::isnan(f16_to_f32(f32_to_f16(f16))));
    if (!std::isnan(bf)) REQUIRE(f32_to_bf16(bf) == h);
    else REQUIRE(std::isnan(bf16_to_f32(f32_to_bf16(bf))));
  }
}

TEST_CASE("fp32 to fp16/bf16 rounds to the nearest representable value", "[dtype]") {
  std::mt19937_64 rng(test::fresh_seed());
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-26, 15);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(mant(rng), ex(rng)) * (i % 2 ? -1.0f : 1.0f);
    INFO("x = " << x);
    const uint16_t b = f32_to_bf16(x);
    const double berr = std::fabs(double(bf16_to_f32(b)) - x);
    for (int d : {-1, 1}) REQUIRE(berr <= std::fabs(double(bf16_to_f32(uint16_t(b + d))) - x));
    const uint16_t h = f32_to_f16(x);
    if (std::fabs(x) >= 65520.0f) {  // IEEE: beyond the largest half plus half an ulp rounds to infinity
      REQUIRE(std::isinf(f16_to_f32(h)));
      continue;
    }
    const double err = std::fabs(double(f16_to_f32(h)) - x);
    // Neither neighbour of the chosen value may be strictly closer.
    for (int d : {-1, 1}) {
      const uint16_t n = uint16_t(h + d);
      const float nv = f16_to_f32(n);
      if (std::isfinite(nv) && ((n ^ h) & 0x8000u) == 0) REQUIRE(err <= std::fabs(double(nv) - x));
    }
  }
}

TEST_CASE("fp16 overflow and underflow", "[dtype]") {
  CHECK(f16_to_f32(f32_to_f16(65504.0f)) == 65504.0f);
  CHECK(std::isinf(f16_to_f32(f32_to_f16(65520.0f))));
  CHECK(f16_to_f32(f32_to_f16(std::ldexp(1.0f, -24))) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_to_f32(f32_to_f16(std::ldexp(1.0f, -26))) == 0.0f);
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
}

TEST_CASE("convert_to_f32 and convert_from_f32 agree with the scalar conversions", "[dtype]") {
  std::mt19937_64 rng(test::fresh_seed());
  auto x = test::random_normal(1000, rng, 3.0f);
  for (DType t : {DType::F16, DType::BF16, DType::F64, DType::F32}) {
    std::vector<uint8_t> buf(x.size() * dtype_size(t));
    convert_from_f32(t, x.data(), buf.data(), x.size());
    std::vector<float> back(x.size());
    convert_to_f32(t, buf.data(), back.data(), x.size());
    const double tol = t == DType::BF16 ? 1.0 / 256 : t == DType::F16 ? 1.0 / 2048 : 0.0;
    // Below 2^-14 fp16 is subnormal: its spacing is 2^-24 there, so the error bound is half of that, not relative
    // (about 1 run in 60 draws such a value).
    const double floor = t == DType::F16 ? std::ldexp(1.0, -25) : 0.0;
    for (size_t i = 0; i < x.size(); ++i) {
      INFO(dtype_name(t) << ": " << x[i] << " came back as " << back[i]);
      REQUIRE(std::fabs(back[i] - x[i]) <= std::max(tol * std::fabs(x[i]), floor));
    }
  }
  std::vector<float> out(1);
  int8_t q = 3;
  REQUIRE_THROWS_WITH(convert_to_f32(DType::I8, &q, out.data(), 1), Catch::Contains("I8"));
}
