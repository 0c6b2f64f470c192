#!/usr/bin/env python3
"""Plots the training loss, val_loss and learning rate of one or more qft runs to one PNG.

usage: plot_metrics.py RUN [RUN ...] [--out curves.png] [--labels A,B,...]

A RUN is an output.dir (holding metrics.jsonl) or a metrics.jsonl file. Needs matplotlib
(Debian: python3-matplotlib, which scripts/setup.sh installs; run it with /usr/bin/python3).
"""
import argparse
import json
import os
import sys


def read_metrics(run):
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    series = {"loss": [], "val_loss": [], "lr": []}
    try:
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"plot_metrics: {path}:{lineno}: not JSON ({e})")
                for key, points in series.items():
                    if key in rec and "step" in rec:
                        points.append((rec["step"], rec[key]))
    except OSError as e:
        sys.exit(f"plot_metrics: cannot read {path}: {e.strerror}")
    if not any(series.values()):
        sys.exit(f"plot_metrics: {path} holds no loss, val_loss or lr records")
    return series


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="output directories or metrics.jsonl files")
    ap.add_argument("--out", default="curves.png", help="PNG to write (default curves.png)")
    ap.add_argument("--labels", help="comma-separated legend labels, one per run (default: the run paths)")
    a = ap.parse_args()
    labels = a.labels.split(",") if a.labels else [os.path.basename(os.path.normpath(r)) or r for r in a.runs]
    if len(labels) != len(a.runs):
        sys.exit(f"plot_metrics: {len(labels)} labels for {len(a.runs)} runs")
    runs = [read_metrics(r) for r in a.runs]

    import matplotlib
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, title in zip(axes, ("loss", "val_loss", "lr"), ("train loss", "val_loss", "learning rate")):
        for series, label in zip(runs, labels):
            if series[key]:
                steps, values = zip(*series[key])
                ax.plot(steps, values, marker="o" if key == "val_loss" else None, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if key != "lr":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out} ({len(runs)} run{'s' if len(runs) > 1 else ''})")


if __name__ == "__main__":
    main()
