#include <catch2/catch.hpp>
#include <cstring>

#include "core/error.h"
#include "model/safetensors.h"
#include "test/helpers.h"

using namespace qft;

namespace {

// A raw safetensors file: 8-byte length, the given header text, then `data_bytes` bytes of data.
std::string raw_file(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = char(n >> (8 * i));
  return out + header + std::string(data_bytes, '\x01');
}

void expect_rejected(const std::string& bytes, const std::string& message) {
  test::TempDir tmp;
  const std::string path = tmp / "bad.safetensors";
  test::write_file(path, bytes);
  INFO("expected message: " << message);
  REQUIRE_THROWS_MATCHES(SafeTensorsFile(path), FileError,
                         Catch::Matchers::Predicate<FileError>([&](const FileError& e) {
                           const std::string w = e.what();
                           return w.find(path) != std::string::npos && w.find(message) != std::string::npos;
                         }));
}

}  // namespace

TEST_CASE("safetensors write/read round trip keeps dtypes, shapes, bytes and metadata", "[safetensors]") {
  std::mt19937_64 rng(test::fresh_seed());
  test::TempDir tmp;
  HostTensor a(DType::F32, {3, 5}), b(DType::BF16, {7}), c(DType::I32, {2, 2, 2}), e(DType::F16, {0, 4});
  auto va = test::random_normal(15, rng);
  std::memcpy(a.data<float>(), va.data(), 60);
  for (int i = 0; i < 7; ++i) b.data<uint16_t>()[i] = f32_to_bf16(va[i]);
  for (int i = 0; i < 8; ++i) c.data<int32_t>()[i] = int32_t(rng());
  const std::string path = tmp / "x.safetensors";
  write_safetensors(path, {{"a", &a}, {"b", &b}, {"c", &c}, {"empty", &e}}, {{"format", "pt"}});

  SafeTensorsFile f(path);
  REQUIRE(f.tensors().size() == 4);
  REQUIRE(f.metadata().at("format") == "pt");
  for (auto [name, t] : std::vector<NamedTensor>{{"a", &a}, {"b", &b}, {"c", &c}, {"empty", &e}}) {
    HostTensor r = f.read(name);
    REQUIRE(r.dtype == t->dtype);
    REQUIRE(r.shape == t->shape);
    REQUIRE(r.bytes == t->bytes);
  }
  auto bf = f.read_f32("b");
  for (int i = 0; i < 7; ++i) REQUIRE(bf[i] == bf16_to_f32(f32_to_bf16(va[i])));
  REQUIRE_THROWS_AS(f.read("nope"), TensorError);
  REQUIRE_THROWS_AS(f.read_f32("c"), TensorError);  // integers are not floats
}

// An empty tensor starts where the next one does (a rank's share of a tensor may be empty): it overlaps nothing,
// in whatever order a sort of many offsets leaves the two.
TEST_CASE("empty tensors among many others are read back", "[safetensors]") {
  std::mt19937_64 rng(test::fresh_seed());
  test::TempDir tmp;
  std::vector<HostTensor> tensors;
  tensors.reserve(64);
  std::vector<NamedTensor> named;
  for (int i = 0; i < 64; ++i) {
    tensors.emplace_back(DType::F32, Shape{i % 2 ? 0 : int64_t(1 + rng() % 5)});
    for (int64_t k = 0; k < tensors.back().numel(); ++k) tensors.back().data<float>()[k] = float(rng() % 1000);
    named.emplace_back("t" + std::to_string(1000 - i), &tensors.back());  // names sort against the data's order
  }
  const std::string path = tmp / "x.safetensors";
  write_safetensors(path, named);
  const SafeTensorsFile f(path);
  REQUIRE(f.tensors().size() == named.size());
  for (const auto& [name, t] : named) CHECK(f.read(name).bytes == t->bytes);
}

TEST_CASE("corrupt safetensors files are rejected with a message naming the file", "[safetensors][bad-input]") {
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  SECTION("too short") { expect_rejected("abc", "too short"); }
  SECTION("header length beyond the file") {
    std::string f = raw_file("{" + ok_entry + "}", 8);
    f[0] = char(0xff);
    f[1] = char(0xff);
    expect_rejected(f, "header length");
  }
  SECTION("truncated data section") { expect_rejected(raw_file("{" + ok_entry + "}", 4), "outside the data section"); }
  SECTION("bad JSON") { expect_rejected(raw_file("{\"w\": [1, 2", 0), "invalid JSON"); }
  SECTION("header not an object") { expect_rejected(raw_file("[1,2]", 0), "not a JSON object"); }
  SECTION("unknown dtype") {
    expect_rejected(raw_file(R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype");
  }
  SECTION("shape does not match the byte range") {
    expect_rejected(raw_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12 bytes");
  }
  SECTION("huge shape cannot overflow the check") {
    expect_rejected(raw_file(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", 8),
                    "needs");
  }
  SECTION("negative offset") {
    expect_rejected(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8), "non-negative");
  }
  SECTION("begin after end") {
    expect_rejected(raw_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8), "outside the data section");
  }
  SECTION("overlapping tensors") {
    expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                    "overlap");
  }
  SECTION("missing fields") { expect_rejected(raw_file(R"({"w":{"dtype":"F32"}})", 0), "needs dtype, shape"); }
  SECTION("metadata must hold strings") {
    expect_rejected(raw_file(R"({"__metadata__":{"n":1},)" + ok_entry + "}", 8), "__metadata__");
  }
}

TEST_CASE("a missing safetensors file is reported by path", "[safetensors][bad-input]") {
  REQUIRE_THROWS_WITH(SafeTensorsFile("/nonexistent/model.safetensors"), Catch::Contains("/nonexistent/model.safetensors"));
}
