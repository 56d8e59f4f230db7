#!/usr/bin/env python3
"""Tokenizer speed: gemforge vs Hugging Face `tokenizers`, single thread, same corpus, same run.

Corpus: every text of ../shared/fixtures/tokenizers/tok_gemma*_shared.jsonl, repeated --repeat times.
gemforge is timed as a process (`gemforge tokenize --jsonl`), and its load time (same command on
empty input) is subtracted; HF is timed in-process (load and encode separately).
Usage: bench/tokenizer_bench.py [--gemforge build/gemforge] [--repeat 20]
"""
import argparse, json, lzma, os, subprocess, tempfile, time
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
from tokenizers import Tokenizer

ap = argparse.ArgumentParser()
here = os.path.dirname(os.path.abspath(__file__))
ap.add_argument("--gemforge", default=os.path.join(here, "..", "build", "gemforge"))
ap.add_argument("--fixtures", default=os.path.join(here, "..", "..", "shared", "fixtures", "tokenizers"))
ap.add_argument("--repeat", type=int, default=20)
args = ap.parse_args()

def best_of(n, f):
    best = None
    for _ in range(n):
        t0 = time.perf_counter(); out = f(); dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return best, out

for name in ["gemma", "gemma3"]:
    texts = [json.loads(l)["text"] for l in open(os.path.join(args.fixtures, f"tok_{name}_shared.jsonl"))]
    corpus = texts * args.repeat
    nbytes = sum(len(t.encode()) for t in corpus)
    with tempfile.TemporaryDirectory() as d:
        tj = os.path.join(d, "tokenizer.json")
        open(tj, "wb").write(lzma.open(os.path.join(args.fixtures, f"{name}_tokenizer.json.xz")).read())
        jsonl = os.path.join(d, "in.jsonl")
        with open(jsonl, "w") as f:
            for t in corpus: f.write(json.dumps({"text": t}) + "\n")
        hf_load, tok = best_of(3, lambda: Tokenizer.from_file(tj))
        hf_enc, hf_ids = best_of(3, lambda: [tok.encode(t, add_special_tokens=False).ids for t in corpus])
        ntok = sum(len(x) for x in hf_ids)
        def run(inp):
            with open(inp) as f:
                return subprocess.run([args.gemforge, "tokenize", "--tokenizer", tj, "--jsonl"], stdin=f, capture_output=True, check=True).stdout
        empty = os.path.join(d, "empty.jsonl"); open(empty, "w").close()
        gf_load, _ = best_of(3, lambda: run(empty))
        gf_total, out = best_of(3, lambda: run(jsonl))
        gf_ids = [json.loads(l)["ids"] for l in out.decode().splitlines()]
        assert gf_ids == hf_ids, "gemforge and HF ids differ"
        gf_enc = gf_total - gf_load
        print(f"{name}: {len(corpus)} texts, {nbytes/1e6:.2f} MB, {ntok} tokens (ids identical)")
        print(f"  load:   gemforge {gf_load*1e3:7.1f} ms (process incl.)   HF {hf_load*1e3:7.1f} ms")
        print(f"  encode: gemforge {ntok/gf_enc/1e6:7.2f} M tok/s (incl. JSON I/O)   HF {ntok/hf_enc/1e6:7.2f} M tok/s   speed-up {hf_enc/gf_enc:.2f}x")
