#!/usr/bin/env bash
# ctest dist.train: qft train under mpirun against one process, through the command line, on the tiny model.
# - N ranks reach the same weights, momentum and losses as one process with the same global batch
#   (train.grad_accum x ranks), with replicated and with sharded weights, clipping and accumulation, and with
#   LoRA (GSE adapters on a frozen base);
# - a checkpoint saved by N ranks resumes bit for bit on M ranks (2 -> 1, 1 -> 2, sharded 2 -> 3), and exports;
# - a global batch the new ranks cannot share, ranks started with different configs and dist.world_size without a
#   launcher are refused on every rank with exit 1; a rank that cannot write its checkpoint files fails the
#   checkpoint on every rank, and one killed ends the job: neither leaves a checkpoint that says DONE but is not whole;
#   one stuck (stopped) ends the job after dist.timeout_s;
# - SIGTERM to one rank stops every rank at the same step, with a checkpoint, and exit 143.
set -uo pipefail
qft=$1
mpirun=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT; echo "$tmp"
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "== $f"; tail -n 8 "$f"; done; exit 1; }
export OMP_NUM_THREADS=1 OMPI_MCA_btl=self,vader,tcp ASAN_OPTIONS=detect_leaks=0

common=(--config "$root/configs/tiny.json" --set model.path="$root/models/tiny-llama"
        --set data.train="$root/data/tiny_instruct/train.jsonl" --set data.val="$root/data/tiny_instruct/val.jsonl"
        --set data.seq_len=64 --set train.batch_size=2 --set train.steps=4 --set train.save_every=2
        --set train.eval_every=2 --set train.eval_batches=2 --set train.log_every=1 --set train.clip_grad_norm=1.0
        --set device=cpu)
# one NAME ARGS: one process; many N NAME ARGS: N ranks. Output in $tmp/NAME, its log in $tmp/NAME.log.
one() { local name=$1; shift; timeout 300 "$qft" train "${common[@]}" --set output.dir="$tmp/$name" "$@" > "$tmp/$name.log" 2>&1; }
many() {
  local n=$1 name=$2; shift 2
  timeout 300 "$mpirun" --allow-run-as-root --oversubscribe -np "$n" "$qft" train "${common[@]}" \
    --set output.dir="$tmp/$name" "$@" > "$tmp/$name.log" 2>&1
}
same() { cmp -s "$1" "$2" || fail "$1 and $2 differ"; }
losses() { grep -o '"loss":[^,]*' "$tmp/$1/metrics.jsonl"; }
step() { echo "$tmp/$1/step_0000000$2"; }
no_done() { ! ls "$tmp/$1"/step_*/DONE > /dev/null 2>&1 || fail "$1 holds a checkpoint that says DONE"; }

# The same global batch of 4 micro-batches: one process, 2 ranks with replicated weights, 2 ranks with sharded ones.
one one --set train.grad_accum=4 || fail "one process"
many 2 two --set train.grad_accum=2 || fail "2 ranks"
many 2 sharded --set train.grad_accum=2 --set dist.shard_weights=true || fail "2 ranks, sharded weights"
for run in two sharded; do
  same "$(step one 4)/model.safetensors" "$(step $run 4)/model.safetensors"
  [ "$(losses one)" = "$(losses $run)" ] || fail "$run: the losses differ from one process's"
  grep -q '"val_loss"' "$tmp/$run/metrics.jsonl" || fail "$run: no val_loss"
  [ -f "$(step $run 4)/optimizer-00001-of-00002.safetensors" ] || fail "$run: no optimizer file of rank 1"
done
grep -q "2 ranks" "$tmp/two.log" || fail "rank 0 does not log the ranks"
[ "$(grep -c '^step     4/4 | loss' "$tmp/two.log")" -eq 1 ] || fail "the progress is logged by more than rank 0"

# LoRA (GSE adapters, Lion) on a frozen base: 2 ranks reach one process's adapters, momentum and losses, and a
# 2-rank checkpoint resumes on one process bit for bit.
lora=(--set train.method=lora --set lora.rank=4 --set lora.alpha=8 --set train.lr=1e-3)
one lora_one --set train.grad_accum=4 "${lora[@]}" || fail "LoRA, one process"
many 2 lora_two --set train.grad_accum=2 "${lora[@]}" || fail "LoRA, 2 ranks"
same "$(step lora_one 4)/model.safetensors" "$(step lora_two 4)/model.safetensors"
[ "$(losses lora_one)" = "$(losses lora_two)" ] || fail "LoRA: the losses differ from one process's"
one lora_back --set train.grad_accum=4 "${lora[@]}" --resume "$(step lora_two 2)" || fail "LoRA 2 -> 1 resume"
same "$(step lora_one 4)/optimizer.safetensors" "$(step lora_back 4)/optimizer.safetensors"
same "$(step lora_one 4)/model.safetensors" "$(step lora_back 4)/model.safetensors"

# Resume across world sizes: 2 -> 1 (momentum from two files into one), 1 -> 2, sharded 2 -> 4 ranks.
one back_to_one --set train.grad_accum=4 --resume "$(step two 2)" || fail "2 -> 1 resume"
same "$(step one 4)/optimizer.safetensors" "$(step back_to_one 4)/optimizer.safetensors"
same "$(step one 4)/model.safetensors" "$(step back_to_one 4)/model.safetensors"
many 2 up_to_two --set train.grad_accum=2 --resume "$(step one 2)" || fail "1 -> 2 resume"
for r in 0 1; do
  f=optimizer-0000$r-of-00002.safetensors
  same "$(step two 4)/$f" "$(step up_to_two 4)/$f"
done
many 4 four --set train.grad_accum=1 --set dist.shard_weights=true --resume "$(step sharded 2)" || fail "2 -> 4 resume"
same "$(step one 4)/model.safetensors" "$(step four 4)/model.safetensors"
"$qft" export --checkpoint "$(step four 4)" --out "$tmp/export_four" > /dev/null 2>&1 || fail "export of a 4-rank checkpoint"
"$qft" export --checkpoint "$(step one 4)" --out "$tmp/export_one" > /dev/null 2>&1 || fail "export"
same "$tmp/export_one/model.safetensors" "$tmp/export_four/model.safetensors"

# A global batch of 4 micro-batches cannot continue as 3 ranks x 1.
many 3 three --set train.grad_accum=1 --resume "$(step one 2)"
[ $? -eq 1 ] || fail "a resume that changes the global batch should exit 1"
grep -q "the global batch must stay the same" "$tmp/three.log" || fail "no message for the changed global batch"
[ ! -e "$tmp/three" ] || fail "a refused resume left $tmp/three"

# Ranks started with different configs.
timeout 300 "$mpirun" --allow-run-as-root --oversubscribe -np 2 sh -c \
  'exec "$0" train "$@" --set train.lr=0.00$((OMPI_COMM_WORLD_RANK + 1))' "$qft" "${common[@]}" \
  --set output.dir="$tmp/mixed" > "$tmp/mixed.log" 2>&1
[ $? -eq 1 ] || fail "ranks with different configs should exit 1"
grep -q "different configs" "$tmp/mixed.log" || fail "no message for ranks with different configs"
[ ! -e "$tmp/mixed" ] || fail "ranks with different configs left $tmp/mixed"

# dist.world_size without a launcher.
one alone --set dist.world_size=2
[ $? -eq 1 ] || fail "dist.world_size=2 in one process should exit 1"
grep -q "started as one process" "$tmp/alone.log" || fail "no message for dist.world_size without a launcher"

# Rank 1 cannot write its optimizer file (a file-size limit, its signal ignored: the write fails with EFBIG): the
# checkpoint fails on every rank, which name rank 1, and nothing says DONE.
timeout 300 "$mpirun" --allow-run-as-root --oversubscribe -np 2 sh -c \
  'trap "" XFSZ; [ "$OMPI_COMM_WORLD_RANK" = 1 ] && ulimit -f 64; exec "$0" train "$@"' "$qft" "${common[@]}" \
  --set train.grad_accum=2 --set output.dir="$tmp/unwritable" > "$tmp/unwritable.log" 2>&1
[ $? -eq 1 ] || fail "rank 1 unable to write: exit $?, expected 1"
grep -q "rank 1 failed: .*optimizer-00001-of-00002.safetensors: write failed" "$tmp/unwritable.log" ||
  fail "the other ranks do not name rank 1's failure"
[ -f "$tmp/unwritable/qft_run.json" ] || fail "the run directory is gone"
no_done unwritable

# start NAME ARGS: 2 ranks in the background, each writing its shell's pid (which it becomes) to $tmp/NAME.pid.RANK;
# returns once rank 0 has logged step 3.
start() {
  local name=$1; shift
  timeout 300 "$mpirun" --allow-run-as-root --oversubscribe -np 2 bash -c \
    'echo $$ > "$0.pid.$OMPI_COMM_WORLD_RANK"; exec "$1" train "${@:2}"' "$tmp/$name" "$qft" "${common[@]}" \
    --set train.grad_accum=2 --set train.steps=100000 --set train.eval_every=0 --set output.dir="$tmp/$name" "$@" \
    > "$tmp/$name.log" 2>&1 &
  job=$!
  for _ in $(seq 600); do
    grep -q '^step     3/' "$tmp/$name.log" 2>/dev/null && return
    sleep 0.1
  done
  fail "$name: no step 3 within a minute"
}

# Rank 1 killed while the ranks save a checkpoint every step: the job ends (no hang), with a failure, and every
# checkpoint that says DONE is whole (its manifest's hashes hold).
start killed --set train.save_every=1 --set train.keep_last=0
kill -KILL "$(cat "$tmp/killed.pid.1")"
wait $job
status=$?
[ $status -ne 0 ] && [ $status -ne 124 ] || fail "rank 1 killed: exit $status (124: a hang)"
for done_file in "$tmp"/killed/step_*/DONE; do
  "$qft" inspect "$(dirname "$done_file")" > /dev/null 2>&1 || fail "$(dirname "$done_file") says DONE but is not whole"
done

# Rank 1 stopped (SIGSTOP: stuck, not gone): rank 0 waits in a collective until dist.timeout_s, says so, and the job
# ends instead of hanging.
start stuck --set train.save_every=0 --set dist.timeout_s=3
kill -STOP "$(cat "$tmp/stuck.pid.1")"
wait $job
status=$?
kill -KILL "$(cat "$tmp/stuck.pid.1")" 2> /dev/null
[ $status -ne 0 ] && [ $status -ne 124 ] || fail "a stuck rank: exit $status (124: a hang)"
grep -q "has waited .* for the other ranks (dist.timeout_s is 3)" "$tmp/stuck.log" || fail "no message for a stuck rank"

# SIGTERM to rank 1 alone: every rank stops after the same step, and that step is saved.
start stopped --set train.save_every=0
kill -TERM "$(cat "$tmp/stopped.pid.1")"
wait $job
status=$?
[ $status -eq 143 ] || fail "SIGTERM to one rank: exit $status, expected 143"
saved=$(ls -d "$tmp"/stopped/step_*/DONE 2>/dev/null | wc -l)
[ "$saved" -eq 1 ] || fail "SIGTERM to one rank: $saved checkpoints, expected 1"
echo "dist.train: all checks passed"
