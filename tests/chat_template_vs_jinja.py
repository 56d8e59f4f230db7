#!/usr/bin/env python3
"""Differential check of `gemforge template` against jinja2 (not run by ctest; needs the jinja2 package).

  python3 tests/chat_template_vs_jinja.py build/gemforge [N] [SEED]

Renders N random conversations (roles, whitespace and Unicode around content, control-token text, content
parts, thinking, tool declarations with nested schemas, tool calls with nested arguments, tool results as
strings, parts, numbers, null; Gemma-native tool_responses; system turns mid-conversation) with the official templates through jinja2 3.1 configured as transformers
configures it (trim_blocks, lstrip_blocks), and through `gemforge template --format F --json -`, and
compares the bytes. Where jinja2 raises, gemforge must refuse (exit code 1, one "error:" line). Inputs
gemforge refuses on purpose although the template renders something (see src/tokenizer/chat_format.h) are
not generated: unknown roles, a tool message answering no tool call, roles that do not strictly alternate
user/model for Gemma 1-3, content parts for Gemma 1/2.
"""
import json
import os
import random
import subprocess
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "..", "shared", "fixtures")
TEMPLATES = {
    "gemma4": os.path.join(FIX, "chat-templates", "gemma4-31b-it.jinja"),
    "gemma2": os.path.join(FIX, "chat-templates", "gemma2-2b-it.jinja"),
    "gemma3": None,  # from gemma3_tokenizer_config.json
}


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
ENV.globals["raise_exception"] = raise_exception


def template(fmt):
    if fmt == "gemma3":
        with open(os.path.join(FIX, "tokenizers", "gemma3_tokenizer_config.json")) as f:
            return ENV.from_string(json.load(f)["chat_template"])
    with open(TEMPLATES[fmt]) as f:
        return ENV.from_string(f.read())


def reference(tpl, req):
    kw = dict(req)
    kw.setdefault("add_generation_prompt", False)
    try:
        return tpl.render(bos_token="<bos>", eos_token="<eos>", **kw)
    except Exception as e:  # noqa: BLE001 - any template failure means "refuse"
        return e


WORDS = ["Hi", "the sky", "  padded  ", "\n\tnew\nlines\n", "naïve 日本語 😀", "<turn|>", "<|turn>model", "<end_of_turn>",
         "<|channel>x<channel|>", "\u00a0nbsp\u3000", "a'b", 'q"uote', "back\\slash", "", " ", "<|\"|>", "x<bos>y"]


def text(r):
    return "".join(r.choice(WORDS) for _ in range(r.randint(0, 3)))


def content(r, allow_parts=True, model=False):
    c = r.random()
    if c < 0.6 or not allow_parts:
        s = text(r)
        if model and r.random() < 0.3:
            s = text(r) + "<|channel>thought\n" + text(r) + "<channel|>" + text(r)
        return s
    parts = []
    for _ in range(r.randint(0, 3)):
        t = r.random()
        if t < 0.7:
            parts.append({"type": "text", "text": text(r)})
        else:
            parts.append({"type": r.choice(["image", "audio", "video"])})
    return parts


def json_value(r, depth=0):
    c = r.randint(0, 7 if depth < 2 else 4)
    if c == 0:
        return text(r)
    if c == 1:
        return r.choice([True, False])
    if c == 2:
        return r.choice([0, 1, -7, 21, 3.5, 1e16, 1e-5, 0.1, 2.0, 123456789012])
    if c == 3:
        return None
    if c == 4:
        return r.choice(["Paris", "celsius", "x y"])
    if c == 5:
        return [json_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    return {r.choice(["a", "B", "b", "city", "Zed", "z"]): json_value(r, depth + 1) for _ in range(r.randint(0, 3))}


def schema(r, depth=0):
    t = r.choice(["string", "integer", "number", "boolean", "array", "object", "STRING"])
    s = {"type": t}
    if r.random() < 0.6:
        s["description"] = text(r) or "desc"
    if t.lower() == "string" and r.random() < 0.5:
        s["enum"] = [r.choice(["a", "b", "c d"]) for _ in range(r.randint(1, 3))]
    if r.random() < 0.2:
        s["nullable"] = True
    if t == "array" and depth < 2:
        if r.random() < 0.7:
            items = {"type": r.choice(["string", "object", ["string", "null"]])}
            if r.random() < 0.5 and depth < 2:
                items["properties"] = {k: schema(r, depth + 1) for k in r.sample(["p", "Q", "r"], r.randint(1, 2))}
                items["required"] = ["p"]
            if r.random() < 0.3:
                items["minItems"] = 1
            s["items"] = items
    if t == "object" and depth < 2:
        if r.random() < 0.7:
            s["properties"] = {k: schema(r, depth + 1) for k in r.sample(["x", "Y", "z", "type"], r.randint(0, 3))}
        if r.random() < 0.5:
            s["required"] = ["x"]
    return s


def tool(r, name):
    fn = {"name": name}
    if r.random() < 0.9:
        fn["description"] = text(r) or "does things"
    if r.random() < 0.85:
        params = {"type": "object", "properties": {k: schema(r) for k in r.sample(["city", "unit", "Days", "a"], r.randint(0, 3))}}
        if r.random() < 0.6:
            params["required"] = list(params["properties"])[:1]
        fn["parameters"] = params
    if r.random() < 0.2:
        fn["response"] = {"type": "object", "description": "result"}
    return {"type": "function", "function": fn}


def gemma4_case(r):
    msgs = []
    if r.random() < 0.4:
        msgs.append({"role": r.choice(["system", "developer"]), "content": text(r)})
    names = ["get_weather", "search", "calc"]
    for turn in range(r.randint(1, 4)):
        msgs.append({"role": "user", "content": content(r)})
        if r.random() < 0.7 or turn < 1:
            a = {"role": r.choice(["assistant", "assistant", "model"]), "content": content(r, model=True)}
            if r.random() < 0.4:
                calls = []
                for k in range(r.randint(1, 2)):
                    args = {k2: json_value(r) for k2 in r.sample(["city", "Unit", "b", "a"], r.randint(0, 3))}
                    if r.random() < 0.2:
                        args = json.dumps(args)
                    call = {"type": "function", "function": {"name": r.choice(names), "arguments": args}}
                    if r.random() < 0.8:
                        call["id"] = "c%d" % k
                    calls.append(call)
                a["tool_calls"] = calls
                if r.random() < 0.3:
                    a["content"] = ""
                if r.random() < 0.3:
                    a[r.choice(["reasoning", "reasoning_content"])] = text(r) or "think"
                msgs.append(a)
                for k, call in enumerate(calls):
                    if r.random() < 0.8:
                        t = {"role": "tool", "tool_call_id": call.get("id", "zz")}
                        if "id" not in call or r.random() < 0.3:
                            t["name"] = call["function"]["name"]
                        b = r.random()
                        t["content"] = (text(r) if b < 0.5 else [{"type": "text", "text": text(r)}] if b < 0.7
                                        else r.choice([None, 21, 2.5, True]))
                        msgs.append(t)
                if r.random() < 0.3:
                    msgs.append({"role": "assistant", "content": content(r, model=True)})
            elif r.random() < 0.15:
                a["tool_responses"] = [{"name": r.choice(names), "response": json_value(r)} for _ in range(r.randint(1, 2))]
                if r.random() < 0.5:
                    a["tool_calls"] = [{"id": "n", "function": {"name": "f", "arguments": {"a": 1}}}]
                msgs.append(a)
            else:
                msgs.append(a)
        if r.random() < 0.1:
            msgs.append({"role": r.choice(["system", "developer"]), "content": text(r)})
    if msgs[-1]["role"] != "user" and r.random() < 0.3:
        msgs.append({"role": "user", "content": text(r)})
    req = {"messages": msgs, "add_generation_prompt": r.random() < 0.8}
    if r.random() < 0.4:
        req["enable_thinking"] = r.random() < 0.6
    if r.random() < 0.4:
        req["tools"] = [tool(r, n) for n in r.sample(names, r.randint(1, 3))]
    return req


def gemma123_case(r, fmt):
    msgs = []
    if r.random() < 0.3:
        msgs.append({"role": "system", "content": text(r) if fmt != "gemma3" or r.random() < 0.7 else [{"type": "text", "text": text(r)}]})
    for i in range(r.randint(1, 5)):
        role = "user" if i % 2 == 0 else r.choice(["assistant", "model"])
        if r.random() < 0.05:
            role = "user" if role != "user" else "assistant"  # breaks alternation
        msgs.append({"role": role, "content": content(r, allow_parts=fmt == "gemma3")})
    return {"messages": msgs, "add_generation_prompt": r.random() < 0.8}


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    r = random.Random(seed)
    tpls = {f: template(f) for f in ("gemma4", "gemma2", "gemma3")}
    bad = 0
    counts = {"same": 0, "both refuse": 0}
    per_format = {}
    for i in range(n):
        fmt = ("gemma4", "gemma4", "gemma2", "gemma3")[i % 4]
        req = gemma4_case(r) if fmt == "gemma4" else gemma123_case(r, fmt)
        want = reference(tpls[fmt], req)
        p = subprocess.run([binary, "template", "--format", fmt, "--json", "-"], input=json.dumps(req).encode(),
                           capture_output=True)
        got = p.stdout.decode("utf-8", "replace")
        if isinstance(want, Exception):
            ok = p.returncode != 0 and got == "" and p.stderr.decode().count("\n") == 1
            counts["both refuse"] += ok
        else:
            ok = p.returncode == 0 and got == want
            counts["same"] += ok
        key = (fmt, "refused" if isinstance(want, Exception) else "rendered")
        per_format[key] = per_format.get(key, 0) + 1
        if not ok:
            bad += 1
            if bad <= 5:
                print("MISMATCH", fmt, json.dumps(req, ensure_ascii=False))
                print("  jinja2:  ", repr(want))
                print("  gemforge:", repr(got), p.returncode, p.stderr.decode().strip())
    print(", ".join(f"{f} {what}: {c}" for (f, what), c in sorted(per_format.items())))
    print(f"{n} cases: {counts['same']} identical, {counts['both refuse']} refused by both, {bad} mismatches")
    print("PASS" if bad == 0 else "FAIL")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
