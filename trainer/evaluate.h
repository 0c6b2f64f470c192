#pragma once
// Mean token loss and perplexity of a model over documents.
#include <cstdint>
#include <string>
#include <vector>

namespace qft {

class LlamaModel;
class Tokenizer;

struct EvalResult {
  double loss = 0;        // mean cross-entropy per predicted token (nats)
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;     // predicted tokens
  int64_t documents = 0;
};

// Each document is tokenized on its own (BOS/EOS as the tokenizer is set up) and cut into windows of at
// most seq_len inputs; every token after the first is predicted exactly once.
EvalResult evaluate_texts(LlamaModel& model, const Tokenizer& tok, const std::vector<std::string>& texts, int seq_len);

}  // namespace qft
