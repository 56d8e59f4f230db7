#!/usr/bin/env python3
"""Tokenizer speed: gemforge vs Hugging Face `tokenizers`, single thread, same corpus, same run.

Corpus: every text of ../shared/fixtures/tokenizers/tok_<name>_shared.jsonl, repeated --repeat times.
Both sides cache words, so two figures are given:
  repeated: the corpus x --repeat, best of 3 (caches warm: the steady state of a server);
  cold:     the corpus once, by a freshly loaded tokenizer (every word's first sight).
gemforge is measured two ways: as the `gemforge tokenize --jsonl` process (its load time, measured
on empty input, subtracted; JSON parsing and printing included) and in-process (`--stats`, the
encode calls alone). HF is timed in-process: `encode(t, add_special_tokens=False)` per text.
Ids are checked identical.
Usage: bench/tokenizer_bench.py [--gemforge build/gemforge] [--repeat 30]
"""
import argparse, json, lzma, os, re, subprocess, tempfile, time
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
import tokenizers
from tokenizers import Tokenizer

ap = argparse.ArgumentParser()
here = os.path.dirname(os.path.abspath(__file__))
ap.add_argument("--gemforge", default=os.path.join(here, "..", "build", "gemforge"))
ap.add_argument("--fixtures", default=os.path.join(here, "..", "..", "shared", "fixtures", "tokenizers"))
ap.add_argument("--repeat", type=int, default=30)
args = ap.parse_args()

def best_of(n, f):
    best, out = None, None
    for _ in range(n):
        t0 = time.perf_counter(); out = f(); dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return best, out

def gemforge(tj, path):
    with open(path) as f:
        r = subprocess.run([args.gemforge, "tokenize", "--tokenizer", tj, "--jsonl", "--stats"], stdin=f,
                           capture_output=True, check=True)
    err = r.stderr.decode()
    load_ms = float(re.search(r"load: ([\d.]+) ms", err).group(1))
    enc = re.search(r"(\d+) tokens in ([\d.]+) ms", err)
    ms = float(enc.group(2))
    return r.stdout, load_ms, int(enc.group(1)) / (ms / 1e3) if ms > 0 else 0.0

print(f"tokenizers {tokenizers.__version__}; gemforge {args.gemforge}; repeat {args.repeat}")
for name in ["gemma", "gemma3"]:
    texts = [json.loads(l)["text"] for l in open(os.path.join(args.fixtures, f"tok_{name}_shared.jsonl"))]
    corpus = texts * args.repeat
    nbytes = sum(len(t.encode()) for t in corpus)
    with tempfile.TemporaryDirectory() as d:
        tj = os.path.join(d, "tokenizer.json")
        open(tj, "wb").write(lzma.open(os.path.join(args.fixtures, f"{name}_tokenizer.json.xz")).read())
        def write_jsonl(path, items):
            with open(path, "w") as f:
                for t in items: f.write(json.dumps({"text": t}) + "\n")
        jsonl, once, empty = (os.path.join(d, x) for x in ("in.jsonl", "once.jsonl", "empty.jsonl"))
        write_jsonl(jsonl, corpus); write_jsonl(once, texts); write_jsonl(empty, [])

        # HF: load, cold single pass on a fresh instance, then the repeated corpus.
        hf_load, tok = best_of(3, lambda: Tokenizer.from_file(tj))
        cold = []
        for _ in range(3):
            fresh = Tokenizer.from_file(tj)
            t0 = time.perf_counter(); ids = [fresh.encode(t, add_special_tokens=False).ids for t in texts]
            cold.append((time.perf_counter() - t0, ids))
        hf_cold_s, hf_once_ids = min(cold, key=lambda x: x[0])
        hf_enc, hf_ids = best_of(3, lambda: [tok.encode(t, add_special_tokens=False).ids for t in corpus])
        ntok = sum(len(x) for x in hf_ids)
        ntok_once = sum(len(x) for x in hf_once_ids)

        # gemforge: process times (load subtracted) and in-process figures.
        gf_empty, (_, gf_load_ms, _) = best_of(3, lambda: gemforge(tj, empty))
        gf_total, (out, _, gf_inproc) = best_of(3, lambda: gemforge(tj, jsonl))
        gf_cold_inproc = max(gemforge(tj, once)[2] for _ in range(3))
        gf_ids = [json.loads(l)["ids"] for l in out.decode().splitlines()]
        assert gf_ids == hf_ids, "gemforge and HF ids differ"
        gf_proc = ntok / (gf_total - gf_empty)
        hf_rep = ntok / hf_enc
        hf_cold = ntok_once / hf_cold_s
        print(f"{name}: {len(corpus)} texts, {nbytes/1e6:.2f} MB, {ntok} tokens (ids identical)")
        print(f"  load:   gemforge {gf_load_ms:7.1f} ms in-process, {gf_empty*1e3:7.1f} ms whole process   HF {hf_load*1e3:7.1f} ms")
        print(f"  repeated: gemforge {gf_proc/1e6:6.2f} M tok/s process (JSON I/O incl.), {gf_inproc/1e6:6.2f} M tok/s in-process"
              f"   HF {hf_rep/1e6:6.2f} M tok/s   speed-up {gf_proc/hf_rep:.2f}x process, {gf_inproc/hf_rep:.2f}x in-process")
        print(f"  cold (corpus once, {ntok_once} tokens): gemforge {gf_cold_inproc/1e6:6.2f} M tok/s in-process"
              f"   HF {hf_cold/1e6:6.2f} M tok/s   speed-up {gf_cold_inproc/hf_cold:.2f}x")
