#include "trainer/task_eval.h"

#include "core/error.h"
#include "text/tokenizer.h"
#include "trainer/data.h"
#include "trainer/generate.h"
#include "trainer/jsonl.h"

namespace qft {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

TaskResult score_exact_match(LlamaModel& model, const Tokenizer& tok, const std::string& path, const TaskOptions& o) {
  GenerateOptions gen;
  gen.max_new_tokens = o.max_new_tokens;
  gen.temperature = 0;  // greedy: the score is a property of the model, not of a seed
  TaskResult r;
  const LlamaModel::DenseHold hold = model.hold_dense_weights();  // each matrix dequantized once for every record
  for_each_jsonl_line(path, [&](const std::string& line, long lineno) {
    if (o.limit > 0 && r.examples >= o.limit) return;
    std::vector<Turn> turns = parse_line(path, lineno, line, o.format);
    if (turns.back().role != "assistant" || turns.size() < 2) {
      throw DataError(path, lineno, "a task record needs a prompt followed by an assistant answer");
    }
    TaskSample s;
    s.reference = turns.back().content;
    turns.pop_back();
    s.prompt = turns.back().content;
    const Generation g = generate_tokens(model, tok, make_prompt(tok, turns, o.prompt_template), gen);
    s.answer = g.text;
    s.correct = g.hit_eos && trim(g.text) == trim(s.reference);
    r.examples += 1;
    r.correct += s.correct;
    r.samples.push_back(std::move(s));
  });
  if (r.examples == 0) throw DataError(path, 0, "no records to score");
  r.exact_match = double(r.correct) / double(r.examples);
  return r;
}

}  // namespace qft
