#include "text/hf_pipeline.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/byte_level.h"
#include "text/regex.h"
#include "text/unicode.h"

namespace qft {

namespace {

using nlohmann::json;

// GPT-2's pre-tokenizer regex, built into HF's ByteLevel pre-tokenizer (use_regex) rather than stored in the file.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

[[noreturn]] void unsupported(const std::string& where, const std::string& what) {
  throw UnsupportedError(where + ": " + what + " is not supported");
}

std::string type_of(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Error(where + ": expected an object with a \"type\"");
  }
  return j["type"].get<std::string>();
}

template <class T>
T field(const json& j, const char* key, const std::string& where, T fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw Error(where + "." + key + ": wrong type (" + it->type_name() + ")");
  }
}

// {"String": "x"} or {"Regex": "..."}: both become a Regex (a String one matched literally).
Regex pattern_of(const json& j, const std::string& where) {
  const auto it = j.find("pattern");
  if (it == j.end() || !it->is_object()) throw Error(where + ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
  if (it->contains("String")) return Regex(field<std::string>(*it, "String", where + ".pattern", ""), true);
  if (it->contains("Regex")) {
    try {
      return Regex(field<std::string>(*it, "Regex", where + ".pattern", ""), false);
    } catch (const UnsupportedError&) {
      throw;
    } catch (const Error& e) {
      throw Error(where + ".pattern: " + e.what());
    }
  }
  throw Error(where + ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
}

std::vector<Edit> replace_edits(const Piece& p, const Regex& re, const std::string& with) {
  std::vector<Edit> edits;
  re.for_each_match(p.text, [&](size_t a, size_t b) { edits.push_back({a, b, with}); });
  return edits;
}

// ---- normalizers ----

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm form) : form_(form) {}
  void apply(Piece& p) const override {
    const std::string whole = normalize(p.text, form_);
    if (whole == p.text) return;
    // Normalize run by run (a run starts at each character of combining class 0), so that each run's bytes keep
    // their place in the original; when that differs from normalizing the whole piece (composition across
    // starters, e.g. Hangul jamo), the whole piece is replaced and traced to its first byte.
    std::vector<Edit> edits;
    std::string joined;
    size_t run = 0;
    auto close = [&](size_t end) {
      if (end == run) return;
      const std::string_view src(p.text.data() + run, end - run);
      std::string n = normalize(src, form_);
      joined += n;
      if (n != src) edits.push_back({run, end, std::move(n)});
      run = end;
    };
    for (size_t i = 0; i < p.text.size(); i += utf8_length(static_cast<unsigned char>(p.text[i]))) {
      if (i > run && is_starter(utf8_decode(p.text, i))) close(i);
    }
    close(p.text.size());
    if (joined != whole) edits = {{0, p.text.size(), whole}};
    apply_edits(p, edits);
  }

 private:
  NormalForm form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  void apply(Piece& p) const override {
    std::vector<Edit> edits;
    for (size_t i = 0; i < p.text.size();) {
      const size_t n = utf8_length(static_cast<unsigned char>(p.text[i]));
      const std::string_view ch(p.text.data() + i, n);
      std::string lower = to_lower(ch);
      if (lower != ch) edits.push_back({i, i + n, std::move(lower)});
      i += n;
    }
    apply_edits(p, edits);
  }
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string s) : s_(std::move(s)) {}
  void apply(Piece& p) const override {
    if (!p.text.empty()) apply_edits(p, {{0, 0, s_}});
  }

 private:
  std::string s_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Regex re, std::string with) : re_(std::move(re)), with_(std::move(with)) {}
  void apply(Piece& p) const override { apply_edits(p, replace_edits(p, re_, with_)); }

 private:
  Regex re_;
  std::string with_;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void apply(Piece& p) const override {
    size_t a = 0, b = p.text.size();
    while (left_ && a < b && is_whitespace(utf8_decode(p.text, a))) a += utf8_length(static_cast<unsigned char>(p.text[a]));
    while (right_ && b > a) {
      size_t c = b - 1;
      while (c > a && (static_cast<unsigned char>(p.text[c]) & 0xC0) == 0x80) --c;
      if (!is_whitespace(utf8_decode(p.text, c))) break;
      b = c;
    }
    if (a > 0 || b < p.text.size()) p = p.slice(a, b);
  }

 private:
  bool left_, right_;
};

class NormalizerSequence final : public Normalizer {
 public:
  explicit NormalizerSequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void apply(Piece& p) const override {
    for (const auto& s : steps_) s->apply(p);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

// ---- pre-tokenizers ----

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

enum class PrependScheme { Always, First, Never };

PrependScheme prepend_scheme(const json& j, const std::string& where) {
  if (j.contains("prepend_scheme")) {
    const auto s = field<std::string>(j, "prepend_scheme", where, "always");
    if (s == "always") return PrependScheme::Always;
    if (s == "first") return PrependScheme::First;
    if (s == "never") return PrependScheme::Never;
    unsupported(where + ".prepend_scheme", "'" + s + "'");
  }
  return field<bool>(j, "add_prefix_space", where, true) ? PrependScheme::Always : PrependScheme::Never;  // older files
}

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

// ---- decoders ----

// Bytes to UTF-8, each invalid sequence written as U+FFFD (as Rust's from_utf8_lossy).
std::string utf8_lossy(const std::string& bytes) {
  if (find_invalid_utf8(bytes) == std::string::npos) return bytes;
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    const size_t n = utf8_length(static_cast<unsigned char>(bytes[i]));
    if (i + n <= bytes.size() && find_invalid_utf8(std::string_view(bytes).substr(i, n)) == std::string::npos) {
      out.append(bytes, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += 1;
      while (i < bytes.size() && (static_cast<unsigned char>(bytes[i]) & 0xC0) == 0x80 && n > 1) ++i;
    }
  }
  return out;
}

class ByteLevelDecoder final : public Decoder {
 public:
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      std::string mine;
      bool ok = true;
      for (size_t i = 0; i < t.size() && ok; i += utf8_length(static_cast<unsigned char>(t[i]))) {
        const int byte = alphabet_.byte_of(utf8_decode(t, i));
        if (byte < 0) {
          ok = false;
        } else {
          mine += char(byte);
        }
      }
      bytes += ok ? mine : t;  // a token outside the alphabet (an added token) stands for its own bytes
    }
    return {utf8_lossy(bytes)};
  }

 private:
  ByteAlphabet alphabet_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Regex re, std::string with) : re_(std::move(re)), with_(std::move(with)) {}
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      Piece p;
      p.text = std::move(t);
      apply_edits(p, replace_edits(p, re_, with_));
      t = std::move(p.text);
    }
    return tokens;
  }

 private:
  Regex re_;
  std::string with_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string pending;  // consecutive <0xXX> bytes
    size_t pending_count = 0;
    auto flush = [&] {
      if (pending_count == 0) return;
      if (find_invalid_utf8(pending) == std::string::npos) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending_count; ++i) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
      pending_count = 0;
    };
    for (std::string& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        byte = int(std::strtol(t.substr(3, 2).c_str(), nullptr, 16));
      }
      if (byte >= 0) {
        pending += char(byte);
        pending_count += 1;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    return out;
  }
};

class FuseDecoder final : public Decoder {
 public:
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    return {all};
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    for (std::string& t : tokens) {
      for (size_t i = 0; i < start_ && !content_.empty() && t.rfind(content_, 0) == 0; ++i) t.erase(0, content_.size());
      for (size_t i = 0; i < stop_ && !content_.empty() && t.size() >= content_.size() &&
                         t.compare(t.size() - content_.size(), content_.size(), content_) == 0;
           ++i) {
        t.resize(t.size() - content_.size());
      }
    }
    return tokens;
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme) : replacement_(std::move(replacement)), scheme_(scheme) {}
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    const Regex re(replacement_, true);
    for (size_t i = 0; i < tokens.size(); ++i) {
      Piece p;
      p.text = std::move(tokens[i]);
      apply_edits(p, replace_edits(p, re, " "));
      if (i == 0 && scheme_ != PrependScheme::Never && p.text.rfind(' ', 0) == 0) p.text.erase(0, 1);
      tokens[i] = std::move(p.text);
    }
    return tokens;
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
};

class DecoderSequence final : public Decoder {
 public:
  explicit DecoderSequence(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    for (const auto& s : steps_) tokens = s->decode(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

template <class Make>
auto make_list(const json& j, const char* key, const std::string& where, Make make) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_array()) throw Error(where + "." + key + ": expected a list");
  std::vector<decltype(make(json(), std::string()))> out;
  for (size_t i = 0; i < it->size(); ++i) out.push_back(make((*it)[i], where + "." + key + "[" + std::to_string(i) + "]"));
  return out;
}

std::string replacement_of(const json& j, const std::string& where) {
  const auto r = field<std::string>(j, "replacement", where, "\xE2\x96\x81");
  if (r.empty()) throw Error(where + ".replacement: must not be empty");
  return r;
}

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalForm::Nfc);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalForm::Nfd);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalForm::Nfkc);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalForm::Nfkd);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(field<std::string>(j, "prepend", where, ""));
  if (type == "Replace") return std::make_unique<ReplaceNormalizer>(pattern_of(j, where), field<std::string>(j, "content", where, ""));
  if (type == "Strip") return std::make_unique<StripNormalizer>(field<bool>(j, "strip_left", where, true), field<bool>(j, "strip_right", where, true));
  if (type == "Sequence") {
    return std::make_unique<NormalizerSequence>(
        make_list(j, "normalizers", where, [](const json& e, const std::string& w) { return make_normalizer(e, w); }));
  }
  unsupported(where, "normalizer '" + type + "'");
}

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

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace") return std::make_unique<ReplaceDecoder>(pattern_of(j, where), field<std::string>(j, "content", where, ""));
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(field<std::string>(j, "content", where, " "), field<size_t>(j, "start", where, 0),
                                          field<size_t>(j, "stop", where, 0));
  }
  if (type == "Metaspace") return std::make_unique<MetaspaceDecoder>(replacement_of(j, where), prepend_scheme(j, where));
  if (type == "Sequence") {
    return std::make_unique<DecoderSequence>(
        make_list(j, "decoders", where, [](const json& e, const std::string& w) { return make_decoder(e, w); }));
  }
  unsupported(where, "decoder '" + type + "'");
}

Affixes read_post_processor(const json& j, const std::string& where) {
  Affixes out;
  if (j.is_null()) return out;
  const std::string type = type_of(j, where);
  if (type == "ByteLevel") return out;  // adjusts offsets only
  if (type == "Sequence") {
    const auto it = j.find("processors");
    if (it == j.end() || !it->is_array()) throw Error(where + ".processors: expected a list");
    for (size_t i = 0; i < it->size(); ++i) {
      const Affixes a = read_post_processor((*it)[i], where + ".processors[" + std::to_string(i) + "]");
      out.prefix.insert(out.prefix.end(), a.prefix.begin(), a.prefix.end());
      out.suffix.insert(out.suffix.end(), a.suffix.begin(), a.suffix.end());
    }
    return out;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto id_of = [&](const char* key) {
      const auto it = j.find(key);
      if (it == j.end() || !it->is_array() || it->size() != 2 || !(*it)[1].is_number_integer()) {
        throw Error(where + "." + key + ": expected [token, id]");
      }
      return (*it)[1].get<int32_t>();
    };
    return {{id_of("cls")}, {id_of("sep")}};
  }
  if (type != "TemplateProcessing") unsupported(where, "post-processor '" + type + "'");
  const auto single = j.find("single");
  const auto specials = j.find("special_tokens");
  if (single == j.end() || !single->is_array()) throw Error(where + ".single: expected a list");
  bool after_sequence = false;
  for (const auto& item : *single) {
    if (item.contains("Sequence")) {
      after_sequence = true;
      continue;
    }
    const auto name = field<std::string>(item.value("SpecialToken", json::object()), "id", where + ".single", "");
    if (specials == j.end() || !specials->contains(name)) {
      throw Error(where + ".single: special token '" + name + "' is not in special_tokens");
    }
    const auto ids = field<std::vector<int32_t>>((*specials)[name], "ids", where + ".special_tokens." + name, {});
    auto& dst = after_sequence ? out.suffix : out.prefix;
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  return out;
}

}  // namespace qft
