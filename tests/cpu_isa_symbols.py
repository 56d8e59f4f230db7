#!/usr/bin/env python3
"""The CPU kernel variants (src/backend/cpu/isa.h) may define wide-ISA code only
under their own namespace, gf::cpu::<variant>. An inline function or template
instantiated in a variant's object with a shared name (std::vector<float>::...,
an inline function of core/ or formats/) is merged by the linker with the
copies of every other object; had it been compiled for AVX2 or AVX-512, a CPU
without them could end up running it. The target pragmas keep such code
baseline; this checks the objects.

Usage: cpu_isa_symbols.py VARIANT OBJECT_DIR...   (exit 1 on a violation)"""
import re
import subprocess
import sys
from pathlib import Path

variant, dirs = sys.argv[1], sys.argv[2:]
objects = sorted(p for d in dirs for p in Path(d).rglob("*.o"))
if not objects:
    sys.exit(f"no objects under {dirs}")
own = f"gf::cpu::{variant}::"
wide = re.compile(r"^\s*[0-9a-f]+:\s+(v[a-z0-9]+|kmov\w*)\b|%[yz]mm|%k[0-7]")
bad = []
for obj in objects:
    # Shared (global or weak) functions outside the variant's namespace.
    nm = subprocess.run(["nm", "-C", "--defined-only", str(obj)], capture_output=True, text=True, check=True).stdout
    shared = set()
    for line in nm.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in ("T", "W", "u", "i") and own not in parts[2]:
            shared.add(parts[2])
    if not shared:
        continue
    dis = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", str(obj)], capture_output=True, text=True, check=True).stdout
    name = None
    for line in dis.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            name = m.group(1)
            continue
        if name in shared and wide.search(line):
            bad.append(f"{obj.name}: {name}: {line.strip()}")
            shared.discard(name)
for b in bad:
    print(b)
print(f"{variant}: {len(objects)} objects, {len(bad)} shared functions with AVX code")
sys.exit(1 if bad else 0)
