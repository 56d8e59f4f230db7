#!/usr/bin/env python3
"""Draws a gemforge plot spec (JSON written by `gemforge bench ... --plot`, `bench plot`
and `finetune`) into a PNG with matplotlib. gemforge decides what is plotted; this
script only draws it. Installed beside the gemforge binary.

Spec: {"title": str, "panels": [panel, ...]} where a panel is
  {"kind": "line", "title", "xlabel", "ylabel", "xscale"?: "log", "xticks"?: [[x, label], ...], "ymin"?: y,
   "series": [{"label", "x": [...], "y": [...], "group"?: int, "style"?: "-" | "--" | ":"}]}
  {"kind": "bar", "title", "ylabel", "categories": [...], "series": [{"label", "y": [...]}]}
Usage: gemforge_plot.py SPEC.json OUT.png    Exit 3: matplotlib is missing; 2: bad spec."""
import json, math, sys

try:
    import matplotlib
    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed for " + sys.executable, file=sys.stderr)
    sys.exit(3)


def line(ax, p):
    for i, s in enumerate(p["series"]):
        ax.plot(s["x"], s["y"], s.get("style", "-"), marker="o", markersize=4, color=f"C{s.get('group', i) % 10}", label=s["label"])
    if p.get("xscale") == "log":
        ax.set_xscale("log", base=2)
    if p.get("xticks"):
        ax.set_xticks([t[0] for t in p["xticks"]], [t[1] for t in p["xticks"]])
        ax.minorticks_off()


def bar(ax, p):
    cats, series = p["categories"], p["series"]
    width = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        ax.bar([c + (i - (len(series) - 1) / 2) * width for c in range(len(cats))], s["y"], width, label=s["label"], color=f"C{i % 10}")
    ax.set_xticks(range(len(cats)), cats)


def main():
    spec_path, out = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    panels = spec["panels"]
    cols = 2 if len(panels) in (2, 4) else min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        (bar if p.get("kind") == "bar" else line)(ax, p)
        ax.set_title(p.get("title", ""))
        ax.set_xlabel(p.get("xlabel", ""))
        ax.set_ylabel(p.get("ylabel", ""))
        if "ymin" in p:
            ax.set_ylim(bottom=p["ymin"])
        ax.grid(True, alpha=0.3)
        if p["series"]:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(spec.get("title", ""))
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=spec.get("dpi", 80))
    print(f"{out}: {len(panels)} panels, {sum(len(p['series']) for p in panels)} series")


if __name__ == "__main__":
    try:
        main()
    except (KeyError, TypeError, ValueError, IndexError) as e:
        print(f"bad plot spec {sys.argv[1]}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
