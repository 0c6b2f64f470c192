// tokenizer.json pre-tokenizers: ByteLevel, Split, Metaspace, Sequence.
#include <functional>
#include <nlohmann/json.hpp>

#include "text/hf_json.h"
#include "text/hf_pipeline.h"
#include "text/unicode.h"

namespace qft {

namespace {

using namespace hf_json;

// GPT-2's pre-tokenizer regex, built into HF's ByteLevel pre-tokenizer (use_regex) rather than stored in the file.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };

// Splits one piece at the matches of `re` as HF's SplitDelimiterBehavior says.
void split_by(const Piece& p, const Regex& re, SplitBehavior behavior, bool invert, std::vector<Piece>& out) {
  struct Segment {
    size_t a, b;
    bool match;
  };
  std::vector<Segment> segs;
  size_t at = 0;
  re.for_each_match(p.text, [&](size_t a, size_t b) {
    if (a > at) segs.push_back({at, a, invert});
    segs.push_back({a, b, !invert});
    at = b;
  });
  if (at < p.text.size()) segs.push_back({at, p.text.size(), invert});
  std::vector<std::pair<size_t, size_t>> ranges;
  bool previous_match = false;
  for (const Segment& s : segs) {
    bool extend = false;  // joins the range before it instead of starting one
    switch (behavior) {
      case SplitBehavior::Isolated: break;
      case SplitBehavior::Removed:
        if (s.match) continue;
        break;
      case SplitBehavior::MergedWithPrevious: extend = s.match && !previous_match; break;
      case SplitBehavior::MergedWithNext: extend = !s.match && previous_match; break;
      case SplitBehavior::Contiguous: extend = s.match && previous_match; break;
    }
    if (extend && !ranges.empty()) {
      ranges.back().second = s.b;
    } else {
      ranges.push_back({s.a, s.b});
    }
    previous_match = s.match;
  }
  for (const auto& [a, b] : ranges) {
    if (b > a) out.push_back(p.slice(a, b));
  }
}

void for_each_text_piece(std::vector<Piece>& pieces, const std::function<void(Piece&, std::vector<Piece>&)>& fn) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (Piece& p : pieces) {
    if (p.token >= 0) {
      out.push_back(std::move(p));
    } else {
      fn(p, out);
    }
  }
  pieces = std::move(out);
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex re, SplitBehavior behavior, bool invert) : re_(std::move(re)), behavior_(behavior), invert_(invert) {}
  void split(std::vector<Piece>& pieces) const override {
    for_each_text_piece(pieces, [&](Piece& p, std::vector<Piece>& out) { split_by(p, re_, behavior_, invert_, out); });
  }

 private:
  Regex re_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) re_ = std::make_unique<Regex>(kGpt2Pattern, false);
  }
  void split(std::vector<Piece>& pieces) const override {
    for_each_text_piece(pieces, [&](Piece& p, std::vector<Piece>& out) {
      if (add_prefix_space_ && p.text.rfind(' ', 0) != 0) apply_edits(p, {{0, 0, " "}});
      if (re_) {
        split_by(p, *re_, SplitBehavior::Isolated, false, out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
    });
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split), re_(replacement_, true), space_(" ", true) {}
  void split(std::vector<Piece>& pieces) const override {
    for_each_text_piece(pieces, [&](Piece& p, std::vector<Piece>& out) {
      apply_edits(p, replace_edits(p, space_, replacement_));
      const bool at_text_start = !p.text.empty() && p.source(0) == 0;
      const bool prepend = scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && at_text_start);
      if (prepend && !p.text.empty() && p.text.rfind(replacement_, 0) != 0) apply_edits(p, {{0, 0, replacement_}});
      if (split_) {
        split_by(p, re_, SplitBehavior::MergedWithNext, false, out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  Regex re_, space_;
};

class PreTokenizerSequence final : public PreTokenizer {
 public:
  PreTokenizerSequence(std::vector<std::unique_ptr<PreTokenizer>> steps, const std::string& where) : steps_(std::move(steps)) {
    for (size_t i = 0; i + 1 < steps_.size(); ++i) {
      if (steps_[i]->byte_level()) unsupported(where, "a pre-tokenizer after ByteLevel");
    }
  }
  void split(std::vector<Piece>& pieces) const override {
    for (const auto& s : steps_) s->split(pieces);
  }
  bool byte_level() const override { return !steps_.empty() && steps_.back()->byte_level(); }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(field<bool>(j, "add_prefix_space", where, true), field<bool>(j, "use_regex", where, true));
  }
  if (type == "Split") {
    const auto b = field<std::string>(j, "behavior", where, "Isolated");
    SplitBehavior behavior;
    if (b == "Isolated") behavior = SplitBehavior::Isolated;
    else if (b == "Removed") behavior = SplitBehavior::Removed;
    else if (b == "MergedWithPrevious") behavior = SplitBehavior::MergedWithPrevious;
    else if (b == "MergedWithNext") behavior = SplitBehavior::MergedWithNext;
    else if (b == "Contiguous") behavior = SplitBehavior::Contiguous;
    else unsupported(where + ".behavior", "'" + b + "'");
    return std::make_unique<SplitPreTokenizer>(pattern_of(j, where), behavior, field<bool>(j, "invert", where, false));
  }
  if (type == "Metaspace") {
    return std::make_unique<MetaspacePreTokenizer>(replacement_of(j, where), prepend_scheme(j, where), field<bool>(j, "split", where, true));
  }
  if (type == "Sequence") {
    return std::make_unique<PreTokenizerSequence>(
        make_list(j, "pretokenizers", where, [](const json& e, const std::string& w) { return make_pre_tokenizer(e, w); }), where);
  }
  unsupported(where, "pre-tokenizer '" + type + "'");
}

}  // namespace qft
