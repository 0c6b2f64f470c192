// tokenizer.json decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence.
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "text/byte_level.h"
#include "text/hf_json.h"
#include "text/hf_pipeline.h"
#include "text/unicode.h"

namespace qft {

namespace {

using namespace hf_json;

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
  MetaspaceDecoder(const std::string& replacement, PrependScheme scheme) : replacement_(replacement, true), scheme_(scheme) {}
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      Piece p;
      p.text = std::move(tokens[i]);
      apply_edits(p, replace_edits(p, replacement_, " "));
      if (i == 0 && scheme_ != PrependScheme::Never && p.text.rfind(' ', 0) == 0) p.text.erase(0, 1);
      tokens[i] = std::move(p.text);
    }
    return tokens;
  }

 private:
  Regex replacement_;  // compiled once: generation decodes after every token
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

}  // namespace

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

}  // namespace qft
