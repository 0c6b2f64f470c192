// tokenizer.json normalizers: Unicode forms (utf8proc), Lowercase, Prepend, Replace, Strip, Sequence.
#include <nlohmann/json.hpp>

#include "text/hf_json.h"
#include "text/hf_pipeline.h"
#include "text/unicode.h"

namespace qft {

namespace {

using namespace hf_json;

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

}  // namespace qft
