// The safetensors reader: header length, JSON header, dtypes, shapes and offsets against the file's size.
#include "fuzz/fuzz_input.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qft::fuzz::write_input("model.safetensors", qft::fuzz::as_text(data, size));
  qft::fuzz::refusal_ok([&] {
    const qft::SafeTensorsFile f(path);
    for (const qft::SafeTensorInfo& t : f.tensors()) {
      const bool floating = t.dtype == qft::DType::F32 || t.dtype == qft::DType::F16 || t.dtype == qft::DType::BF16;
      if (floating) f.read_f32(t.name);
      else f.read(t.name);
    }
  });
  return 0;
}
