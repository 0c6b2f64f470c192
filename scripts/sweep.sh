#!/usr/bin/env bash
# A grid sweep over qft config values: every combination is one `qft train` run in its own output directory.
# A failed run is reported and the sweep goes on; each run's output is OUT/NAME.log, and a run directory that
# already exists is refused by qft (start a sweep in a new --out). At the end a summary table (also OUT/summary.tsv) gives each
# run's best val_loss, final train loss and exit status; the sweep exits 1 when any run failed.
#
# usage: scripts/sweep.sh --config FILE --out DIR --grid KEY=V1,V2,... [--grid KEY=...] [-- EXTRA qft train ARGS]
# e.g.   scripts/sweep.sh --config configs/tiny.json --out runs/sweep \
#          --grid train.lr=1e-3,3e-4 --grid quant.outlier_fraction=0.01,0.001 -- --set train.steps=200
# QFT names the qft binary (default build/qft).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
qft=${QFT:-$root/build/qft}
config="" out="" grids=() extra=()
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=${2:?--config needs a file}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --grid) grids+=("${2:?--grid needs KEY=V1,V2}"); shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage ;;
    *) echo "sweep: unknown argument '$1'" >&2; usage ;;
  esac
done
[ -n "$config" ] && [ -n "$out" ] && [ ${#grids[@]} -gt 0 ] || usage
[ -x "$qft" ] || { echo "sweep: $qft not found; build first (bash scripts/build.sh build)" >&2; exit 2; }
for g in "${grids[@]}"; do
  [[ "$g" == *=* && -n "${g#*=}" ]] || { echo "sweep: --grid '$g' is not KEY=V1,V2,..." >&2; exit 2; }
done

# Every combination as a list of "KEY=VALUE" words separated by spaces, built one grid axis at a time.
combos=("")
for g in "${grids[@]}"; do
  key=${g%%=*}
  IFS=, read -r -a values <<< "${g#*=}"
  next=()
  for c in "${combos[@]}"; do
    for v in "${values[@]}"; do next+=("${c:+$c }$key=$v"); done
  done
  combos=("${next[@]}")
done

# The smallest value of a numeric field in a metrics.jsonl, and the last one; "-" when absent.
field_min() { grep -o "\"$2\":[-0-9.eE+]*" "$1" 2>/dev/null | cut -d: -f2 | sort -g | head -n 1 | grep . || echo -; }
field_last() { grep -o "\"$2\":[-0-9.eE+]*" "$1" 2>/dev/null | cut -d: -f2 | tail -n 1 | grep . || echo -; }
short() { if [ "$1" = - ]; then echo -; else printf "%.4f" "$1"; fi; }

mkdir -p "$out"
summary="$out/summary.tsv"
printf "run\tbest_val_loss\tfinal_loss\texit\n" > "$summary"
failed=0
i=0
for c in "${combos[@]}"; do
  i=$((i + 1))
  name=$(echo "$c" | tr ' /' '_-')
  dir="$out/$name"
  sets=()
  for kv in $c; do sets+=(--set "$kv"); done
  echo "== sweep run $i/${#combos[@]}: $c -> $dir"
  # The run's output beside its directory: qft writes only into a new or empty output.dir (or its own run's).
  "$qft" train --config "$config" "${sets[@]}" --set output.dir="$dir" "${extra[@]}" > "$dir.log" 2>&1
  status=$?
  if [ $status -ne 0 ]; then
    failed=$((failed + 1))
    echo "   FAILED (exit $status): $(grep -m1 -i "error" "$dir.log" || tail -n 1 "$dir.log")"
  fi
  printf "%s\t%s\t%s\t%s\n" "$name" "$(short "$(field_min "$dir/metrics.jsonl" val_loss)")" \
    "$(short "$(field_last "$dir/metrics.jsonl" loss)")" "$status" >> "$summary"
done

echo
column -t -s $'\t' "$summary" 2>/dev/null || cat "$summary"
echo "$((${#combos[@]} - failed)) of ${#combos[@]} runs succeeded; table in $summary"
[ $failed -eq 0 ]
