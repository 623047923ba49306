#!/usr/bin/env python3
"""Draws decision latency vs policy size for Baomi and Cedar from criterion's output.

    cargo bench -p baomi-scenarios --features cedar --bench decision
    python3 docs/plot.py            # -> docs/decision-latency.png (needs matplotlib)

Reads target/criterion/decision_size/{baomi,cedar}/N/new/estimates.json (median, ns).
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion" / "decision_size"
OUT = ROOT / "docs" / "decision-latency.png"


def series(engine):
    points = []
    base = CRITERION / engine
    if not base.is_dir():
        return points
    for d in base.iterdir():
        est = d / "new" / "estimates.json"
        if d.name.isdigit() and est.is_file():
            median = json.loads(est.read_text())["median"]["point_estimate"]
            points.append((int(d.name), median))
    return sorted(points)


def main():
    baomi, cedar = series("baomi"), series("cedar")
    if not baomi or not cedar:
        sys.exit(f"no criterion output under {CRITERION}: run the decision benchmark first")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, pts, style in (("Baomi (indexed)", baomi, "o-"), ("Cedar (cedar-policy 4)", cedar, "s--")):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name)
        for n, ns in pts:
            label = f"{ns / 1000:.1f} µs" if ns >= 1000 else f"{ns:.0f} ns"
            ax.annotate(label, (n, ns), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rules in the policy")
    ax.set_ylabel("time per decision (median, ns)")
    ax.set_title("Decision latency vs policy size: a banned app launched inside a zone")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT)
    for (n, b), (_, c) in zip(baomi, cedar):
        print(f"{n:>5} rules: baomi {b:10.0f} ns  cedar {c:12.0f} ns  ratio {c / b:8.0f}x")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
