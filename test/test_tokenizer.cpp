#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/tokenizer.h"
#include "test/helpers.h"

using namespace qft;
namespace fs = std::filesystem;

TEST_CASE("sentencepiece encoding matches the Python sentencepiece ids", "[tokenizer]") {
  Tokenizer tok(test::fixture("gqa_tied"));
  auto cases = nlohmann::json::parse(test::read_file(test::fixture("tokenizer_cases.json")));
  REQUIRE(cases.size() >= 5);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    INFO("text: " << text);
    const auto want = c["ids"].get<std::vector<int32_t>>();
    REQUIRE(tok.encode_raw(text) == want);
    if (text.find_first_of(" \t\n") != 0) REQUIRE(tok.decode(want) == text);  // sentencepiece drops a leading space
  }
}

TEST_CASE("BOS and EOS follow tokenizer_config.json", "[tokenizer]") {
  Tokenizer tok(test::fixture("gqa_tied"));
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  CHECK(tok.vocab_size() == 500);
  auto ids = tok.encode("Hello world");
  REQUIRE(ids.front() == 1);
  REQUIRE(ids.back() != 2);

  test::TempDir tmp;
  const std::string dir = tmp / "t";
  test::copy_dir(test::fixture("gqa_tied"), dir);
  test::write_file(dir + "/tokenizer_config.json", R"({"add_bos_token": false, "add_eos_token": true})");
  Tokenizer t2(dir);
  auto ids2 = t2.encode("Hello world");
  REQUIRE(ids2.front() != 1);
  REQUIRE(ids2.back() == 2);
  test::write_file(dir + "/tokenizer_config.json", R"({"add_bos_token": "yes"})");
  REQUIRE_THROWS_WITH(Tokenizer(dir), Catch::Contains("tokenizer_config.json") && Catch::Contains("add_bos_token"));
}

TEST_CASE("a missing, unsupported or corrupt tokenizer is reported by file", "[tokenizer][bad-input]") {
  test::TempDir tmp;
  REQUIRE_THROWS_WITH(Tokenizer(tmp.path().string()), Catch::Contains("tokenizer.model") && Catch::Contains("no tokenizer found"));
  test::write_file(tmp / "tokenizer.model", "garbage bytes that are not a protobuf");
  REQUIRE_THROWS_WITH(Tokenizer(tmp.path().string()), Catch::Contains("tokenizer.model") && Catch::Contains("sentencepiece"));
}
