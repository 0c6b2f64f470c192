#!/usr/bin/env python3
"""Writes the pretraining corpus of the bundled tiny model: JSONL records {"text": ...} (qft's "text" format).

Every sentence comes from the small grammar and fact tables below (seeded, standard library only), plus the
hand-written lines of data/corpus.txt, so the corpus is license-clean and regenerates byte for byte. It
teaches plain English prose and simple facts (sums, opposites, colours, counting, lists). It never shows the
"### Instruction:" format: following instructions is what the fine-tune in configs/tiny.json adds.

usage: make_tiny_corpus.py OUT_DIR   -> OUT_DIR/train.jsonl, OUT_DIR/val.jsonl
"""
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_data import COLORS, OPPOSITES, WORDS  # noqa: E402  (one vocabulary for both datasets)

NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
SUBJECTS = ["the farmer", "a child", "the teacher", "my friend", "the old man", "a student", "the baker",
            "the engineer", "a traveler", "the captain", "the gardener", "a musician"]
VERBS = ["reads", "finds", "carries", "builds", "paints", "opens", "counts", "repairs", "cleans", "writes"]
OBJECTS = ["a book", "the door", "three apples", "a small boat", "the red box", "a long letter",
           "the wooden table", "seven stones", "a map of the city", "the garden gate"]
TAILS = ["in the morning", "after lunch", "before the rain", "near the river", "with great care",
         "every day", "at night", "on Sunday", "in the quiet room", "without a word"]


def cap(s):
    return s[0].upper() + s[1:]


def sentence(rng):
    kind = rng.randrange(8)
    if kind <= 1:
        return cap(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}.")
    if kind == 2:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return rng.choice([f"{a} plus {b} is {a + b}.", f"We know that {a} plus {b} is {a + b}.",
                           f"If you add {a} and {b}, you get {a + b}."])
    if kind == 3:
        w, o = rng.choice(OPPOSITES)
        if rng.random() < 0.5:
            w, o = o, w
        return rng.choice([f"The opposite of {w} is {o}.", cap(f"{w} and {o} are opposites.")])
    if kind == 4:
        thing = rng.choice(list(COLORS))
        return rng.choice([f"The {thing} is {COLORS[thing]}.", f"Everyone knows the {thing} is {COLORS[thing]}."])
    if kind == 5:
        n = rng.randint(2, 10)
        return cap(f"{rng.choice(SUBJECTS)} counts: " + ", ".join(NUMBERS[:n]) + ".")
    if kind == 6:
        items = rng.sample(WORDS, rng.randint(2, 5))
        return cap(f"{rng.choice(SUBJECTS)} {rng.choice(['buys', 'names', 'lists'])} " + ", ".join(items) + ".")
    w = rng.choice(WORDS)
    return cap(f"{rng.choice(SUBJECTS)} says {w}, {w} and {w} again.")


def paragraphs(n, seed, lines):
    rng = random.Random(seed)
    for _ in range(n):
        parts = [sentence(rng) for _ in range(rng.randint(2, 5))]
        if rng.random() < 0.3:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(lines))
        yield " ".join(parts)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "data", "tiny_pretrain")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(ROOT, "data", "corpus.txt")) as f:
        lines = [l.strip() for l in f if l.strip()]
    for name, n, seed in (("train", 40000, 11), ("val", 400, 12)):
        with open(os.path.join(out, f"{name}.jsonl"), "w") as f:
            for text in paragraphs(n, seed, lines):
                f.write(json.dumps({"text": text}) + "\n")


if __name__ == "__main__":
    main()
