#!/usr/bin/env python3
"""gemforge's GGUF writer against llama.cpp's own converter, on the Gemma 4 fixtures.

A manifest of a GGUF file is its model keys (name, value type, value) and its
tensors (name, shape, and a SHA-256 of the values as float32), so two files
that a reader cannot tell apart have equal manifests.

  generate: run llama.cpp's convert_hf_to_gguf.py (needs torch; llama.cpp is
            fetched separately and never committed) on each fixture and write
            the manifests to tests/references/llama-converter.json.
            Run where torch is installed, e.g. the device:
              python3 tests/gguf_llama_converter.py generate LLAMA_CPP_DIR ../shared/fixtures OUT.json
  check:    write each fixture with `gemforge convert` and compare its manifest
            with the stored one (the ctest; needs only the `gguf` package):
              python3 tests/gguf_llama_converter.py check GEMFORGE ../shared/fixtures REF.json

The fixtures ship no tokenizer, so the converter is given a placeholder
vocabulary of the model's size; tokenizer.* and general.* keys (and gemforge's
own gemforge.* keys) are not part of the comparison. Everything is written as
float32 so that the values compare bit for bit (bf16 -> f32 is exact).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

FIXTURES = ["gemma4-dense-31b-like", "gemma4-e2b-like", "gemma4-moe-like"]
IGNORED_PREFIXES = ("general.", "tokenizer.", "gemforge.")


def manifest(path):
    import gguf
    import numpy as np

    r = gguf.GGUFReader(path)
    keys = {}
    for name, field in r.fields.items():
        if name.startswith(IGNORED_PREFIXES) or name.startswith("GGUF."):
            continue
        types = [t.name for t in field.types]
        value = field.contents()
        if isinstance(value, float):
            value = float(np.float32(value))  # as stored
        elif isinstance(value, list):
            value = [float(np.float32(v)) if isinstance(v, float) else v for v in value]
        keys[name] = {"types": types, "value": value}
    tensors = {}
    for t in r.tensors:
        if t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
                                 gguf.GGMLQuantizationType.BF16):
            raise SystemExit(f"{path}: tensor {t.name} is {t.tensor_type.name}; write float32 to compare")
        if t.tensor_type == gguf.GGMLQuantizationType.BF16:
            raw = np.asarray(t.data).view(np.uint16).astype(np.uint32) << 16
            values = raw.view(np.float32)
        else:
            values = np.asarray(t.data, dtype=np.float32)
        values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        tensors[t.name] = {
            "shape": [int(d) for d in t.shape],  # ggml order: fastest dimension first
            "sha256_f32": hashlib.sha256(values.tobytes()).hexdigest(),
            "sum": float(values.astype(np.float64).sum()),
            "first": [float(v) for v in values[:4]],
        }
    return {"keys": keys, "tensors": tensors}


def fixture_copy(fixtures, name, dst):
    """The fixture with its hub-style config (the form released checkpoints use)."""
    src = os.path.join(fixtures, "hf-tiny", name)
    os.makedirs(dst)
    for f in ("model.safetensors", "generation_config.json"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), dst)
    hub = os.path.join(src, "config.hub-style.json")
    shutil.copy(hub if os.path.exists(hub) else os.path.join(src, "config.json"), os.path.join(dst, "config.json"))
    return dst


def generate(llama_dir, fixtures, out):
    sys.path[:0] = [llama_dir, os.path.join(llama_dir, "gguf-py")]
    import gguf
    import convert_hf_to_gguf as conv
    from conversion import gemma

    def placeholder_vocab(self):
        n = self.hparams.get("vocab_size") or self.hparams["text_config"]["vocab_size"]
        self.gguf_writer.add_tokenizer_model("gemma4")
        self.gguf_writer.add_token_list([f"<t{i}>" for i in range(n)])
        self.gguf_writer.add_token_scores([0.0] * n)
        self.gguf_writer.add_token_types([gguf.TokenType.NORMAL] * n)

    gemma.Gemma4Model.set_vocab = placeholder_vocab
    # Newer transformers turn global_head_dim / num_global_key_value_heads into
    # per_layer_config, which this converter does not read: the config file's
    # own keys win over transformers' defaults.
    from conversion import base
    load = base.ModelBase.load_hparams

    def load_with_file_keys(dir_model, is_mistral_format):
        with open(os.path.join(dir_model, "config.json")) as f:
            return {**load(dir_model, is_mistral_format), **json.load(f)}

    base.ModelBase.load_hparams = staticmethod(load_with_file_keys)
    result = {"converter": "llama.cpp convert_hf_to_gguf.py --outtype f32", "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in FIXTURES:
            model = fixture_copy(fixtures, name, os.path.join(tmp, name))
            with open(os.path.join(model, "config.json")) as f:
                n = json.load(f)["vocab_size"]
            with open(os.path.join(model, "tokenizer.json"), "w") as f:  # the converter counts its entries
                json.dump({"model": {"vocab": {f"<t{i}>": i for i in range(n)}}, "added_tokens": []}, f)
            path = os.path.join(tmp, name + ".gguf")
            sys.argv = ["convert_hf_to_gguf.py", model, "--outfile", path, "--outtype", "f32"]
            conv.main()
            result["models"][name] = manifest(path)
    with open(out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")


def compare(name, ours, theirs):
    errors = []
    for k in sorted(set(theirs["keys"]) | set(ours["keys"])):
        if k not in ours["keys"]:
            errors.append(f"{name}: key {k} = {theirs['keys'][k]['value']!r} is missing (llama.cpp writes it)")
        elif k not in theirs["keys"]:
            errors.append(f"{name}: key {k} = {ours['keys'][k]['value']!r} is one llama.cpp does not write")
        elif ours["keys"][k] != theirs["keys"][k]:
            errors.append(f"{name}: key {k}: ours {ours['keys'][k]} vs llama.cpp {theirs['keys'][k]}")
    for t in sorted(set(theirs["tensors"]) | set(ours["tensors"])):
        if t not in ours["tensors"]:
            errors.append(f"{name}: tensor {t} {theirs['tensors'][t]['shape']} is missing")
        elif t not in theirs["tensors"]:
            errors.append(f"{name}: tensor {t} {ours['tensors'][t]['shape']} is one llama.cpp does not write")
        else:
            a, b = ours["tensors"][t], theirs["tensors"][t]
            if a["shape"] != b["shape"]:
                errors.append(f"{name}: tensor {t}: shape {a['shape']} vs llama.cpp {b['shape']}")
            elif a["sha256_f32"] != b["sha256_f32"]:
                errors.append(f"{name}: tensor {t}: values differ (sum {a['sum']} first {a['first']} "
                              f"vs llama.cpp sum {b['sum']} first {b['first']})")
    return errors


def check(gemforge, fixtures, ref):
    with open(ref) as f:
        reference = json.load(f)["models"]
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in FIXTURES:
            model = fixture_copy(fixtures, name, os.path.join(tmp, name))
            path = os.path.join(tmp, name + ".gguf")
            subprocess.run([gemforge, "convert", "-m", model, "-o", path, "--type", "f32", "--no-gemforge-keys"],
                           check=True, stdout=subprocess.DEVNULL)
            found = compare(name, manifest(path), reference[name])
            print(f"{name}: {len(reference[name]['tensors'])} tensors, {len(reference[name]['keys'])} keys, "
                  f"{len(found)} differences")
            errors += found
    for e in errors:
        print("DIFF", e)
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "generate":
        generate(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "check":
        sys.exit(check(*sys.argv[2:]))
    else:
        sys.exit(__doc__)
