// A sentencepiece tokenizer.model (LLaMA-1/2, Mistral). Control pieces written in the text (<s>, </s>) are
// encoded as their ids, as transformers' slow LlamaTokenizer does; the text between them is encoded on its own.
#include <sentencepiece_processor.h>

#include "core/error.h"
#include "core/file_io.h"
#include "text/tokenizer_files.h"

namespace qft {

namespace {

class SentencePieceModel final : public TokenizerModel {
 public:
  explicit SentencePieceModel(const std::string& path) : path_(path) {
    require_regular_file(path, "a sentencepiece model");  // a FIFO would block its reader
    const auto status = sp_.Load(path);
    if (!status.ok()) throw FileError(path, "not a valid sentencepiece model: " + status.ToString());
    for (int id = 0; id < sp_.GetPieceSize(); ++id) {
      if (sp_.IsControl(id) && !sp_.IdToPiece(id).empty()) controls_.push_back({sp_.IdToPiece(id), id});
    }
  }

  void encode(std::string_view text, std::vector<int32_t>& ids, std::vector<size_t>* offsets) const override {
    size_t at = 0;
    while (at < text.size()) {
      size_t next = text.size(), len = 0;
      int32_t control = -1;
      for (const auto& [piece, id] : controls_) {
        const size_t f = text.find(piece, at);
        if (f < next || (f == next && f != std::string_view::npos && piece.size() > len)) {
          next = f, len = piece.size(), control = id;
        }
      }
      encode_plain(text.substr(at, next - at), at, ids, offsets);
      if (control < 0) break;
      ids.push_back(control);
      if (offsets) offsets->push_back(next);
      at = next + len;
    }
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    const auto status = sp_.Decode(std::vector<int>(ids.begin(), ids.end()), &out);
    if (!status.ok()) throw Error(path_ + ": decode failed: " + status.ToString());
    return out;
  }

  int vocab_size() const override { return sp_.GetPieceSize(); }
  std::optional<int32_t> token_id(std::string_view token) const override {
    const int id = sp_.PieceToId(token);
    if (id == sp_.unk_id() && token != sp_.IdToPiece(id)) return std::nullopt;
    return id;
  }
  std::string describe() const override { return "sentencepiece"; }
  std::string piece(int id) const { return id >= 0 ? sp_.IdToPiece(id) : ""; }
  int bos() const { return sp_.bos_id(); }
  int eos() const { return sp_.eos_id(); }

 private:
  void encode_plain(std::string_view text, size_t base, std::vector<int32_t>& ids, std::vector<size_t>* offsets) const {
    if (text.empty()) return;
    const auto spt = sp_.EncodeAsImmutableProto(text);
    for (size_t i = 0; i < spt.pieces_size(); ++i) {
      const auto p = spt.pieces(int(i));
      ids.push_back(int32_t(p.id()));
      if (offsets) offsets->push_back(base + p.begin());
    }
  }

  sentencepiece::SentencePieceProcessor sp_;
  std::string path_;
  std::vector<std::pair<std::string, int32_t>> controls_;
};

}  // namespace

TokenizerFile open_sentencepiece_model(const std::string& path) {
  auto model = std::make_unique<SentencePieceModel>(path);
  TokenizerFile f;
  f.bos_token = model->piece(model->bos());
  f.eos_token = model->piece(model->eos());
  f.model = std::move(model);
  return f;
}

}  // namespace qft
