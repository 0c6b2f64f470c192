#pragma once
// GPT-2's byte-level alphabet: every byte is written as one printable character, so that a BPE vocabulary of
// strings covers all byte sequences. Bytes that are printable Latin-1 stand for themselves; the others (controls,
// space, a few more) take the code points from U+0100 upwards, in byte order.
#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace qft {

class ByteAlphabet {
 public:
  ByteAlphabet() {
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      code_[size_t(b)] = char32_t(printable ? b : next++);
      byte_of_[code_[size_t(b)]] = uint8_t(b);
    }
  }
  char32_t char_of(uint8_t byte) const { return code_[byte]; }
  // The byte a character stands for, or -1 when it is not in the alphabet.
  int byte_of(char32_t c) const {
    const auto it = byte_of_.find(c);
    return it == byte_of_.end() ? -1 : int(it->second);
  }

 private:
  std::array<char32_t, 256> code_{};
  std::unordered_map<char32_t, uint8_t> byte_of_;
};

}  // namespace qft
