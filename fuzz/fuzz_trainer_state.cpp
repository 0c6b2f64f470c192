// trainer_state.json of a checkpoint: every field's type and range, and its agreement with the folder's name.
#include "fuzz/fuzz_input.h"
#include "trainer/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qft::fuzz::refusal_ok([&] {
    qft::parse_trainer_state(std::string(qft::fuzz::as_text(data, size)), "step_00000005/trainer_state.json", 5);
  });
  return 0;
}
