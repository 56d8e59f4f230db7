#!/usr/bin/env python3
"""Structured outputs' cost: 64 concurrent chat requests (max_tokens 64, temperature 0.8, top_k 40) against a
running `gemforge serve`, with a json_schema response_format or without: aggregate generated tokens/s and the
server's CPU time per generated token (robust to other load on a shared host).
Usage: structured_outputs_bench.py PORT json|plain REPEATS SERVER_PID"""
import json, os, sys, time, threading, urllib.request
port = int(sys.argv[1]); mode = sys.argv[2]; N = 64
pid = int(sys.argv[4])
def cpu():  # the server's user + system CPU seconds: robust to other load on this shared host
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
schema = {"type": "object", "additionalProperties": False, "required": ["name", "age", "species", "tags"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "species": {"enum": ["cat", "dog", "bird"]},
                         "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}}}
def one(i, out):
    body = {"messages": [{"role": "user", "content": f"Describe pet number {i} as a JSON object with name, age, species and tags."}],
            "max_tokens": 64, "temperature": 0.8, "top_k": 40, "seed": i}
    if mode == "json": body["response_format"] = {"type": "json_schema", "json_schema": {"name": "pet", "schema": schema}}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        out[i] = json.loads(r.read())["usage"]["completion_tokens"]
for rep in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1):
    out = [0] * N
    t0 = time.time(); c0 = cpu()
    ts = [threading.Thread(target=one, args=(i, out)) for i in range(N)]
    [t.start() for t in ts]; [t.join() for t in ts]
    dt = time.time() - t0; dc = cpu() - c0
    print(f"{mode}: {sum(out)} tokens in {dt:.2f}s = {sum(out)/dt:.1f} tok/s wall; server CPU {dc:.1f}s = {1000*dc/sum(out):.2f} ms/token (mean {sum(out)/N:.1f} tokens per request)", flush=True)
