#include <catch2/catch.hpp>
#include <set>

#include "core/error.h"
#include "text/tokenizer.h"
#include "model/batch.h"
#include "test/helpers.h"
#include "trainer/data.h"

using namespace qft;

namespace {

const Tokenizer& tok() {
  static const Tokenizer t(test::fixture("gqa_tied"));
  return t;
}

DataSection section(const std::string& format, int seq_len = 256) {
  DataSection d;
  d.format = *parse_enum<DataFormat>(format);
  d.seq_len = seq_len;
  return d;
}

// Decodes the tokens that carry loss.
std::string trained_text(const Example& e) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < e.tokens.size(); ++i)
    if (e.target[i] && e.tokens[i] != tok().eos_id()) ids.push_back(e.tokens[i]);
  return tok().decode(ids);
}

}  // namespace

TEST_CASE("each format renders through the template with loss only on responses", "[data]") {
  test::TempDir tmp;
  test::write_file(tmp / "alpaca.jsonl", R"({"instruction": "Name a fruit.", "input": "", "output": "An apple."})" "\n");
  test::write_file(tmp / "pc.jsonl", R"({"prompt": "Two plus two?", "completion": "Four."})" "\n");
  test::write_file(tmp / "chat.jsonl",
                   R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},)"
                   R"( {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"},)"
                   R"( {"role": "assistant", "content": "Goodbye."}]})" "\n");
  test::write_file(tmp / "text.jsonl", R"({"text": "The river runs."})" "\n");

  auto one = [&](const std::string& file, const std::string& format, const std::string& tmpl = "plain") {
    DataSection d = section(format);
    d.prompt_template = tmpl;
    auto ex = load_examples(tmp / file, d, tok(), nullptr);
    REQUIRE(ex.size() == 1);
    REQUIRE(ex[0].tokens.front() == tok().bos_id());
    REQUIRE(ex[0].tokens.back() == tok().eos_id());
    REQUIRE(ex[0].target.back() == 1);  // EOS is learned
    return ex[0];
  };
  const Example a = one("alpaca.jsonl", "alpaca");
  CHECK(trained_text(a) == "An apple.");
  CHECK(tok().decode(a.tokens).find("### Instruction:\nName a fruit.\n\n### Response:\n") != std::string::npos);
  CHECK(trained_text(one("pc.jsonl", "prompt_completion")) == "Four.");
  CHECK(trained_text(one("text.jsonl", "text")) == "The river runs.");

  const Example c = one("chat.jsonl", "chat", "llama2-chat");
  const std::string all = tok().decode(c.tokens);
  CHECK(all.find("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]") != std::string::npos);
  CHECK(std::count(c.tokens.begin(), c.tokens.end(), tok().bos_id()) == 2);  // one per [INST] turn
  CHECK(trained_text(c).find("Hello.") != std::string::npos);
  CHECK(trained_text(c).find("Goodbye.") != std::string::npos);
  CHECK(trained_text(c).find("Hi") == std::string::npos);

  DataSection d = section("alpaca");
  d.train_on_prompt = true;
  auto all_trained = load_examples(tmp / "alpaca.jsonl", d, tok(), nullptr)[0];
  CHECK(std::count(all_trained.target.begin(), all_trained.target.end(), 1) == int(all_trained.tokens.size()) - 1);
}

TEST_CASE("malformed lines name file:line, or are skipped and counted", "[data][bad-input]") {
  test::TempDir tmp;
  test::write_file(tmp / "d.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n\n{\"prompt\": \"a\"}\n{oops\n"
                                    "{\"prompt\": 3, \"completion\": \"b\"}\n");
  REQUIRE_THROWS_WITH(load_examples(tmp / "d.jsonl", section("prompt_completion"), tok(), nullptr),
                      Catch::Contains("d.jsonl:3") && Catch::Contains("completion"));
  DataSection d = section("prompt_completion");
  d.skip_bad_lines = true;
  DataStats st;
  auto ex = load_examples(tmp / "d.jsonl", d, tok(), &st);
  CHECK(ex.size() == 1);
  CHECK(st.skipped_lines == 3);
  test::write_file(tmp / "chat.jsonl", R"({"messages": [{"role": "robot", "content": "x"}]})" "\n");
  REQUIRE_THROWS_WITH(load_examples(tmp / "chat.jsonl", section("chat"), tok(), nullptr),
                      Catch::Contains("chat.jsonl:1") && Catch::Contains("robot"));
  test::write_file(tmp / "empty.jsonl", "\n\n");
  REQUIRE_THROWS_WITH(load_examples(tmp / "empty.jsonl", section("text"), tok(), nullptr), Catch::Contains("no usable examples"));
}

TEST_CASE("over-long examples are truncated and counted", "[data]") {
  test::TempDir tmp;
  test::write_file(tmp / "t.jsonl", R"({"text": "The river runs past the old mill and into the valley, where the farmers grow wheat."})" "\n"
                                    R"({"text": "Short."})" "\n");
  DataStats st;
  auto ex = load_examples(tmp / "t.jsonl", section("text", 8), tok(), &st);
  CHECK(st.truncated == 1);
  CHECK(ex[0].tokens.size() == 8);
}

TEST_CASE("packing restarts positions and masks attention at every example", "[data]") {
  Example a{{1, 10, 11, 12}, {0, 1, 1, 1}}, b{{1, 20, 21}, {0, 0, 1}};
  const Batch batch = make_batch({{&a, &b}}, 10, true, 2);
  REQUIRE(batch.T == 10);
  CHECK(batch.tokens == std::vector<int32_t>{1, 10, 11, 12, 1, 20, 21, 2, 2, 2});
  CHECK(batch.positions == std::vector<int32_t>{0, 1, 2, 3, 0, 1, 2, 0, 0, 0});
  CHECK(batch.doc_start == std::vector<int32_t>{0, 0, 0, 0, 4, 4, 4, 7, 8, 9});
  const int32_t X = kIgnoreIndex;
  // No target crosses from one example into the next, and b's prompt token 20 is not a target.
  CHECK(batch.targets == std::vector<int32_t>{10, 11, 12, X, X, 21, X, X, X, X});
  batch.validate(500);

  const Batch unpacked = make_batch({{&a}, {&b}}, 10, false, 2);
  CHECK(unpacked.T == 4);  // the longest row
  CHECK(unpacked.doc_start.empty());
}

TEST_CASE("shuffling is deterministic by seed, covers every example per epoch, and the cursor restores", "[data]") {
  std::vector<Example> ex;
  for (int i = 0; i < 23; ++i) ex.push_back({{1, 3 + i, 3 + i}, {0, 1, 1}});
  DataSection d = section("text", 16);
  auto tokens_of = [](const std::vector<Batch>& bs) {
    std::vector<int32_t> out;
    for (const auto& b : bs) out.insert(out.end(), b.tokens.begin(), b.tokens.end());
    return out;
  };
  DataLoader a(ex, d, 42, 2), b(ex, d, 42, 2), c(ex, d, 43, 2);
  const auto first = tokens_of(a.next_step(2, 5));
  CHECK(first == tokens_of(b.next_step(2, 5)));
  CHECK(first != tokens_of(c.next_step(2, 5)));

  DataLoader e(ex, d, 7, 2);
  std::set<int32_t> seen;
  for (const auto& bt : e.next_step(1, 23)) seen.insert(bt.tokens.begin(), bt.tokens.end());
  CHECK(seen.size() == 23 + 1);  // every example's token, plus BOS

  const DataCursor saved = a.cursor();
  const auto next = tokens_of(a.next_step(3, 5));  // crosses into epoch 1
  CHECK(a.cursor().epoch == 1);
  DataLoader restored(ex, d, 42, 2);
  restored.restore(saved);
  CHECK(tokens_of(restored.next_step(3, 5)) == next);
}
