#include "trainer/evaluate.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/llama.h"
#include "text/tokenizer.h"
#include "model/batch.h"

namespace qft {

EvalResult evaluate_texts(LlamaModel& model, const Tokenizer& tok, const std::vector<std::string>& texts, int seq_len) {
  if (seq_len < 1) throw Error("eval: seq_len must be at least 1, got " + std::to_string(seq_len));
  LossSum total;
  EvalResult r;
  for (const auto& text : texts) {
    const std::vector<int32_t> ids = tok.encode(text);
    r.documents += 1;
    for (size_t s = 0; s + 1 < ids.size(); s += size_t(seq_len)) {
      const int T = int(std::min<size_t>(seq_len, ids.size() - 1 - s));
      Batch b;
      b.B = 1;
      b.T = T;
      b.tokens.assign(ids.begin() + s, ids.begin() + s + T);
      b.targets.assign(ids.begin() + s + 1, ids.begin() + s + 1 + T);
      b.positions.resize(T);
      for (int t = 0; t < T; ++t) b.positions[t] = t;
      LossSum ls = model.forward_loss(b);
      total.loss_sum += ls.loss_sum;
      total.tokens += ls.tokens;
    }
  }
  if (total.tokens == 0) throw Error("eval: the documents hold no token to predict");
  r.tokens = total.tokens;
  r.loss = total.mean();
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace qft
