#!/usr/bin/env bash
# ctest smoke.sweep_plot: scripts/sweep.sh runs a 2x2 grid of short tiny runs in which one value is invalid;
# the sweep must go on past the failed run, report it in its table and exit non-zero. Then
# scripts/plot_metrics.py draws the runs that succeeded into a PNG.
set -uo pipefail
qft=$1
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; cat "$tmp/sweep.out" 2>/dev/null; exit 1; }

QFT=$qft bash "$root/scripts/sweep.sh" --config "$root/configs/tiny.json" --out "$tmp/sweep" \
  --grid train.lr=1e-3,-1 --grid quant.outlier_fraction=0.01,0.002 -- \
  --set model.path="$root/models/tiny-llama" --set data.train="$root/data/tiny_instruct/train.jsonl" \
  --set data.val="$root/data/tiny_instruct/val.jsonl" --set train.steps=4 --set train.eval_every=2 \
  --set train.eval_batches=1 --set train.log_every=1 --set data.seq_len=64 --set device=cpu > "$tmp/sweep.out" 2>&1
status=$?
[ $status -eq 1 ] || fail "sweep exit status $status, expected 1 (one value of the grid is invalid)"
summary="$tmp/sweep/summary.tsv"
[ "$(wc -l < "$summary")" -eq 5 ] || fail "summary has $(wc -l < "$summary") lines, expected a header and 4 runs"
# The two lr=1e-3 runs succeed with a finite best val_loss; the two lr=-1 runs fail with exit 1 (a config error).
ok=$(awk -F'\t' 'NR > 1 && $4 == 0 && $2 ~ /^[0-9.]+(e[-+]?[0-9]+)?$/ && $2 > 0' "$summary" | wc -l)
bad=$(awk -F'\t' 'NR > 1 && $1 ~ /lr=-1/ && $4 == 1 && $2 == "-"' "$summary" | wc -l)
[ "$ok" -eq 2 ] || fail "expected 2 successful runs with a val_loss, got $ok"
[ "$bad" -eq 2 ] || fail "expected the 2 lr=-1 runs to fail with exit 1, got $bad"
grep -q "FAILED (exit 1)" "$tmp/sweep.out" || fail "the failed runs were not reported"
grep -q "2 of 4 runs succeeded" "$tmp/sweep.out" || fail "no closing count"

py=/usr/bin/python3
if ! "$py" -c "import matplotlib" 2>/dev/null; then
  echo "sweep checked; plot SKIPPED: no matplotlib for $py (scripts/setup.sh installs python3-matplotlib)"
  exit 0
fi
runs=$(awk -F'\t' -v d="$tmp/sweep" 'NR > 1 && $4 == 0 { print d "/" $1 }' "$summary")
# shellcheck disable=SC2086  # run directories hold no spaces
"$py" "$root/scripts/plot_metrics.py" $runs --out "$tmp/curves.png" || fail "plot_metrics.py failed"
[ "$(head -c 8 "$tmp/curves.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "not a PNG"
[ "$(stat -c %s "$tmp/curves.png")" -gt 20000 ] || fail "the PNG is suspiciously small"
"$py" "$root/scripts/plot_metrics.py" "$tmp/sweep/nope" --out "$tmp/x.png" 2> "$tmp/err" && fail "a missing run was accepted"
grep -q "nope" "$tmp/err" || fail "the error does not name the missing run"
echo "sweep and plot OK"
