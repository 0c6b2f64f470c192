// tokenizer.json and chat templates against the fixtures HF tokenizers and transformers wrote
// (scripts/make_tokenizer_fixtures.py): ids, BOS/EOS, decoding, and apply_chat_template's renderings.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "test/helpers.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "text/unicode.h"
#include "trainer/data.h"

using namespace qft;
using nlohmann::json;

namespace {

std::string tok_dir(const std::string& name) { return test::fixture("tokenizers/" + name); }

const std::vector<std::string>& kinds() {
  static const std::vector<std::string> k = {"llama3_bpe", "gpt2_bpe", "sp_bpe", "llama2_conv", "smollm2"};
  return k;
}

// Random valid UTF-8: ASCII, whitespace runs, and code points from every plane outside the surrogates.
std::string random_utf8(std::mt19937_64& rng, size_t chars) {
  std::string s;
  for (size_t i = 0; i < chars; ++i) {
    const int kind = int(rng() % 6);
    char32_t cp;
    if (kind <= 1) cp = char32_t(0x20 + rng() % 95);
    else if (kind == 2) cp = U" \n\t\r"[rng() % 4];
    else if (kind == 3) cp = char32_t(0x80 + rng() % 0x780);
    else if (kind == 4) cp = char32_t(0x800 + rng() % 0xF800);
    else cp = char32_t(0x10000 + rng() % 0x100000);
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = U'x';
    utf8_append(s, cp);
  }
  return s;
}

}  // namespace

TEST_CASE("tokenizer.json ids equal HF tokenizers on every fixture kind", "[tokenizer][hf]") {
  for (const auto& kind : kinds()) {
    Tokenizer tok(tok_dir(kind));
    CHECK(tok.path().find("tokenizer.json") != std::string::npos);  // preferred over tokenizer.model (llama2_conv)
    const json cases = json::parse(test::read_file(tok_dir(kind) + "/cases.json"));
    REQUIRE(cases.size() >= 16);
    for (const auto& c : cases) {
      const std::string text = c["text"];
      INFO(kind << ": " << json(text).dump());
      CHECK(tok.encode_raw(text) == c["ids"].get<std::vector<int32_t>>());
      CHECK(tok.encode(text) == c["ids_with_special"].get<std::vector<int32_t>>());
      CHECK(tok.decode(c["ids"].get<std::vector<int32_t>>()) == c["decoded"].get<std::string>());
    }
  }
}

TEST_CASE("byte-level decoding reverses encoding exactly for any valid UTF-8", "[tokenizer][hf]") {
  const uint64_t seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  // Only vocabularies with all 256 byte symbols can: the SmolLM2 one converted from GGUF lacks the bytes that
  // start rare 4-byte characters (0xF1, 0xF2), which HF tokenizers drops as qft does.
  for (const char* kind : {"llama3_bpe", "gpt2_bpe"}) {
    Tokenizer tok(tok_dir(kind));
    for (int i = 0; i < 40; ++i) {
      const std::string text = random_utf8(rng, 1 + rng() % 200);
      INFO(kind << ": " << json(text).dump());
      std::vector<size_t> offsets;
      const auto ids = tok.encode_raw(text, &offsets);
      REQUIRE(tok.decode(ids) == text);
      REQUIRE(offsets.size() == ids.size());
      REQUIRE(std::is_sorted(offsets.begin(), offsets.end()));
    }
  }
}

TEST_CASE("token offsets point at each token's text", "[tokenizer][hf]") {
  for (const auto& kind : kinds()) {
    Tokenizer tok(tok_dir(kind));
    const std::string text = "Hello world, it's 2026!\n\nCafé 😀 done";
    std::vector<size_t> offsets;
    const auto ids = tok.encode_raw(text, &offsets);
    INFO(kind);
    REQUIRE(offsets.size() == ids.size());
    CHECK(offsets.front() == 0);
    // The token that starts at "world" begins a word there (each kind splits words at spaces).
    CHECK(std::find(offsets.begin(), offsets.end(), text.find(" world")) != offsets.end());
    CHECK(std::is_sorted(offsets.begin(), offsets.end()));
  }
}

TEST_CASE("stop tokens are EOS plus generation_config.json's list", "[tokenizer][hf]") {
  Tokenizer tok(tok_dir("llama3_bpe"));
  const std::vector<int32_t> want = {*tok.token_id("<|eot_id|>"), *tok.token_id("<|end_of_text|>"), *tok.token_id("<|eom_id|>")};
  CHECK(tok.eos_id() == want[0]);
  CHECK(tok.stop_ids() == want);
  CHECK(tok.bos_id() == *tok.token_id("<|begin_of_text|>"));
  CHECK(tok.prefix_ids() == std::vector<int32_t>{tok.bos_id()});
  Tokenizer smol(tok_dir("smollm2"));
  CHECK(smol.prefix_ids().empty());  // SmolLM2 adds no BOS
  CHECK(smol.eos_token() == "<|im_end|>");
}

TEST_CASE("chat templates render as apply_chat_template does, and auto picks the family", "[tokenizer][chat]") {
  const json cases = json::parse(test::read_file(tok_dir("chat_cases.json")));
  REQUIRE(cases.size() >= 30);
  std::set<std::string> families;
  for (const auto& c : cases) {
    const std::string jinja_path = tok_dir(c["template_file"].get<std::string>());
    INFO(c["case"].get<std::string>() << ": " << c["messages"].dump() << " gen " << c["add_generation_prompt"]);
    Tokenizer tok(tok_dir(c["tokenizer"]));
    ChatTemplate tmpl = detect_template(test::read_file(jinja_path), jinja_path);
    REQUIRE(tmpl.name == c["builtin"].get<std::string>());
    families.insert(tmpl.name);
    if (!c["date"].get<std::string>().empty()) tmpl.date = c["date"];
    std::vector<Turn> turns;
    for (const auto& m : c["messages"]) turns.push_back({m["role"], m["content"]});
    const bool gen = c["add_generation_prompt"];
    if (c.contains("refused")) {  // transformers' template raised: qft refuses the conversation too
      CHECK_THROWS_AS(render_chat(turns, tmpl, tok.bos_token(), tok.eos_token(), gen), Error);
      continue;
    }
    const RenderedChat r = render_chat(turns, tmpl, tok.bos_token(), tok.eos_token(), gen);
    CHECK(r.text == c["text"].get<std::string>());
    const auto want = c["ids"].get<std::vector<int32_t>>();
    if (gen) {
      CHECK(chat_prompt_tokens(turns, tmpl, tok) == want);
      continue;
    }
    const Example ex = render_example(turns, tmpl, tok, false, false);
    CHECK(ex.tokens == want);
    // Loss only on the assistant's turns and their end token.
    std::vector<int32_t> trained;
    for (size_t i = 0; i < ex.tokens.size(); ++i) {
      if (ex.target[i]) trained.push_back(ex.tokens[i]);
    }
    const std::string end = end_of_turn(tmpl, tok.eos_token());
    const std::string got = tok.decode(trained);
    for (const auto& t : turns) {
      const size_t first = t.content.find_first_not_of(" \n");
      const auto core = t.content.substr(first, t.content.find_first_of(" \n", first) - first);
      if (t.role == "assistant") CHECK(got.find(core) != std::string::npos);
    }
    CHECK(std::count(trained.begin(), trained.end(), *tok.token_id(end)) ==
          std::count_if(turns.begin(), turns.end(), [](const Turn& t) { return t.role == "assistant"; }));
    CHECK(got.find("capital") == std::string::npos);  // user text never carries loss
    CHECK(got.find("morning") == std::string::npos);
  }
  CHECK(families == std::set<std::string>{"llama3", "chatml", "llama2-chat", "mistral"});
}

TEST_CASE("auto finds each template's parameters", "[tokenizer][chat]") {
  const ChatTemplate smol = detect_template(test::read_file(tok_dir("chat_smollm2.jinja")), "smollm2");
  CHECK(smol.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  CHECK(detect_template(test::read_file(tok_dir("chat_chatml.jinja")), "chatml").default_system.empty());
  const ChatTemplate l31 = detect_template(test::read_file(tok_dir("chat_llama3.1.jinja")), "3.1");
  CHECK((l31.date_lines && l31.date == "26 Jul 2024"));
  const ChatTemplate l32 = detect_template(test::read_file(tok_dir("chat_llama3.2.jinja")), "3.2");
  CHECK((l32.date_lines && l32.date.empty()));  // today's date, as strftime_now
  CHECK(!detect_template(test::read_file(tok_dir("chat_llama3.0.jinja")), "3.0").date_lines);
  REQUIRE_THROWS_AS(detect_template("{{ messages[0].content }}<|user|>", "odd.jinja"), UnsupportedError);
  REQUIRE_THROWS_WITH(detect_template("{{ x }}", "odd.jinja"), Catch::Contains("odd.jinja") && Catch::Contains("chatml"));
  // A model without a template: auto says so and names the tokenizer.
  Tokenizer tok(tok_dir("gpt2_bpe"));
  REQUIRE_THROWS_WITH(resolve_template("auto", tok), Catch::Contains("no chat template") && Catch::Contains("tokenizer.json"));
}

TEST_CASE("unsupported or malformed tokenizer.json files are refused by name", "[tokenizer][hf][bad-input]") {
  test::TempDir tmp;
  const std::string good = test::read_file(tok_dir("gpt2_bpe") + "/tokenizer.json");
  auto refuse = [&](const json& j, const std::string& what) {
    const std::string dir = tmp / ("t" + std::to_string(std::hash<std::string>{}(what)));
    std::filesystem::create_directories(dir);
    test::write_file(dir + "/tokenizer.json", j.is_string() ? j.get<std::string>() : j.dump());
    INFO(what);
    REQUIRE_THROWS_WITH(Tokenizer(dir), Catch::Contains("tokenizer.json") && Catch::Contains(what));
  };
  json j = json::parse(good);
  json wp = j;
  wp["model"]["type"] = "WordPiece";
  refuse(wp, "WordPiece");
  json uni = j;
  uni["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};
  refuse(uni, "Unigram");
  json pre = j;
  pre["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  refuse(pre, "BertPreTokenizer");
  json norm = j;
  norm["normalizer"] = {{"type", "BertNormalizer"}};
  refuse(norm, "BertNormalizer");
  json merge = j;
  merge["model"]["merges"].push_back("Ġ nosuchtoken");
  refuse(merge, "nosuchtoken");
  json regex = j;
  regex["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}, {"invert", false}};
  refuse(regex, "(unclosed");
  refuse(json(good.substr(0, good.size() / 2)), "tokenizer.json");  // truncated JSON
  json vocab = j;
  vocab["model"]["vocab"]["x"] = "seven";
  refuse(vocab, "vocab");
  // Found by fuzz/fuzz_tokenizer_json: tables are sized by the largest id, so a huge one asked for 20 GB.
  json huge = j;
  huge["model"]["vocab"]["x"] = 2147483000;
  refuse(huge, "model.vocab['x']: expected an integer id in [0, 4194304)");
  json wrapped = j;
  wrapped["model"]["vocab"]["x"] = 4294967296ll + 5;  // would wrap to 5 as int32
  refuse(wrapped, "model.vocab['x']");
  json added = j;
  added["added_tokens"] = json::array({{{"id", 1ll << 40}, {"content", "<big>"}}});
  refuse(added, "added_tokens");
  // Invalid UTF-8 in a text to encode: an error, never undefined behaviour in the regex engine.
  Tokenizer tok(tok_dir("gpt2_bpe"));
  REQUIRE_THROWS_WITH(tok.encode_raw("ok \xC3\x28 bad"), Catch::Contains("UTF-8") && Catch::Contains("byte 3"));
}

TEST_CASE("the CLI refuses a missing chat template or an unsupported tokenizer with exit 1", "[tokenizer][cli][bad-input]") {
  const std::string tiny = test::source_path("models/tiny-llama");  // a base model: no chat template
  const auto gen = test::run_qft("generate --model " + tiny + " --template auto --prompt hi --device cpu");
  CHECK(gen.exit_code == 1);
  CHECK(gen.output.find("no chat template") != std::string::npos);
  test::TempDir tmp;
  const auto train = test::run_qft(test::tiny_train_args(tmp / "run") + " --set data.template=auto");
  CHECK(train.exit_code == 1);
  CHECK(train.output.find("no chat template") != std::string::npos);
  CHECK(!std::filesystem::exists(tmp / "run/step_00000001"));
  json j = json::parse(test::read_file(tok_dir("gpt2_bpe") + "/tokenizer.json"));
  j["model"]["type"] = "WordPiece";
  std::filesystem::create_directories(tmp / "wp");
  test::write_file(tmp / "wp/tokenizer.json", j.dump());
  const auto tok = test::run_qft("tokenize --model " + tmp / "wp" + " --text hello");
  CHECK(tok.exit_code == 1);
  CHECK(tok.output.find("wp/tokenizer.json") != std::string::npos);
  CHECK(tok.output.find("WordPiece") != std::string::npos);
  const auto ok = test::run_qft("tokenize --model " + tok_dir("llama3_bpe") + " --text hello --special");
  CHECK(ok.exit_code == 0);
}
