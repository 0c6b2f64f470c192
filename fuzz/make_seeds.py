#!/usr/bin/env python3
"""Writes the committed seed corpus of each fuzz target into fuzz/seeds/<target>/ (stdlib only).

The seeds are small valid inputs, so that the fuzzer starts inside each parser's accepted language. Two come from qft
itself and are refreshed by hand: trainer_state/real (the trainer_state.json of a `qft train` checkpoint) and
checkpoint/small_int8 (QFT_FUZZ_MAKE_SEED=fuzz/seeds/checkpoint/small_int8 build-fuzz/fuzz/fuzz_checkpoint).
"""
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def main():
    write("safetensors", "f32_bf16", safetensors({
        "w": ("F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)),
        "b": ("BF16", [3], b"\x80\x3f\x00\x40\x40\xc0"),
    }, {"format": "pt"}))
    write("safetensors", "int8_parts", safetensors({
        "m.q": ("I8", [2, 2], b"\x01\xff\x7f\x80"),
        "m.scale": ("F32", [2], struct.pack("<2f", 0.5, 0.25)),
        "m.row_ptr": ("I32", [3], struct.pack("<3i", 0, 1, 1)),
        "m.col": ("U8", [1], b"\x01"),
        "m.val": ("F32", [1], struct.pack("<f", 9.0)),
        "h": ("F16", [1], b"\x00\x3c"),
        "d": ("F64", [1], struct.pack("<d", 2.0)),
        "r": ("U32", [1], struct.pack("<I", 3)),
        "s": ("U16", [1], struct.pack("<H", 3)),
    }))
    write("safetensors", "empty", safetensors({}))

    for cfg in sorted((ROOT / "configs").glob("*.json")):
        write("run_config", cfg.stem, cfg.read_text())
    write("run_config", "with_set", (ROOT / "configs" / "tiny.json").read_text() + "\0train.lr=3e-5")
    write("run_config", "set_object", '{"model": {"path": "m"}}\0model.arch={"hidden_size": 64}')

    lines = {
        "alpaca": {"instruction": "What is 4 plus 1?", "input": "", "output": "5."},
        "alpaca_input": {"instruction": "Reverse.", "input": "a, b", "output": "b, a"},
        "prompt_completion": {"prompt": "Say hi", "completion": " hi"},
        "text": {"text": "Once upon a time\nthere was a llama."},
        "chat": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"},
                              {"role": "assistant", "content": "Bye."}]},
    }
    for name, record in lines.items():
        write("jsonl_record", name, json.dumps(record, ensure_ascii=False))

    for name in ("gpt2_bpe", "llama2_conv", "sp_bpe"):
        write("tokenizer_json", name, (ROOT / "test" / "fixtures" / "tokenizers" / name / "tokenizer.json").read_bytes())

    state = {"format_version": 2, "qft_version": "0.1.0", "step": 5, "tokens": 640, "epoch": 0, "row": 20,
             "outlier_reselections": 0, "seed": 1,
             "config": json.loads((ROOT / "configs" / "tiny.json").read_text())}
    write("trainer_state", "step5", json.dumps(state, indent=2))
    # A config with sections left out: the parser once looked up config.train.seed past the end of the object.
    write("trainer_state", "step5_no_train", json.dumps({**state, "config": {"model": state["config"]["model"]}}))


if __name__ == "__main__":
    main()
