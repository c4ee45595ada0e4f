#!/usr/bin/env bash
# Exact resume of `part eval` after SIGKILL: an evaluation with --save-results is killed with
# SIGKILL at random moments while one of its attacks runs (Square by default), started again with
# the same command until it finishes, and its per-example results must equal those of the same
# evaluation left alone, line for line.
#
#   bash scripts/kill_resume_eval.sh CHECKPOINT
#   LIMIT=1000 BATCH=256 KILLS=3 bash scripts/kill_resume_eval.sh runs/compare-eval/smallcnn_at.safetensors
#   REFERENCE=results.jsonl bash scripts/kill_resume_eval.sh CHECKPOINT   # an uninterrupted run's file
#
# Environment: PART (default .build/release/part, built if missing), ATTACKS (default
# natural,pgd20,aa), DURING (the attack to kill in, default square), LIMIT (test points, default
# 500), BATCH (default 256), KILLS (default 3), SEED (of the random moments, default the time),
# OUT (default a fresh temporary folder), REFERENCE (the --save-results file of an uninterrupted
# run of the same command; run here when not given), EXTRA (more `part eval` flags, e.g.
# "--data DIR").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ]; then
  echo "usage: bash scripts/kill_resume_eval.sh CHECKPOINT" >&2
  exit 64
fi
CHECKPOINT=$1
PART=${PART:-.build/release/part}
ATTACKS=${ATTACKS:-natural,pgd20,aa}
DURING=${DURING:-square}
LIMIT=${LIMIT:-500}
BATCH=${BATCH:-256}
KILLS=${KILLS:-3}
SEED=${SEED:-$(date +%s)}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/part-kill-resume-eval.XXXXXX")}
read -r -a MORE <<< "${EXTRA:-}"
mkdir -p "$OUT"
[ -x "$PART" ] || swift build -c release --product part
RANDOM=$SEED
command=("$PART" eval "$CHECKPOINT" --limit "$LIMIT" --batch-size "$BATCH" --attacks "$ATTACKS" --json
         ${MORE[@]+"${MORE[@]}"})

reference=${REFERENCE:-$OUT/reference.jsonl}
if [ -z "${REFERENCE:-}" ]; then
  echo "uninterrupted run: ${command[*]} --save-results $reference"
  start=$(date +%s)
  "${command[@]}" --save-results "$reference" > "$OUT/reference.json" 2> "$OUT/reference.log"
  echo "uninterrupted: $(( $(date +%s) - start )) s"
fi

results="$OUT/killed.jsonl"
rm -f "$results"
attempt=0
for kill in $(seq "$KILLS"); do
  attempt=$((attempt + 1))
  log="$OUT/attempt-$attempt.log"
  : > "$log"   # exists before the wait loop reads it
  "${command[@]}" --save-results "$results" > "$OUT/attempt-$attempt.json" 2> "$log" &
  pid=$!
  # Wait until the progress line names the attack, then a random 0.0-3.0 s more.
  while kill -0 "$pid" 2> /dev/null && ! tr '\r' '\n' < "$log" | grep -q ", $DURING;"; do
    sleep 0.05
  done
  sleep "$(( RANDOM % 4 )).$(( RANDOM % 10 ))"
  if kill -9 "$pid" 2> /dev/null; then
    wait "$pid" 2> /dev/null || true
    lines=$(( $(wc -l < "$results") - 1 ))
    echo "kill $kill: SIGKILL during $DURING with $lines of $LIMIT points written"
  else
    wait "$pid" || { echo "attempt $attempt failed: $(tail -3 "$log")" >&2; exit 1; }
    echo "kill $kill: the run finished before it could be killed"
    break
  fi
done
attempt=$((attempt + 1))
"${command[@]}" --save-results "$results" > "$OUT/attempt-$attempt.json" 2> "$OUT/attempt-$attempt.log"
grep -a "resum" "$OUT"/attempt-*.log | tr '\r' '\n' | grep -a "resum" | sed 's/^/  /' || true

python3 - "$reference" "$results" <<'EOF'
import json, sys

def read(path):
    with open(path) as f:
        header = json.loads(f.readline())
        rows = {}
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row["index"] in rows:
                    sys.exit(f"{path}: point {row['index']} written twice")
                rows[row["index"]] = row
    return header, rows

(h1, a), (h2, b) = read(sys.argv[1]), read(sys.argv[2])
for key in ("attacks", "columns", "count", "checkpointSHA256", "epsilon", "seed", "batchSize"):
    if h1.get(key) != h2.get(key):
        sys.exit(f"the headers differ in {key}: {h1.get(key)} vs {h2.get(key)}")
if sorted(a) != sorted(b):
    sys.exit(f"different points: {len(a)} vs {len(b)}")
differ = [i for i in a if a[i] != b[i]]
print(f"{len(a)} points, columns {', '.join(h1['columns'])}: {len(differ)} differ {differ[:20]}")
sys.exit(1 if differ else 0)
EOF
echo "identical per-example results after SIGKILL and resume"
