#!/usr/bin/env python3
"""The official `openai` Python client against `gemforge serve` on a loopback port
(real Gemma 3 270M GGUF). Usage: openai_client_test.py PATH/TO/gemforge"""
import json, os, shutil, socket, subprocess, sys, tempfile, time

import openai

from serve_util import MODEL as model, start_serve

gemforge = sys.argv[1]
server, port = start_serve(gemforge, "--api-key", "k123", "--kv-tokens", "4096")
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
finally:
    server.terminate()
    server.wait(timeout=10)


def gemma4_tokenizer_json():
    """A tiny Gemma 4 vocabulary: the control tokens, "\\n", the space symbol, byte fallback."""
    markers = ["<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|think|>", "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>",
               "<|tool_response>", "<tool_response|>", '<|"|>', "<|image|>", "<|audio|>", "<|video|>"]
    vocab, added = {}, []
    for p in ["<pad>", "<eos>", "<bos>", "<unk>"] + markers + ["\n"]:
        added.append({"id": len(vocab), "content": p, "special": p != "\n"})
        vocab[p] = len(vocab)
    vocab["\u2581"] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    return json.dumps({"added_tokens": added, "post_processor": {"single": ["<bos>"]},
                       "model": {"type": "BPE", "unk_token": "<unk>", "vocab": vocab, "merges": []}})


# Gemma 4 (a tiny random model, so its text is random): tools, thinking and tool history reach the prompt
# (usage.prompt_tokens grows with them), chat_template_kwargs and reasoning_effort are taken, and no
# control token ever shows in content or reasoning.
fixture = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures", "hf-tiny", "gemma4-e2b-like"))
if os.path.exists(os.path.join(fixture, "model.safetensors")):
    folder = tempfile.mkdtemp(prefix="gemforge_g4_")
    for f in os.listdir(fixture):
        os.symlink(os.path.join(fixture, f), os.path.join(folder, f))
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        f.write(gemma4_tokenizer_json())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([gemforge, "serve", "-m", folder, "--port", str(port), "--kv-tokens", "2048"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
        for _ in range(100):
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                time.sleep(0.2)
        tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        user = [{"role": "user", "content": "Weather in Paris?"}]
        markers = ["<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", '<|"|>', "<|turn>", "<turn|>"]

        def clean(text):
            assert text is None or not any(m in text for m in markers), text

        plain = client.chat.completions.create(model="m", messages=user, max_tokens=4, temperature=0)
        think = client.chat.completions.create(model="m", messages=user, max_tokens=4, temperature=0, reasoning_effort="low")
        both = client.chat.completions.create(model="m", messages=user, max_tokens=4, temperature=0, tools=tools,
                                              extra_body={"chat_template_kwargs": {"enable_thinking": True}})
        assert plain.usage.prompt_tokens < think.usage.prompt_tokens < both.usage.prompt_tokens, (plain.usage, think.usage, both.usage)
        for r in (plain, think, both):
            clean(r.choices[0].message.content)
            clean(getattr(r.choices[0].message, "reasoning_content", None))
            assert r.choices[0].finish_reason in ("stop", "length", "tool_calls"), r
        history = user + [{"role": "assistant", "content": None, "tool_calls": [
                              {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                          {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
        r = client.chat.completions.create(model="m", messages=history, tools=tools, max_tokens=4)
        assert r.usage.prompt_tokens > both.usage.prompt_tokens - 8, r.usage
        for ch in client.chat.completions.create(model="m", messages=user, tools=tools, max_tokens=6, stream=True, reasoning_effort="high"):
            if ch.choices:
                clean(ch.choices[0].delta.content)
                clean(getattr(ch.choices[0].delta, "reasoning_content", None))
        try:
            client.chat.completions.create(model="m", messages=user, max_tokens=4, extra_body={"chat_template_kwargs": {"thinking": True}})
            raise AssertionError("an unknown chat_template_kwargs key was accepted")
        except openai.BadRequestError as e:
            assert "chat_template_kwargs" in str(e)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
print("PASS")
