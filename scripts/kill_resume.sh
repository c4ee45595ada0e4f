#!/usr/bin/env bash
# Exact resume after SIGKILL: a 2-epoch run (16 batches each) killed with SIGKILL at three random moments, each
# time continued with `part train --resume`, must end with a last.safetensors byte-identical to
# the same run left alone.
#
#   bash scripts/kill_resume.sh                 # Fashion-MNIST, 1,024 training images
#   KILLS=5 SEED=7 bash scripts/kill_resume.sh
#
# Environment: PART (default .build/release/part, built if missing), DATA (default the
# Fashion-MNIST folder), OUT (default a fresh temporary folder), KILLS (default 3), SEED (of the
# random moments, default the time), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${PART:-.build/release/part}
KILLS=${KILLS:-3}
THREADS=${THREADS:-2}
SEED=${SEED:-$(date +%s)}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/part-kill-resume.XXXXXX")}
mkdir -p "$OUT"
[ -x "$PART" ] || swift build -c release --product part
RANDOM=$SEED

ARGS=(train --train-limit 1024 --eval-limit 250 --epochs 2 --burn-in 1 --batch-size 64 --steps 5 --eval-steps 5
      --threads "$THREADS" --checkpoint-every 4)
[ -n "${DATA:-}" ] && ARGS+=(--data "$DATA")

echo "uninterrupted run: $OUT/reference"
start=$(date +%s%N)
"$PART" "${ARGS[@]}" --out "$OUT/reference" > "$OUT/reference.txt" 2>&1
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "uninterrupted: $(( elapsed_ms / 1000 )) s"

# The share of the run (of 32 batches) that the last committed checkpoint of $1 holds.
committed() {
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["epochsDone"] * 16 + m["batchesDone"])' \
    "$1/checkpoint.json" 2>/dev/null || echo 0
}

run="$OUT/killed"
command=("$PART" "${ARGS[@]}" --out "$run")
for k in $(seq 1 "$KILLS"); do
  # A random moment in the first 80% of what is left of the run, judged by the uninterrupted
  # run's time (process start included), at millisecond resolution.
  left_ms=$(( elapsed_ms * (32 - $(committed "$run")) / 32 * 8 / 10 ))
  delay_ms=$(( ((RANDOM << 15) | RANDOM) % (left_ms > 1 ? left_ms : 1) ))
  "${command[@]}" > "$OUT/killed-$k.txt" 2>&1 &
  pid=$!
  sleep "$(awk -v ms="$delay_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    echo "SIGKILL $k after $delay_ms ms; the last committed checkpoint holds $(committed "$run") of 32 batches"
  else
    wait "$pid" || true
    echo "the run ended before SIGKILL $k (after $delay_ms ms)"
  fi
  command=("$PART" train --resume "$run")
done
"${command[@]}" > "$OUT/killed-final.txt" 2>&1
echo "resumed to the end: $(grep -c '"epoch"' "$run/log.jsonl") log lines (epochs $(python3 -c 'import json,sys; print(",".join(str(json.loads(l)["epoch"]) for l in open(sys.argv[1])))' "$run/log.jsonl"))"
if cmp -s "$OUT/reference/last.safetensors" "$run/last.safetensors"; then
  echo "last.safetensors: byte-identical ($(md5sum < "$run/last.safetensors" | cut -c1-32))"
else
  echo "last.safetensors: DIFFERENT"; exit 1
fi
