#pragma once
// Text generation with a KV cache: the prompt is run once, then one token at a time, sampled with temperature
// and nucleus (top-p) sampling from a seeded generator, so a fixed seed gives the same text every time.
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "text/chat_template.h"

namespace qft {

class LlamaModel;
class Tokenizer;

struct GenerateOptions {
  std::string prompt_template = "none";  // none: the prompt as plain text; else a data.template name (or auto)
  int max_new_tokens = 128;
  double temperature = 0.8;              // 0: greedy
  double top_p = 0.95;                   // smallest set of tokens whose probability reaches top_p
  uint64_t seed = 0;
};

struct Generation {
  std::vector<int32_t> prompt;  // the prompt's tokens, BOS and template included
  std::vector<int32_t> tokens;  // generated, without the final EOS
  std::string text;             // tokens decoded
  bool hit_eos = false;         // stopped at a stop token (EOS, an end-of-turn token), not at max_new_tokens
};

// A prompt ready to continue: its tokens, and what ends the answer besides the model's own stop tokens
// (Tokenizer::stop_ids): the chat template's end-of-turn token.
struct Prompt {
  std::vector<int32_t> tokens;
  std::vector<int32_t> stop_ids;
};

// "none": the tokenizer's BOS (when it adds one) and the text of the single user turn. Else the turns rendered
// through the chat template, exactly as training renders them, up to where the assistant's answer begins.
Prompt make_prompt(const Tokenizer& tok, const std::vector<Turn>& turns, const std::string& prompt_template);

// Continues a prompt until a stop token or max_new_tokens.
Generation generate_tokens(LlamaModel& model, const Tokenizer& tok, const Prompt& prompt, const GenerateOptions& o,
                           const std::function<void(const std::string&)>& on_text = {});

// on_text, when given, receives each new piece of text as soon as it is decoded (streaming).
Generation generate(LlamaModel& model, const Tokenizer& tok, const std::string& prompt, const GenerateOptions& o,
                    const std::function<void(const std::string&)>& on_text = {});

// The index of the next token: argmax at temperature 0, else a draw from the top-p nucleus of
// softmax(logits / temperature). Ties at temperature 0 go to the lowest index.
int32_t sample_token(const std::vector<float>& logits, double temperature, double top_p, std::mt19937_64& rng);

}  // namespace qft
