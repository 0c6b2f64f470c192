#include "trainer/data.h"

#include <algorithm>
#include <exception>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "core/error.h"
#include "text/tokenizer.h"
#include "model/batch.h"
#include "trainer/jsonl.h"

namespace qft {

namespace {

using nlohmann::json;

std::string string_field(const json& j, const char* key, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) throw Error(std::string("missing the \"") + key + "\" field");
    return "";
  }
  if (!it->is_string()) throw Error(std::string("field \"") + key + "\" must be a string");
  return it->get<std::string>();
}

// One JSON record of a format -> turns. Throws qft::Error with a message the caller prefixes with file:line.
std::vector<Turn> parse_record(const json& j, DataFormat format) {
  if (!j.is_object()) throw Error("expected a JSON object");
  switch (format) {
    case DataFormat::Text:
      return {{"assistant", string_field(j, "text", true)}};
    case DataFormat::Alpaca: {
      std::string user = string_field(j, "instruction", true);
      const std::string input = string_field(j, "input", false);
      if (!input.empty()) user += "\n\n" + input;
      return {{"user", user}, {"assistant", string_field(j, "output", true)}};
    }
    case DataFormat::PromptCompletion:
      return {{"user", string_field(j, "prompt", true)}, {"assistant", string_field(j, "completion", true)}};
    case DataFormat::Chat:
      break;
  }
  auto it = j.find("messages");
  if (it == j.end() || !it->is_array() || it->empty()) throw Error("\"messages\" must be a non-empty list");
  std::vector<Turn> turns;
  bool has_assistant = false;
  for (const auto& m : *it) {
    if (!m.is_object()) throw Error("each message must be an object with \"role\" and \"content\"");
    Turn t{string_field(m, "role", true), string_field(m, "content", true)};
    if (t.role != "system" && t.role != "user" && t.role != "assistant") {
      throw Error("unknown role '" + t.role + "' (expected system, user or assistant)");
    }
    has_assistant |= t.role == "assistant";
    turns.push_back(std::move(t));
  }
  if (!has_assistant) throw Error("a conversation needs at least one assistant message");
  return turns;
}

// The ids before a rendered conversation. plain writes no BOS of its own: it starts with whatever the tokenizer
// puts before a text. The model families' templates write their BOS themselves, as their Jinja does.
std::vector<int32_t> template_prefix(const ChatTemplate& tmpl, const Tokenizer& tok) {
  return tmpl.format == ChatFormat::Plain ? tok.prefix_ids() : std::vector<int32_t>{};
}

void append(Example& ex, const std::vector<int32_t>& ids, bool target) {
  ex.tokens.insert(ex.tokens.end(), ids.begin(), ids.end());
  ex.target.insert(ex.target.end(), ids.size(), uint8_t(target));
}

}  // namespace

std::vector<Turn> parse_line(const std::string& path, long lineno, const std::string& line, DataFormat format) {
  try {
    return parse_record(json::parse(line), format);
  } catch (const std::exception& e) {  // nlohmann's parse errors and our field errors alike
    throw DataError(path, lineno, std::string(e.what()) + " (format '" + enum_name(format) + "')");
  }
}

Example render_example(const std::vector<Turn>& turns, const ChatTemplate& tmpl, const Tokenizer& tok,
                       bool train_on_prompt, bool raw_text) {
  Example ex;
  if (raw_text) {  // the "text" format: plain language modelling over the whole text, then EOS
    if (tok.eos_id() < 0) throw Error(tok.path() + ": the tokenizer has no EOS token to end a text with");
    append(ex, tok.prefix_ids(), false);
    append(ex, tok.encode_raw(turns.at(0).content), true);
    append(ex, {tok.eos_id()}, true);
    return ex;
  }
  append(ex, template_prefix(tmpl, tok), false);
  const RenderedChat chat = render_chat(turns, tmpl, tok.bos_token(), tok.eos_token(), false);
  std::vector<size_t> starts;
  const std::vector<int32_t> ids = tok.encode_raw(chat.text, &starts);
  size_t span = 0;  // assistant spans and tokens both run left to right
  for (size_t i = 0; i < ids.size(); ++i) {
    const size_t begin = starts[i], end = i + 1 < ids.size() ? std::max(starts[i + 1], begin + 1) : chat.text.size();
    while (span < chat.assistant.size() && chat.assistant[span].second <= begin) ++span;
    const bool assistant = span < chat.assistant.size() && chat.assistant[span].first < end;
    ex.tokens.push_back(ids[i]);
    ex.target.push_back(uint8_t(train_on_prompt || assistant));
  }
  return ex;
}

std::vector<int32_t> chat_prompt_tokens(const std::vector<Turn>& turns, const ChatTemplate& tmpl, const Tokenizer& tok) {
  std::vector<int32_t> ids = template_prefix(tmpl, tok);
  const auto body = tok.encode_raw(render_chat(turns, tmpl, tok.bos_token(), tok.eos_token(), true).text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::vector<Example> load_examples(const std::string& path, const DataSection& cfg, const Tokenizer& tok,
                                   DataStats* stats) {
  const ChatTemplate tmpl = resolve_template(cfg.prompt_template, tok);
  DataStats local;
  DataStats& st = stats ? *stats : local;
  struct Line {
    std::string text;
    long lineno;
    Example ex;
    bool skipped = false;        // malformed and skipped (data.skip_bad_lines)
    std::exception_ptr error;    // malformed: the run stops here
  };
  std::vector<Line> lines;
  for_each_jsonl_line(path, [&](const std::string& text, long lineno) { lines.push_back({text, lineno, {}, false, nullptr}); });
  // Parse and tokenize on every core (the tokenizer is thread-safe); the results are then taken in file order,
  // so that statistics and the first error are those of a sequential pass.
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t i = 0; i < lines.size(); ++i) {
    Line& l = lines[i];
    try {
      const std::vector<Turn> turns = parse_line(path, l.lineno, l.text, cfg.format);
      l.ex = render_example(turns, tmpl, tok, cfg.train_on_prompt, cfg.format == DataFormat::Text);
    } catch (const DataError&) {
      l.skipped = cfg.skip_bad_lines;
      if (!l.skipped) l.error = std::current_exception();
    } catch (const UnsupportedError&) {
      l.error = std::current_exception();
    } catch (const std::exception& e) {  // the template cannot write this conversation, or the text is not UTF-8
      l.error = std::make_exception_ptr(DataError(path, l.lineno, std::string(e.what()) + " (template '" + tmpl.name + "')"));
    }
    l.text.clear();
    l.text.shrink_to_fit();
  }
  std::vector<Example> out;
  for (Line& l : lines) {
    if (l.error) std::rethrow_exception(l.error);
    if (l.skipped) {
      st.skipped_lines += 1;
      continue;
    }
    Example& ex = l.ex;
    if (ex.tokens.size() > size_t(cfg.seq_len)) {
      ex.tokens.resize(size_t(cfg.seq_len));
      ex.target.resize(size_t(cfg.seq_len));
      st.truncated += 1;
    }
    // Token 0 of an example is never predicted, so only targets after it count.
    if (std::count(ex.target.begin() + 1, ex.target.end(), uint8_t(1)) == 0) {
      st.dropped_no_target += 1;
      continue;
    }
    st.examples += 1;
    st.tokens += int64_t(ex.tokens.size());
    out.push_back(std::move(ex));
  }
  if (out.empty()) {
    std::string why = "no usable examples in the file";
    if (st.dropped_no_target > 0) {
      why = "no usable examples: " + std::to_string(st.dropped_no_target) + " of " + std::to_string(lines.size()) +
            " lost every answer token to truncation at data.seq_len=" + std::to_string(cfg.seq_len) +
            " (the prompt fills the window); raise data.seq_len";
    } else if (st.skipped_lines > 0) {
      why = "no usable examples: all " + std::to_string(st.skipped_lines) + " lines were malformed and skipped (data.skip_bad_lines)";
    }
    throw DataError(path, 0, why);
  }
  return out;
}

Batch make_batch(const std::vector<std::vector<const Example*>>& rows, int seq_len, bool packing, int32_t pad_id) {
  Batch b;
  b.B = int(rows.size());
  b.T = 1;
  for (const auto& row : rows) {
    size_t len = 0;
    for (const Example* e : row) len += e->tokens.size();
    b.T = std::max(b.T, int(len));
  }
  if (packing) b.T = seq_len;
  const size_t n = size_t(b.B) * b.T;
  b.tokens.assign(n, pad_id);
  b.targets.assign(n, kIgnoreIndex);
  b.positions.assign(n, 0);
  if (packing) b.doc_start.assign(n, 0);
  for (int r = 0; r < b.B; ++r) {
    int t = 0;
    for (const Example* e : rows[size_t(r)]) {
      const int start = t, len = int(e->tokens.size());
      for (int i = 0; i < len; ++i, ++t) {
        const size_t at = size_t(r) * b.T + t;
        b.tokens[at] = e->tokens[size_t(i)];
        b.positions[at] = i;
        if (i + 1 < len && e->target[size_t(i) + 1]) b.targets[at] = e->tokens[size_t(i) + 1];
        if (packing) b.doc_start[at] = start;
      }
    }
    for (; packing && t < b.T; ++t) b.doc_start[size_t(r) * b.T + t] = t;  // padding sees only itself
  }
  return b;
}

DataLoader::DataLoader(std::vector<Example> examples, const DataSection& cfg, uint64_t seed, int32_t pad_id)
    : examples_(std::move(examples)), cfg_(cfg), seed_(seed), pad_id_(pad_id) {
  if (examples_.empty()) throw Error("DataLoader: no examples");
  start_epoch(0);
}

std::vector<std::vector<const Example*>> DataLoader::build_rows(const std::vector<size_t>& order) const {
  std::vector<std::vector<const Example*>> rows;
  size_t used = 0;
  for (size_t i : order) {
    const Example* e = &examples_[i];
    if (rows.empty() || !cfg_.packing || used + e->tokens.size() > size_t(cfg_.seq_len)) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(e);
    used += e->tokens.size();
  }
  return rows;
}

void DataLoader::start_epoch(int64_t epoch) {
  std::vector<size_t> order(examples_.size());
  std::iota(order.begin(), order.end(), size_t(0));
  if (cfg_.shuffle) {
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + uint64_t(epoch) + 1);
    std::shuffle(order.begin(), order.end(), rng);
  }
  rows_ = build_rows(order);
  cursor_ = {epoch, 0};
}

void DataLoader::restore(const DataCursor& c) {
  start_epoch(c.epoch);
  if (c.row < 0 || c.row > rows_per_epoch()) throw Error("data cursor row " + std::to_string(c.row) + " is out of range");
  cursor_.row = c.row;
}

std::vector<Batch> DataLoader::next_step(int micro_batches, int batch_size) {
  std::vector<Batch> out;
  for (int m = 0; m < micro_batches; ++m) {
    std::vector<std::vector<const Example*>> rows;
    for (int b = 0; b < batch_size; ++b) {
      if (cursor_.row >= rows_per_epoch()) start_epoch(cursor_.epoch + 1);
      rows.push_back(rows_[size_t(cursor_.row++)]);
    }
    out.push_back(make_batch(rows, cfg_.seq_len, cfg_.packing, pad_id_));
  }
  return out;
}

std::vector<Batch> DataLoader::ordered_batches(int batch_size, int max_batches) const {
  std::vector<size_t> order(examples_.size());
  std::iota(order.begin(), order.end(), size_t(0));
  const auto rows = build_rows(order);
  std::vector<Batch> out;
  for (size_t r = 0; r < rows.size() && (max_batches == 0 || int(out.size()) < max_batches); r += size_t(batch_size)) {
    std::vector<std::vector<const Example*>> chunk(rows.begin() + r, rows.begin() + std::min(rows.size(), r + batch_size));
    out.push_back(make_batch(chunk, cfg_.seq_len, cfg_.packing, pad_id_));
  }
  return out;
}

}  // namespace qft
