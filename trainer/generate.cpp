#include "trainer/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "model/llama.h"
#include "text/tokenizer.h"
#include "trainer/data.h"

namespace qft {

Prompt make_prompt(const Tokenizer& tok, const std::vector<Turn>& turns, const std::string& prompt_template) {
  Prompt p;
  if (prompt_template == "none") {
    if (turns.size() != 1 || turns[0].role != "user") throw Error("generate: template 'none' takes one plain prompt");
    p.tokens = tok.prefix_ids();
    const auto text = tok.encode_raw(turns[0].content);
    p.tokens.insert(p.tokens.end(), text.begin(), text.end());
    return p;
  }
  const ChatTemplate tmpl = resolve_template(prompt_template, tok);
  p.tokens = chat_prompt_tokens(turns, tmpl, tok);
  if (auto end = tok.token_id(end_of_turn(tmpl, tok.eos_token()))) p.stop_ids.push_back(*end);
  return p;
}

int32_t sample_token(const std::vector<float>& logits, double temperature, double top_p, std::mt19937_64& rng) {
  if (logits.empty()) throw Error("sample_token: empty logits");
  if (temperature <= 0) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const double mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp((double(logits[i]) - mx) / temperature);
  std::vector<int32_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)]; });
  size_t keep = 0;
  double mass = 0;
  while (keep < order.size() && (keep == 0 || mass < top_p * sum)) mass += p[size_t(order[keep++])];
  const double u = double(rng() >> 11) * 0x1.0p-53 * mass;  // uniform in [0, mass), the same on every platform
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[size_t(order[i])];
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

Generation generate(LlamaModel& model, const Tokenizer& tok, const std::string& prompt, const GenerateOptions& o,
                    const std::function<void(const std::string&)>& on_text) {
  return generate_tokens(model, tok, make_prompt(tok, {{"user", prompt}}, o.prompt_template), o, on_text);
}

Generation generate_tokens(LlamaModel& model, const Tokenizer& tok, const Prompt& prompt, const GenerateOptions& o,
                           const std::function<void(const std::string&)>& on_text) {
  if (prompt.tokens.empty()) throw Error("generate: the prompt has no tokens");
  if (o.max_new_tokens < 0) throw Error("generate: max_new_tokens must not be negative");
  if (!(o.top_p > 0 && o.top_p <= 1)) throw Error("generate: top_p must lie in (0, 1]");  // NaN too
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature)) throw Error("generate: temperature must be finite and >= 0");
  const int64_t context = model.config().max_position_embeddings;
  if (int64_t(prompt.tokens.size()) + int64_t(o.max_new_tokens) > context) {
    throw Error("generate: the prompt's " + std::to_string(prompt.tokens.size()) + " tokens plus max_new_tokens " +
                std::to_string(o.max_new_tokens) + " exceed the model's context of " + std::to_string(context) +
                " tokens (max_position_embeddings in config.json)");
  }
  Generation g;
  g.prompt = prompt.tokens;
  const LlamaModel::DenseHold hold = model.hold_dense_weights();  // each matrix dequantized once, not per token
  KvCache cache = model.new_kv_cache(int(g.prompt.size()) + o.max_new_tokens);
  std::mt19937_64 rng(o.seed);
  std::vector<float> logits = model.decode(g.prompt, cache);
  for (int i = 0; i < o.max_new_tokens; ++i) {
    // A model's vocabulary may be padded beyond its tokenizer's: those ids have no text, so they are never drawn.
    if (int64_t(logits.size()) > tok.vocab_size()) logits.resize(size_t(tok.vocab_size()));
    const int32_t next = sample_token(logits, o.temperature, o.top_p, rng);
    if (tok.is_stop(next) || std::find(prompt.stop_ids.begin(), prompt.stop_ids.end(), next) != prompt.stop_ids.end()) {
      g.hit_eos = true;
      break;
    }
    g.tokens.push_back(next);
    // Decode the whole continuation each time: sentencepiece joins pieces (spaces, bytes) only in context.
    const std::string text = tok.decode(g.tokens);
    if (on_text && text.size() > g.text.size() && text.compare(0, g.text.size(), g.text) == 0) {
      on_text(text.substr(g.text.size()));
    }
    g.text = text;
    if (i + 1 < o.max_new_tokens) logits = model.decode({next}, cache);
  }
  return g;
}

}  // namespace qft
