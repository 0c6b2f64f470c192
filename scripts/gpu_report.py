#!/usr/bin/env python3
"""Prints the table of scripts/gpu_check.sh from its results.jsonl: every check with its outcome; then per model,
qft and PyTorch tokens/s, MFU (6 * params * tokens/s over the GPU's dense bf16 peak), peak memory measured with
nvidia-smi, tracked by the runner's allocator and, for qft, planned by `qft plan`; the memory outside qft's
tracked allocations (CUDA context + libraries) beside the plan's allowance for it; then qft's ratios to PyTorch.
QFT_PEAK_TFLOPS overrides the GPU's peak.

    python3 scripts/gpu_report.py RESULTS_DIR/results.jsonl...   # one per step's results folder
"""
import json
import os
import subprocess
import sys

PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "RTX 4090": 165.2}


def gpu_peak():
    if os.environ.get("QFT_PEAK_TFLOPS"):
        return "override", float(os.environ["QFT_PEAK_TFLOPS"]) * 1e12
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown GPU", None
    for key, tf in PEAK_TFLOPS.items():
        if key in name:
            return name, tf * 1e12
    return name, None


def gib(b):
    return f"{b / 2**30:.2f}" if b else "-"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = [json.loads(l) for path in sys.argv[1:] if os.path.exists(path) for l in open(path) if l.strip()]
    checks = [r for r in rows if "check" in r]
    runs = [r for r in rows if "runner" in r]
    for c in checks:
        detail = f" ({c['detail']})" if c.get("detail") else ""
        print(f"{'ok    ' if c['ok'] else 'FAILED'} {c['step']}: {c['check']}{detail}")
    if not runs:
        return
    name, peak = gpu_peak()
    params = {r["model"]: r["params"] for r in runs if r.get("params")}
    print(f"\nGPU: {name}; MFU against {peak / 1e12:.0f} TFLOP/s dense bf16" if peak else f"\nGPU: {name}; MFU unknown")
    print(f"{'model':<11} {'runner':<8} {'seq':>5} {'tokens/s':>10} {'MFU':>6} {'peak GiB':>9} {'tracked GiB':>12} "
          f"{'planned GiB':>12} {'outside GiB':>12} {'allowance GiB':>14}")
    for r in runs:
        tps = r.get("tokens_per_s")
        p = params.get(r["model"])
        mfu = f"{6 * p * tps / peak:.1%}" if (tps and p and peak) else "-"
        state = "failed" if r.get("failed") else ("OOM" if r.get("oom") else f"{tps:.0f}")
        measured, tracked = r.get("measured_peak_bytes"), r.get("tracked_peak_bytes")
        outside = measured - tracked if (measured and tracked and r["runner"] == "qft") else None
        print(f"{r['model']:<11} {r['runner']:<8} {r.get('seq_len', 2048):>5} {state:>10} {mfu:>6} {gib(measured):>9} "
              f"{gib(tracked):>12} {gib(r.get('planned_bytes')):>12} {gib(outside):>12} "
              f"{gib(r.get('allowance_bytes')):>14}")
    for model in dict.fromkeys(r["model"] for r in runs):
        q = next((r for r in runs if r["model"] == model and r["runner"] == "qft" and r.get("tokens_per_s")), None)
        t = next((r for r in runs if r["model"] == model and r["runner"] == "pytorch" and r.get("tokens_per_s")), None)
        if q and t:
            print(f"{model}: qft/PyTorch tokens/s {q['tokens_per_s'] / t['tokens_per_s']:.2f}x (PyTorch at seq "
                  f"{t.get('seq_len')}), peak memory {q['measured_peak_bytes'] / t['measured_peak_bytes']:.0%} of "
                  f"PyTorch's")


if __name__ == "__main__":
    main()
