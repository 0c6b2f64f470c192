#include <catch2/catch.hpp>
#include <cmath>

#include "core/error.h"
#include "model/llama_config.h"
#include "test/helpers.h"

using namespace qft;

namespace {

const std::string kLlama3 = R"({
  "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "vocab_size": 128256, "tie_word_embeddings": false, "max_position_embeddings": 131072,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})";

}  // namespace

TEST_CASE("a LLaMA-3.1-8B config.json in the classic layout parses", "[config]") {
  LlamaConfig c = parse_llama_config(kLlama3, "config.json");
  CHECK(c.head_dim == 128);
  CHECK(c.num_key_value_heads == 8);
  CHECK(c.rope_scaling.type == "llama3");
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.eos_token_id == 128001);
  CHECK(c.bos_token_id == 128000);
  CHECK(c.parameter_count() == 8030261248LL);  // the published size of Llama-3.1-8B
}

TEST_CASE("LLaMA-2-7B has 6.74 B parameters", "[config]") {
  LlamaConfig c = parse_llama_config(R"({"hidden_size":4096,"intermediate_size":11008,"num_hidden_layers":32,
      "num_attention_heads":32,"vocab_size":32000,"rms_norm_eps":1e-5})", "config.json");
  CHECK(c.num_key_value_heads == 32);
  CHECK(c.parameter_count() == 6738415616LL);
}

TEST_CASE("llama3 rope scaling follows the published formula", "[config]") {
  LlamaConfig c = parse_llama_config(kLlama3, "config.json");
  auto inv = c.rope_inv_freq();
  REQUIRE(inv.size() == 64);
  for (int i = 0; i < 64; ++i) {
    const double base = 1.0 / std::pow(500000.0, 2.0 * i / 128.0), wavelen = 2 * M_PI / base;
    double want = base;
    if (wavelen > 8192.0) want = base / 8.0;
    else if (wavelen >= 2048.0) {
      const double s = (8192.0 / wavelen - 1.0) / 3.0;
      want = (1 - s) * base / 8.0 + s * base;
    }
    INFO("i = " << i);
    REQUIRE(std::fabs(inv[i] - want) <= 1e-6 * want);
  }
}

TEST_CASE("bad config.json files name the key", "[config][bad-input]") {
  auto fails = [](const std::string& text, const std::string& msg) {
    INFO(text);
    REQUIRE_THROWS_WITH(parse_llama_config(text, "dir/config.json"),
                        Catch::Contains("dir/config.json") && Catch::Contains(msg));
  };
  const std::string base = R"("hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100)";
  fails("{" + base, "invalid JSON");
  fails("[]", "JSON object");
  fails(R"({"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100})", "'hidden_size': is required");
  fails(R"({"hidden_size":"64","intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100})", "hidden_size");
  fails("{" + base + R"(,"num_key_value_heads":3})", "num_key_value_heads");
  fails("{" + base + R"(,"rope_scaling":{"type":"yarn","factor":4}})", "unsupported");
  fails("{" + base + R"(,"rope_parameters":{"rope_type":"dynamic","rope_theta":10000}})", "'dynamic' is unsupported");
  fails("{" + base + R"(,"model_type":"gpt2"})", "model_type");
  fails(R"({"hidden_size":-64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100})",
        "must be an integer in [1, 131072], got -64");
  // Issue 15: values beyond int were read modulo 2^32 (4294967424 became 128); absurd sizes overflowed the
  // parameter count; an ill-typed rope_parameters was ignored; a fractional or negative token id passed.
  const std::string small = R"("intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100)";
  fails(R"({"hidden_size":4294967424,)" + small + "}", "'hidden_size': must be an integer in [1, 131072], got 4294967424");
  fails(R"({"hidden_size":1000000000,)" + small + "}", "'hidden_size': must be an integer in [1, 131072]");
  fails(R"({"hidden_size":64.5,)" + small + "}", "'hidden_size'");
  fails("{" + base + R"(,"num_hidden_layers":1000000})", "appears twice");  // duplicates are refused before sizes
  fails(R"({"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1000000,"num_attention_heads":4,"vocab_size":100})",
        "'num_hidden_layers': must be an integer in [1, 4096]");
  fails(R"({"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":2147483647})",
        "'vocab_size': must be an integer in [1, 4194304]");
  fails("{" + base + R"(,"rope_parameters":"llama3"})", "'rope_parameters': must be an object or null");
  fails("{" + base + R"(,"bos_token_id":-1})", "'bos_token_id'");
  fails("{" + base + R"(,"eos_token_id":[2.5]})", "'eos_token_id'");
  fails("{" + base + R"(,"max_position_embeddings":1e9})", "'max_position_embeddings'");
  fails("{" + base + R"(,"hidden_size":64})", "\"hidden_size\" appears twice");  // a repeated key is refused
  fails("{" + base + R"(,"head_dim":7})", "head_dim");
  fails("{" + base + R"(,"attention_bias":true})", "attention_bias");
}

TEST_CASE("the transformers-5 rope_parameters layout parses", "[config]") {
  LlamaConfig c = load_llama_config(test::fixture("gqa_tied/config.json"));
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.rope_scaling.type == "llama3");
  CHECK(c.rope_scaling.original_max_position_embeddings == 16);
  CHECK(c.tie_word_embeddings);
  LlamaConfig a = load_llama_config(test::fixture("awkward/config.json"));
  CHECK(a.head_dim == 16);
  CHECK(a.q_dim() == 64);
  CHECK(a.hidden_size == 72);
}
