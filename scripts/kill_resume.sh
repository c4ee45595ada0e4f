#!/usr/bin/env bash
# Exact resume after SIGKILL: a 2-epoch run killed with SIGKILL at three random moments, each
# time continued with `part train --resume`, must end with a last.safetensors byte-identical to
# the same run left alone.
#
#   bash scripts/kill_resume.sh                 # Fashion-MNIST, 2,048 training images
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
[ -x "$PART" ] || swift build -c release --product part
RANDOM=$SEED

ARGS=(train --train-limit 2048 --eval-limit 500 --epochs 2 --burn-in 1 --batch-size 128 --steps 5 --eval-steps 5
      --threads "$THREADS" --checkpoint-every 4)
[ -n "${DATA:-}" ] && ARGS+=(--data "$DATA")

echo "uninterrupted run: $OUT/reference"
start=$(date +%s.%N)
"$PART" "${ARGS[@]}" --out "$OUT/reference" > "$OUT/reference.txt" 2>&1
seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
printf 'uninterrupted: %.0f s\n' "$seconds"

run="$OUT/killed"
command=("$PART" "${ARGS[@]}" --out "$run")
for k in $(seq 1 "$KILLS"); do
  # A moment within 90% of the uninterrupted run's duration (millisecond resolution).
  delay=$(awk -v r="$(( (RANDOM * 32768 + RANDOM) % 1000000 ))" -v s="$seconds" 'BEGIN { printf "%.3f", r / 1000000 * s * 0.9 }')
  "${command[@]}" >> "$OUT/killed.txt" 2>&1 &
  pid=$!
  sleep "$delay"
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    position=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(f"epochs done {m[\"epochsDone\"]}, batches done {m[\"batchesDone\"]}")' "$run/checkpoint.json" 2>/dev/null || echo "no checkpoint yet")
    printf 'SIGKILL %d after %6.2f s; last committed checkpoint: %s\n' "$k" "$delay" "$position"
  else
    wait "$pid" || true
    printf 'run ended before SIGKILL %d\n' "$k"
  fi
  command=("$PART" train --resume "$run")
done
"${command[@]}" >> "$OUT/killed.txt" 2>&1
echo "resumed to the end: $(grep -c '"epoch"' "$run/log.jsonl") log lines (epochs $(python3 -c 'import json,sys; print(",".join(str(json.loads(l)["epoch"]) for l in open(sys.argv[1])))' "$run/log.jsonl"))"
if cmp -s "$OUT/reference/last.safetensors" "$run/last.safetensors"; then
  echo "last.safetensors: byte-identical ($(md5sum < "$run/last.safetensors" | cut -c1-32))"
else
  echo "last.safetensors: DIFFERENT"; exit 1
fi
