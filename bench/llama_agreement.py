#!/usr/bin/env python3
"""Agreement of gemforge with llama.cpp on one GGUF (issue 4, item 6).

1. Tokenization: every text of shared/fixtures/tokenizers/tok_gemma3_shared.jsonl
   plus the greedy prompts below, `llama-tokenize --ids --no-bos --no-parse-special --no-escape`
   vs `gemforge tokenize --jsonl` (no BOS, control tokens as text).
2. Greedy continuations: 20 prompts x 64 tokens. llama.cpp through `llama-server`
   (/completion with the prompt as token ids, top-k 1, n_probs 5) and gemforge
   through `gemforge run --prompt-ids ... --temp 0 --print-ids`. At the first
   differing token, both engines' log-probabilities of the two candidate tokens
   are compared: llama.cpp's from its n_probs, ours from `gemforge score`.
   The exact model's preference is measured too (gemforge with
   GEMFORGE_FLOAT_ACTIVATIONS=1: dequantized weights times float32 activations,
   without the int8 rounding of activations that both engines do; positive means
   it sides with gemforge). A divergence counts as a near-tie when the exact
   model's |preference| and gemforge's preference are both below --tie (nats):
   the two tokens are then within the activation-rounding noise of either engine.

Usage:
  python3 bench/llama_agreement.py --model M.gguf --llama-bin /path/to/llama.cpp/build/bin \
      --gemforge build/gemforge [--threads 2] [--json out.json]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "shared", "fixtures")

PROMPTS = [
    "Question: Why is the sky blue?\nAnswer:",
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea,",
    "The three primary colors are",
    "Question: What is the boiling point of water at sea level?\nAnswer:",
    "import numpy as np\n\n# Compute the mean of a list of numbers\n",
    "Here is a recipe for a simple tomato soup:\n1.",
    "The theory of relativity, proposed by Albert Einstein,",
    "In 1969, the Apollo 11 mission",
    "Translate to French: 'Good morning, how are you?'\nFrench:",
    "Photosynthesis is the process by which",
    "A haiku about autumn:\n",
    "The main differences between Python and C++ are",
    "Question: How many legs does a spider have?\nAnswer:",
    "SELECT name, age FROM users WHERE",
    "The best way to learn a new language is",
    "Mount Everest is the highest mountain on Earth. It is located",
    "Dear hiring manager,\n\nI am writing to apply for",
    "1, 1, 2, 3, 5, 8, 13,",
]


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw).stdout


def tokenization(args, texts):
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    ours = [json.loads(l)["ids"] for l in sh([args.gemforge, "tokenize", "--tokenizer", args.model, "--jsonl",
                                              "--no-parse-special"], input=lines).splitlines()]
    same, diffs = 0, []
    for text, o in zip(texts, ours):
        out = sh([os.path.join(args.llama_bin, "llama-tokenize"), "-m", args.model, "-p", text, "--ids", "--no-bos",
                  "--no-parse-special", "--no-escape", "--log-disable"])  # no-escape: "\\n" stays two characters
        theirs = json.loads(out.strip().splitlines()[-1])
        if theirs == o:
            same += 1
        else:
            diffs.append({"text": text, "gemforge": o, "llama": theirs})
    return same, diffs


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def start_llama_server(args):
    proc = subprocess.Popen([os.path.join(args.llama_bin, "llama-server"), "-m", args.model, "-t", str(args.threads),
                             "-c", "2048", "-np", "1", "--port", str(args.port), "--log-disable"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except Exception:
            time.sleep(0.2)
    proc.kill()
    sys.exit("llama-server did not come up")


def llama_greedy(args, ids, n):
    r = post(args.port, "/completion", {"prompt": ids, "n_predict": n, "temperature": 0, "top_k": 1, "n_probs": 5,
                                        "cache_prompt": False, "return_tokens": True, "samplers": ["top_k"]})
    toks = r.get("tokens") or [p["id"] for p in r["completion_probabilities"]]
    probs = []  # per position: {id: logprob}
    for p in r["completion_probabilities"]:
        top = p.get("top_logprobs") or p.get("top_probs") or []
        d = {}
        for t in top:
            lp = t.get("logprob")
            if lp is None and "prob" in t:
                import math
                lp = math.log(max(t["prob"], 1e-30))
            d[t["id"]] = lp
        probs.append(d)
    return toks[:n], probs


def our_greedy(args, ids, n):
    out = sh([args.gemforge, "run", "-m", args.model, "--prompt-ids", ",".join(map(str, ids)), "-n", str(n), "--temp", "0",
              "--print-ids", "-t", str(args.threads)])
    return [int(x) for x in out.split()]


def our_logprob(args, ids, exact=False):
    """log p(ids[-1] | ids[:-1]) under gemforge; exact: float32 activations (no int8 rounding)."""
    env = dict(os.environ, GEMFORGE_FLOAT_ACTIVATIONS="1" if exact else "0")
    out = sh([args.gemforge, "score", "-m", args.model, "--ids", ",".join(map(str, ids)), "-t", str(args.threads)], env=env)
    rows = [l.split("\t") for l in out.splitlines() if l and l[0].isdigit()]
    return float(rows[-1][2])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--llama-bin", required=True)
    ap.add_argument("--gemforge", default=os.path.join(HERE, "..", "build", "gemforge"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int, default=18190)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--tie", type=float, default=0.3, help="largest preference (nats) still called a near-tie")
    ap.add_argument("--tokenize-only", action="store_true", help="skip the greedy comparison (no llama-server needed)")
    ap.add_argument("--json")
    args = ap.parse_args()

    texts = [json.loads(l)["text"] for l in open(os.path.join(FIXTURES, "tokenizers", "tok_gemma3_shared.jsonl"))]
    texts = [t for t in texts if t] + PROMPTS
    same, diffs = tokenization(args, texts)
    print(f"tokenization: {same}/{len(texts)} texts identical")
    for d in diffs[:5]:
        print("  differs:", json.dumps(d)[:300])

    if args.tokenize_only:
        return 0 if same == len(texts) else 1
    proc = start_llama_server(args)
    results = []
    try:
        for prompt in PROMPTS:
            ids = [2] + json.loads(sh([args.gemforge, "tokenize", "--tokenizer", args.model, "--jsonl", "--no-parse-special"],
                                      input=json.dumps({"text": prompt}) + "\n"))["ids"]
            theirs, their_lp = llama_greedy(args, ids, args.n)
            ours = our_greedy(args, ids, args.n)
            k = next((i for i in range(min(len(ours), len(theirs))) if ours[i] != theirs[i]), None)
            r = {"prompt": prompt, "identical": k is None and len(ours) == len(theirs), "ours": ours, "llama": theirs}
            if k is not None:
                prefix = ids + ours[:k]
                o_ours, o_theirs = our_logprob(args, prefix + [ours[k]]), our_logprob(args, prefix + [theirs[k]])
                l_theirs = their_lp[k].get(theirs[k])
                l_ours = their_lp[k].get(ours[k])
                e_pref = our_logprob(args, prefix + [ours[k]], True) - our_logprob(args, prefix + [theirs[k]], True)
                r.update({"diverge_at": k, "our_pref": o_ours - o_theirs, "exact_pref": e_pref,
                          "llama_pref": None if l_ours is None or l_theirs is None else l_theirs - l_ours})
                # Explained when the exact quantized model is itself nearly indifferent
                # and gemforge's preference for its token is small too.
                r["near_tie"] = abs(e_pref) < args.tie and r["our_pref"] < args.tie
            results.append(r)
            status = "identical" if r["identical"] else (
                f"diverges at token {r['diverge_at']}: gemforge prefers its token by {r['our_pref']:.3f} nats, "
                f"llama.cpp prefers its own by {r['llama_pref'] if r['llama_pref'] is None else round(r['llama_pref'], 3)} nats; "
                f"exact model (f32 activations): {r['exact_pref']:+.3f}"
                f" -> {'near-tie' if r['near_tie'] else 'NOT a near-tie'}")
            print(f"{prompt[:50]!r:55} {status}", flush=True)
    finally:
        proc.kill()
    ident = sum(r["identical"] for r in results)
    ties = sum(1 for r in results if not r["identical"] and r.get("near_tie"))
    print(f"greedy {args.n} tokens: {ident}/{len(results)} identical, {ties} divergences at near-ties (< {args.tie} nats), "
          f"{len(results) - ident - ties} unexplained")
    if args.json:
        json.dump({"tokenization": {"identical": same, "total": len(texts), "diffs": diffs}, "greedy": results},
                  open(args.json, "w"), indent=1)
    return 0 if same == len(texts) and ident + ties == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
