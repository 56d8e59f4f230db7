#!/usr/bin/env python3
"""Exactness beyond the fixtures: random and adversarial texts, gemforge vs Hugging Face `tokenizers`.

Texts mix ASCII words, runs of spaces/tabs/newlines, literal U+2581, HTML-ish
fragments (Gemma 3's vocabulary has a piece ">▁</" that crosses a word cut),
added/special token strings, CJK, emoji, combining marks, control characters
and code points from every plane. Every text is encoded by both (without and
with BOS); ids must be identical.
Usage: bench/tokenizer_fuzz_vs_hf.py [--gemforge build/gemforge] [--n 20000] [--seed 1]
"""
import argparse, json, lzma, os, random, subprocess, sys, tempfile
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer

ap = argparse.ArgumentParser()
here = os.path.dirname(os.path.abspath(__file__))
ap.add_argument("--gemforge", default=os.path.join(here, "..", "build", "gemforge"))
ap.add_argument("--fixtures", default=os.path.join(here, "..", "..", "shared", "fixtures", "tokenizers"))
ap.add_argument("--n", type=int, default=20000)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--gguf", help="also check this GGUF's tokenizer (Gemma 3 vocabulary) against HF's gemma3 tokenizer.json")
args = ap.parse_args()

FRAGMENTS = ["the", " the", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\u2581", "\u2581\u2581", ">", "<", "</", "> </", ">  </",
             "<b>", "</b>", "<div> </div>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<unused3>", "<mask>",
             "[multimodal]", "<0x41>", "def f(x):", "    return", "日本語", "中文测试", "한국어", "é", "e\u0301", "ﬁ", "\u200b",
             "\u00a0", "\r\n", "\x00", "\x7f", "😀", "👩‍👩‍👧", "\U0010fffd", "\U000e0041", "ZZZZZZZZZZZZZZZZZZZZ", "1234567890",
             "http://example.com/a?b=c", "...", "!!!", " ,", "'s", "''", '"', "\\", "{}", "()", "—", "…"]

def rand_cp(rng):
    r = rng.random()
    if r < 0.5: return chr(rng.randint(0x20, 0x7e))
    if r < 0.6: return chr(rng.choice([0x09, 0x0a, 0x0d, 0x20, 0x20, 0x20, 0x2581]))
    if r < 0.65: return chr(rng.randint(0x00, 0x1f))
    if r < 0.72: return chr(rng.randint(0x300, 0x36f))  # combining marks
    if r < 0.8: return chr(rng.randint(0x4e00, 0x9fff))
    while True:  # any plane, no surrogates
        cp = rng.randint(0xa0, 0x10ffff)
        if not 0xd800 <= cp <= 0xdfff: return chr(cp)

def rand_text(rng):
    parts = []
    for _ in range(rng.randint(1, 12)):
        if rng.random() < 0.5: parts.append(rng.choice(FRAGMENTS))
        else: parts.append("".join(rand_cp(rng) for _ in range(rng.randint(1, 8))))
    return "".join(parts)

rng = random.Random(args.seed)
texts = [rand_text(rng) for _ in range(args.n)]
bad = 0
for name in ["gemma", "gemma3"]:
    with tempfile.TemporaryDirectory() as d:
        tj = os.path.join(d, "tokenizer.json")
        open(tj, "wb").write(lzma.open(os.path.join(args.fixtures, f"{name}_tokenizer.json.xz")).read())
        hf = Tokenizer.from_file(tj)
        inp = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
        sources = [(tj, "")] + ([(args.gguf, " (GGUF)")] if args.gguf and name == "gemma3" else [])
        for (src, label), special in [(s, sp) for s in sources for sp in (False, True)]:
            cmd = [args.gemforge, "tokenize", "--tokenizer", src, "--jsonl"] + (["--special"] if special else [])
            out = subprocess.run(cmd, input=inp, capture_output=True, check=True).stdout.decode().splitlines()
            assert len(out) == len(texts), (len(out), len(texts))
            mism = 0
            for t, line in zip(texts, out):
                want = hf.encode(t, add_special_tokens=special).ids
                got = json.loads(line)["ids"]
                if got != want:
                    mism += 1
                    if mism <= 3: print(f"  MISMATCH {name}{label} special={special}: {t!r}\n    hf {want}\n    gf {got}")
            print(f"{name}{label} special={special}: {len(texts)} texts, {mism} mismatches")
            bad += mism
sys.exit(1 if bad else 0)
