#!/usr/bin/env python3
"""The request fields beyond the basics, through the official `openai` client
against `gemforge serve` on the real Gemma 3 270M: structured outputs
(response_format, validated with the `jsonschema` package across prompts and
temperatures), n > 1 (one prefill: the server's counters), seed, stop token ids,
logit_bias, max_completion_tokens, usage in streams, /v1/embeddings refused,
best_of refused, and /tokenize and /detokenize against the Hugging Face
tokenizer fixtures. Usage: openai_api_extras_test.py PATH/TO/gemforge FIXTURES"""
import json, os, sys, time, urllib.error, urllib.request

import jsonschema
import openai

from serve_util import start_serve

gemforge, fixtures = sys.argv[1], sys.argv[2]
KEY = "k-extras"
server, port = start_serve(gemforge, "--api-key", KEY, "--kv-tokens", "8192")
base = f"http://127.0.0.1:{port}"


def post(path, body, key=KEY):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metric(name):
    req = urllib.request.Request(base + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def expect_400(fn, word):
    try:
        fn()
    except openai.BadRequestError as e:
        assert word in str(e), (word, str(e))
        return
    raise AssertionError(f"accepted; wanted a 400 about {word}")


try:
    client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=300)
    for _ in range(150):
        try:
            client.models.list()
            break
        except openai.APIConnectionError:
            time.sleep(0.2)

    # Structured outputs: every reply parses and validates, whatever the prompt and temperature.
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "age", "species", "tags", "vaccinated"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                             "species": {"enum": ["cat", "dog", "bird"]},
                             "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
                             "vaccinated": {"type": "boolean"}, "owner": {"type": ["string", "null"]}}}
    rf = {"type": "json_schema", "json_schema": {"name": "pet", "strict": True, "schema": schema}}
    prompts = ["Describe a pet as JSON.", "Tell me about your dog Rex.", "Write a haiku about the sea.", "What is 2+2?"]
    for prompt in prompts:
        for temp in (0.0, 0.7, 1.0):
            c = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}], max_tokens=400,
                                               temperature=temp, seed=11, response_format=rf)
            text = c.choices[0].message.content
            assert c.choices[0].finish_reason == "stop", (prompt, temp, c.choices[0].finish_reason, text)
            jsonschema.validate(json.loads(text), schema)
    # json_object leaves the keys open: a prompt that asks for a small object (at temperature 1 the 270M may ramble on).
    for temp in (0.0, 0.7):
        c = client.chat.completions.create(model="m", max_tokens=200, temperature=temp, seed=3, response_format={"type": "json_object"},
                                           messages=[{"role": "user", "content": 'Reply with a JSON object with the keys "city" and "country" for Paris.'}])
        assert c.choices[0].finish_reason == "stop", c.choices[0]
        assert isinstance(json.loads(c.choices[0].message.content), dict), c.choices[0].message.content
    streamed = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompts[0]}], max_tokens=400, temperature=0.7, seed=5,
        response_format=rf, stream=True) if ch.choices)
    jsonschema.validate(json.loads(streamed), schema)
    for bad_schema, word in (({"type": "string", "pattern": "a+"}, "pattern"), ({"$ref": "#/x"}, "$ref"),
                             ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required")):
        expect_400(lambda: client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], max_tokens=4,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": bad_schema}}), word)
    expect_400(lambda: client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=4,
                                                      response_format={"type": "yaml"}), "response_format")

    # n > 1: three choices from one prefill (the forks take the prompt's full blocks).
    long_prompt = "The history of the city is long and full of stories. " * 12
    P = len(post("/tokenize", {"content": long_prompt, "add_special": True})[1]["tokens"])
    forked0, computed0 = metric("gemforge_forked_prompt_tokens_total"), metric("gemforge_computed_tokens_total")
    c = client.completions.create(model="m", prompt=long_prompt, max_tokens=8, n=3, temperature=1.0, seed=9)
    assert [ch.index for ch in c.choices] == [0, 1, 2], c
    assert len({ch.text for ch in c.choices}) > 1, c  # distinct draws
    assert c.usage.prompt_tokens == P and c.usage.completion_tokens == 24, c.usage
    forked = metric("gemforge_forked_prompt_tokens_total") - forked0
    computed = metric("gemforge_computed_tokens_total") - computed0
    assert forked == 2 * ((P - 1) // 16) * 16, (forked, P)
    assert computed <= P + 2 * 16 + 3 * 8, (computed, P)  # repeating the request would compute 3 * P
    # Streaming n = 2: chunks carry each choice's index; same seed, same texts as the whole answer.
    whole = client.completions.create(model="m", prompt=long_prompt, max_tokens=8, n=2, temperature=1.0, seed=21)
    parts = {0: "", 1: ""}
    for ch in client.completions.create(model="m", prompt=long_prompt, max_tokens=8, n=2, temperature=1.0, seed=21, stream=True):
        for choice in ch.choices:
            parts[choice.index] += choice.text
    assert [parts[0], parts[1]] == [ch.text for ch in whole.choices], (parts, whole.choices)
    expect_400(lambda: client.completions.create(model="m", prompt="x", max_tokens=4, n=2, extra_body={"best_of": 3}), "best_of")
    expect_400(lambda: client.completions.create(model="m", prompt="x", max_tokens=4, n=99), "n")

    # seed: the same seed gives the same text at temperature 1, other seeds other texts.
    texts = [client.completions.create(model="m", prompt="Once upon a time", max_tokens=16, temperature=1.0, seed=s).choices[0].text
             for s in (42, 42, 43, 44)]
    assert texts[0] == texts[1] and len(set(texts)) > 1, texts

    # stop_token_ids and logit_bias on the greedy reply's tokens.
    prompt = "1, 2, 3, 4, 5,"
    g = client.completions.create(model="m", prompt=prompt, max_tokens=6, temperature=0, logprobs=0)
    toks = g.choices[0].logprobs.tokens
    ids = [post("/tokenize", {"content": t})[1]["tokens"] for t in toks]
    assert all(len(i) == 1 for i in ids[:3]), ids
    s = client.completions.create(model="m", prompt=prompt, max_tokens=6, temperature=0, extra_body={"stop_token_ids": [ids[2][0]]})
    assert s.choices[0].text == "".join(toks[:2]) and s.choices[0].finish_reason == "stop", (s.choices[0], toks)
    b = client.completions.create(model="m", prompt=prompt, max_tokens=6, temperature=0, logprobs=0, logit_bias={str(ids[0][0]): -100})
    assert b.choices[0].logprobs.tokens[0] != toks[0] and toks[0] not in b.choices[0].logprobs.tokens, (b.choices[0], toks)
    expect_400(lambda: client.completions.create(model="m", prompt="x", max_tokens=2, logit_bias={"999999999": 1}), "logit_bias")

    # max_completion_tokens, and usage at the end of a stream.
    m = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Count to fifty."}], max_completion_tokens=5,
                                       temperature=0)
    assert m.usage.completion_tokens == 5 and m.choices[0].finish_reason == "length", m
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Count to fifty."}],
                                                 max_completion_tokens=5, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].usage.prompt_tokens == m.usage.prompt_tokens, chunks[-1]

    # /v1/embeddings: a clear 501, not a crash.
    try:
        client.embeddings.create(model="m", input="hello")
        raise AssertionError("embeddings answered")
    except openai.APIStatusError as e:
        assert e.status_code == 501 and "embeddings" in str(e), e

    # /tokenize and /detokenize against the Hugging Face tokenizer's own ids.
    with open(os.path.join(fixtures, "tokenizers", "tok_gemma3_shared.jsonl")) as f:
        cases = [json.loads(line) for line in f][:60]
    for case in cases:
        st, out = post("/tokenize", {"content": case["text"]})
        assert st == 200 and out["tokens"] == case["ids"], (case["text"], out)
        assert post("/tokenize", {"content": case["text"], "add_special": True})[1]["tokens"] == case["ids_with_special"]
        assert post("/detokenize", {"tokens": case["ids"]})[1]["content"] == case["decoded"], case["text"]
    st, out = post("/tokenize", {"content": "Hello world", "with_pieces": True})
    assert st == 200 and "".join(t["piece"] for t in out["tokens"]) == "Hello world", out
    assert post("/tokenize", {"content": "x"}, key=None)[0] == 401
    assert post("/detokenize", {"tokens": [-1]})[0] == 400
    assert post("/tokenize", {"text": "x"})[0] == 400
    print("PASS")
finally:
    server.terminate()
    server.wait(timeout=10)
