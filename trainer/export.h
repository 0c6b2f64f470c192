#pragma once
// qft export: a checkpoint (or any model qft can open) back to a plain HuggingFace LLaMA directory, with the
// INT8 weights dequantized to bf16, fp16 or fp32.
#include <cstddef>
#include <string>

#include "core/dtype.h"

namespace qft {

// What to write of a LoRA checkpoint: the adapted model as plain HF weights (W + alpha/r B A), a PEFT adapter
// directory (adapter_model.safetensors, adapter_config.json) for the base, or that base alone: the frozen weights
// the adapters were trained against (qft's INT8 base, dequantized), so that base + adapter reproduces qft's model.
enum class LoraExport { Merge, Adapter, Base };

struct ExportOptions {
  DType dtype = DType::BF16;            // BF16, F16 or F32
  size_t shard_bytes = 5'000'000'000;   // HF's default max_shard_size "5GB"
  LoraExport lora = LoraExport::Merge;  // for a source with LoRA adapters
};

struct ExportSummary {
  int shards = 0;
  size_t bytes = 0;   // tensor data written
  int tensors = 0;
};

// Writes out_dir (a PEFT adapter directory with LoraExport::Adapter, see above): model.safetensors, or model-0000k-of-0000N.safetensors shards with
// model.safetensors.index.json; config.json with torch_dtype set; generation config and tokenizer files
// copied. out_dir must not exist or be empty. The directory is built under a temporary name and renamed,
// so a failed export leaves nothing that looks complete.
ExportSummary export_hf(const std::string& source, const std::string& out_dir, const ExportOptions& opts);

// "5GB" (10^9), "500MiB" (2^20), "1.5GB" or a plain byte count; throws Error naming `where`.
size_t parse_byte_size(const std::string& text, const std::string& where);

}  // namespace qft
