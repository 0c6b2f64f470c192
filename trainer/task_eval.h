#pragma once
// Task scoring by exact match: each record's prompt turns are rendered as in training, the model answers
// greedily, and the answer counts when it equals the record's final assistant turn (surrounding whitespace
// ignored) and the model stopped by itself with EOS.
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/settings.h"

namespace qft {

class LlamaModel;
class Tokenizer;

struct TaskSample {
  std::string prompt;     // the last user turn
  std::string reference;  // the expected answer
  std::string answer;     // what the model wrote
  bool correct = false;
};

struct TaskResult {
  int64_t examples = 0;
  int64_t correct = 0;
  double exact_match = 0;            // correct / examples
  std::vector<TaskSample> samples;   // every scored example, in file order
};

struct TaskOptions {
  DataFormat format = DataFormat::Alpaca;  // data.format of the file
  std::string prompt_template = "plain";  // data.template the model was trained with
  int max_new_tokens = 64;
  int limit = 0;                          // score the first `limit` records; 0 = all
};

// Throws DataError naming file:line for a malformed record.
TaskResult score_exact_match(LlamaModel& model, const Tokenizer& tok, const std::string& path, const TaskOptions& o);

}  // namespace qft
