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
[ -x "$PART" ] || swift build -c release --product part
RANDOM=$SEED

ARGS=(train --train-limit 1024 --eval-limit 250 --epochs 2 --burn-in 1 --batch-size 64 --steps 5 --eval-steps 5
      --threads "$THREADS" --checkpoint-every 4)
[ -n "${DATA:-}" ] && ARGS+=(--data "$DATA")

echo "uninterrupted run: $OUT/reference"
start=$(date +%s)
"$PART" "${ARGS[@]}" --out "$OUT/reference" > "$OUT/reference.txt" 2>&1
echo "uninterrupted: $(( $(date +%s) - start )) s"

# The batches done so far by the run writing $1 (from its progress lines "epoch E/2: batch B/N").
progress() {
  tr '\r' '\n' < "$1" | sed -n 's/^epoch \([0-9]*\)\/[0-9]*: batch \([0-9]*\)\/\([0-9]*\).*/\1 \2 \3/p' | tail -1 |
    awk '{ v = ($1 - 1) * $3 + $2 } END { print v + 0 }'
}

run="$OUT/killed"
command=("$PART" "${ARGS[@]}" --out "$run")
total=32   # 2 epochs of 16 batches
done_batches=0
for k in $(seq 1 "$KILLS"); do
  # A random moment: after a random batch still to come (the epoch-end check included), plus a
  # random 0-3 s, so that kills land inside batches, checkpoint writes and the held-out check.
  log="$OUT/killed-$k.txt"
  "${command[@]}" > "$log" 2>&1 &
  pid=$!
  target=$(( done_batches + 1 + RANDOM % (total - done_batches > 2 ? total - done_batches - 1 : 1) ))
  while kill -0 "$pid" 2>/dev/null && [ "$(progress "$log")" -lt "$target" ]; do sleep 0.2; done
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", r % 3000 / 1000 }')"
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    position=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(f"{m[\"epochsDone\"]} epochs + {m[\"batchesDone\"]} batches")' "$run/checkpoint.json" 2>/dev/null || echo "none yet")
    done_batches=$(progress "$log")
    echo "SIGKILL $k in batch $(( done_batches + 1 )) or the check after it (aimed after batch $target); last committed checkpoint: $position"
  else
    wait "$pid" || true
    echo "the run ended before SIGKILL $k"
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
