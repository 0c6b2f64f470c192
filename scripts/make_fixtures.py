#!/usr/bin/env python3
"""Builds qft's golden fixtures with HuggingFace transformers, the peer that qft must agree with.

For each small random LlamaForCausalLM it writes an HF model directory (save_pretrained, safetensors) and
golden.safetensors: a fixed batch (input_ids, labels), the logits, the loss and every parameter's gradient.
It also trains the sentencepiece tokenizer they share, and builds the embedded demo model models/tiny-llama.

    /opt/fixenv/bin/pip install torch transformers sentencepiece safetensors peft
    /opt/fixenv/bin/python scripts/make_fixtures.py

The outputs are committed; CI never runs this script. Versions are recorded in test/fixtures/VERSIONS.json.
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile

import safetensors
import safetensors.torch
import sentencepiece as spm
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_corpus import OBJECTS, SUBJECTS, TAILS, VERBS  # noqa: E402  (the grammar both share)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 500  # deliberately not a power of two

FIXTURES = {
    # plain multi-head attention, untied embeddings, sharded checkpoint
    "mha_untied": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, tie_word_embeddings=False, rope_theta=10000.0, shard="40KB"),
    # grouped-query attention, tied embeddings, rope_theta != 10000 with llama3 rope scaling
    "gqa_tied": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=8,
                     num_key_value_heads=2, tie_word_embeddings=True, rope_theta=500000.0,
                     rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    # awkward sizes: hidden 72 (not a multiple of 64), explicit head_dim != hidden/heads, padded vocab 509
    "awkward": dict(hidden_size=72, intermediate_size=200, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, tie_word_embeddings=False, rope_theta=10000.0,
                    vocab_size=509, rms_norm_eps=1e-5),
}

TINY = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, tie_word_embeddings=False, rope_theta=10000.0, max_position_embeddings=512)


def synthetic_sentences(n, seed):
    """Simple sentences from a tiny grammar, so the tokenizer sees enough text without any third-party corpus."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."
        out.append(s[0].upper() + s[1:])
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        out.append(f"What is {a} plus {b}? The answer is {a + b}.")
    return out


def train_tokenizer(workdir):
    with open(os.path.join(ROOT, "data", "corpus.txt")) as f:
        lines = [l.strip() for l in f if l.strip()]
    text = os.path.join(workdir, "train.txt")
    with open(text, "w") as f:
        f.write("\n".join(lines + synthetic_sentences(400, seed=1)) + "\n")
    prefix = os.path.join(workdir, "tokenizer")
    # LLaMA-style settings: BPE, byte fallback, digits split, <unk>=0 <s>=1 </s>=2, no pad.
    spm.SentencePieceTrainer.train(
        input=text, model_prefix=prefix, vocab_size=VOCAB, model_type="bpe", byte_fallback=True,
        split_digits=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, num_threads=1, minloglevel=2)
    return prefix + ".model", lines


def save_tokenizer(model_file, outdir):
    shutil.copy(model_file, os.path.join(outdir, "tokenizer.model"))
    cfg = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
           "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 4096,
           "legacy": True, "clean_up_tokenization_spaces": False}
    with open(os.path.join(outdir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(outdir, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f, indent=2)


def make_config(spec):
    spec = dict(spec)
    spec.pop("shard", None)
    spec.setdefault("vocab_size", VOCAB)
    spec.setdefault("max_position_embeddings", 128)
    spec.setdefault("rms_norm_eps", 1e-6)
    return LlamaConfig(bos_token_id=1, eos_token_id=2, pad_token_id=None, hidden_act="silu",
                       attention_bias=False, mlp_bias=False, attn_implementation="eager", **spec)


def randomize(model, seed):
    """Random weights of a realistic scale; norm weights away from 1 so that their use is tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / fan_in ** 0.5))


def make_batch(sp, lines, seq_len, seed):
    rng = random.Random(seed)
    ids = []
    for line in rng.sample(lines, len(lines)):
        ids += [1] + sp.encode(line)
    rows = [ids[i * seq_len:(i + 1) * seq_len] for i in range(2)]
    input_ids = torch.tensor(rows, dtype=torch.long)
    labels = input_ids.clone()
    labels[1, :5] = -100  # a prompt that carries no loss: exercises the ignore index
    return input_ids, labels


def build_fixture(name, spec, sp, lines, tok_model, outdir, seed):
    torch.manual_seed(seed)
    config = make_config(spec)
    model = LlamaForCausalLM(config).float()
    randomize(model, seed)
    model.eval()  # no dropout; gradients still flow
    input_ids, labels = make_batch(sp, lines, seq_len=24, seed=seed)
    out = model(input_ids=input_ids, labels=labels)
    out.loss.backward()
    golden = {"input_ids": input_ids.to(torch.int32).contiguous(), "labels": labels.to(torch.int32).contiguous(),
              "logits": out.logits.detach().float().contiguous(), "loss": out.loss.detach().reshape(1)}
    for pname, p in model.named_parameters():
        golden["grad." + pname] = p.grad.detach().float().contiguous()
    os.makedirs(outdir, exist_ok=True)
    kwargs = {"max_shard_size": spec["shard"]} if "shard" in spec else {}
    model.save_pretrained(outdir, safe_serialization=True, **kwargs)
    save_tokenizer(tok_model, outdir)
    safetensors.torch.save_file(golden, os.path.join(outdir, "golden.safetensors"),
                                metadata={"fixture": name, "loss": repr(out.loss.item())})
    print(f"{name}: params={sum(p.numel() for p in model.parameters())} loss={out.loss.item():.6f}")


def tokenizer_cases(sp):
    texts = ["Hello world", "The river runs past the old mill.", "  two  spaces", "Digits 12345 and ü ñ 漢字",
             "What is 7 plus 8? The answer is 15.", "", "\ttab and\nnewline"]
    return [{"text": t, "ids": sp.encode(t)} for t in texts]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "test", "fixtures"))
    ap.add_argument("--tiny", default=os.path.join(ROOT, "models", "tiny-llama"),
                    help="where the random-init demo model goes (scripts/make_tiny_model.sh pretrains it)")
    ap.add_argument("--tiny-only", action="store_true", help="write only the random-init demo model")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    with tempfile.TemporaryDirectory() as work:
        tok_model, lines = train_tokenizer(work)
        sp = spm.SentencePieceProcessor(model_file=tok_model)
        for i, (name, spec) in enumerate([] if args.tiny_only else FIXTURES.items()):
            d = os.path.join(args.fixtures, name)
            shutil.rmtree(d, ignore_errors=True)
            build_fixture(name, spec, sp, lines, tok_model, d, seed=100 + i)
        if not args.tiny_only:
            with open(os.path.join(args.fixtures, "tokenizer_cases.json"), "w") as f:
                json.dump(tokenizer_cases(sp), f, indent=1, ensure_ascii=False)

        # The embedded demo model's random init, in bf16 like real checkpoints; make_tiny_model.sh pretrains it.
        shutil.rmtree(args.tiny, ignore_errors=True)
        torch.manual_seed(7)
        tiny = LlamaForCausalLM(make_config(TINY)).to(torch.bfloat16)
        tiny.save_pretrained(args.tiny, safe_serialization=True)
        save_tokenizer(tok_model, args.tiny)

    if args.tiny_only:
        return
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__, "sentencepiece": spm.__version__,
                "safetensors": safetensors.__version__}
    with open(os.path.join(args.fixtures, "VERSIONS.json"), "w") as f:
        json.dump(versions, f, indent=2)
    print(json.dumps(versions))


if __name__ == "__main__":
    main()
