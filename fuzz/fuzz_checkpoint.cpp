// A checkpoint's weights file read into a small INT8 model: dtypes and shapes against the model, tensors missing or
// extra, outlier row pointers and columns, scales and values. The manifest's hash, checked before this on every
// real load, is left out so that the fuzzer reaches these checks.
#include <cstdlib>

#include "cpu/cpu_backend.h"
#include "fuzz/fuzz_input.h"
#include "model/llama.h"
#include "trainer/checkpoint.h"

namespace {

qft::LlamaModel& small_model() {
  static qft::CpuBackend backend;
  static qft::LlamaModel model = [] {
    qft::LlamaConfig c;
    c.hidden_size = 16;
    c.intermediate_size = 24;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 8;
    c.vocab_size = 32;
    return qft::LlamaModel(c, backend, qft::WeightStorage{true, 0.1});
  }();
  return model;
}

}  // namespace

// QFT_FUZZ_MAKE_SEED=FILE: writes the model's own weights file as the seed, and exits.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* seed = std::getenv("QFT_FUZZ_MAKE_SEED")) {
    small_model().init_random(1);
    qft::write_checkpoint_weights(seed, small_model());
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qft::fuzz::write_input("model.safetensors", qft::fuzz::as_text(data, size));
  qft::fuzz::refusal_ok([&] { qft::read_checkpoint_weights(path, small_model()); });
  return 0;
}
