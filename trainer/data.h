#pragma once
// Training data: JSONL records in four formats, rendered through a prompt template into token sequences with
// loss masks, optionally packed, shuffled deterministically per epoch, and cut into batches.
#include <cstdint>
#include <string>
#include <vector>

#include "model/llama.h"
#include "text/chat_template.h"
#include "trainer/config.h"

namespace qft {

class Tokenizer;

// One tokenized example. target[i] says whether token i carries loss (is predicted from token i - 1).
struct Example {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> target;
};

struct DataStats {
  int64_t examples = 0;
  int64_t skipped_lines = 0;     // malformed lines skipped with data.skip_bad_lines
  int64_t truncated = 0;         // examples cut to data.seq_len
  int64_t dropped_no_target = 0; // examples left with no token to learn after truncation
  int64_t tokens = 0;
};

// Line `lineno` of the JSONL file `path`, in a data.format -> turns.
// Throws DataError naming path:lineno and the format on malformed JSON or missing fields.
std::vector<Turn> parse_line(const std::string& path, long lineno, const std::string& line, DataFormat format);

// Renders turns through the chat template into tokens and loss mask: the whole conversation is tokenized at once,
// as apply_chat_template does, and a token carries loss when it overlaps an assistant turn (or always, with
// train_on_prompt). raw_text: the "text" format, the model's own BOS + text + EOS, all of it learned.
Example render_example(const std::vector<Turn>& turns, const ChatTemplate& tmpl, const Tokenizer& tok,
                       bool train_on_prompt, bool raw_text);

// The tokens of a conversation rendered up to where the assistant's next turn begins (the generation prompt).
std::vector<int32_t> chat_prompt_tokens(const std::vector<Turn>& turns, const ChatTemplate& tmpl, const Tokenizer& tok);

// Reads and renders a JSONL file. Malformed lines throw DataError (file:line) unless data.skip_bad_lines.
std::vector<Example> load_examples(const std::string& path, const DataSection& cfg, const Tokenizer& tok,
                                   DataStats* stats);

// Builds a batch from rows of examples; each row is the examples packed into one sequence. Positions restart
// and attention is masked at every example boundary. T is seq_len when packing, else the longest row.
Batch make_batch(const std::vector<std::vector<const Example*>>& rows, int seq_len, bool packing, int32_t pad_id);

struct DataCursor {
  int64_t epoch = 0;
  int64_t row = 0;  // next row of the epoch's order
};

class DataLoader {
 public:
  DataLoader(std::vector<Example> examples, const DataSection& cfg, uint64_t seed, int32_t pad_id);
  DataLoader(const DataLoader&) = delete;  // rows point into examples_
  DataLoader& operator=(const DataLoader&) = delete;
  // The micro-batches of one optimizer step; wraps into the next epoch as needed.
  std::vector<Batch> next_step(int micro_batches, int batch_size);
  DataCursor cursor() const { return cursor_; }
  void restore(const DataCursor& c);
  int64_t rows_per_epoch() const { return int64_t(rows_.size()); }
  // Every row in file order, in batches (validation); max_batches 0 = all.
  std::vector<Batch> ordered_batches(int batch_size, int max_batches) const;

 private:
  std::vector<std::vector<const Example*>> build_rows(const std::vector<size_t>& order) const;
  void start_epoch(int64_t epoch);

  std::vector<Example> examples_;
  DataSection cfg_;
  uint64_t seed_;
  int32_t pad_id_;
  DataCursor cursor_;
  std::vector<std::vector<const Example*>> rows_;
};

}  // namespace qft
