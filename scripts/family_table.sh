#!/usr/bin/env bash
# The PART family on the 5-epoch Fashion-MNIST recipe: the runs behind README's family tables.
#
#   bash scripts/family_table.sh            # runs what is missing, then prints the tables
#   bash scripts/family_table.sh --table    # prints the tables of the runs that finished
#
# Runs (each `part train` with the defaults: SmallCNN, 60,000 training images, 5 epochs with 2
# of burn-in, eps 0.1, eps-low 0.0875, alpha 0.025, PGD-10 generation; the per-epoch check is
# clean and PGD-20 accuracy on all 10,000 test images), in this order (13 runs):
#   seed 0 of AT, TRADES, MART, PART, PART-T, PART-M, and of PART with XGrad-CAM, Layer-CAM and
#   Grad-CAM++ (Grad-CAM is PART's default); then seeds 1 and 2 of AT and PART
#   (`--seeds 1,2`). A run is a function of its seed, so seed 0's run serves both tables and the
#   3-seed figures equal those of `part train --seeds 0,1,2` (computed here the same way: mean
#   and sample standard deviation).
# A finished run is skipped, an unfinished one is started again. Runs of 10-15 minutes each
# on a quiet 2-core machine.
#
# Environment: PART (the binary, default .build/release/part, built if missing), OUT (default
# runs/family), NICE (default 10), EVAL_LIMIT (test images of the check, default 10000), ARGS
# (more `part train` flags for every run, e.g. ARGS="--epochs 2 --burn-in 1 --train-limit 20000"
# for a shorter table; use another OUT for it).
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${PART:-.build/release/part}
OUT=${OUT:-runs/family}
NICE=${NICE:-10}
EVAL_LIMIT=${EVAL_LIMIT:-10000}
read -r -a EXTRA <<< "${ARGS:-}"

finished() {   # a run directory whose log has all its epochs (or a sweep with its 2 seeds)
  if [ -f "$1/summary.json" ]; then
    python3 -c 'import json,sys; sys.exit(0 if len(json.load(open(sys.argv[1]))["seeds"]) == 2 else 1)' "$1/summary.json"
  else
    [ -f "$1/log.jsonl" ] && [ -f "$1/config.json" ] && python3 -c '
import json, sys
epochs = json.load(open(sys.argv[1] + "/config.json"))["config"]["epochs"]
sys.exit(0 if sum(1 for l in open(sys.argv[1] + "/log.jsonl") if l.strip()) >= epochs else 1)' "$1"
  fi
}

run() {   # run NAME ARGS...: part train into $OUT/NAME unless it finished
  local name=$1
  shift
  if finished "$OUT/$name"; then
    echo "family: $name finished, skipped" >&2
    return
  fi
  echo "family: $name: part train $* ${EXTRA[*]}" >&2
  nice -n "$NICE" "$PART" train --eval-limit "$EVAL_LIMIT" --out "$OUT/$name" --overwrite --json "$@" ${EXTRA[@]+"${EXTRA[@]}"} \
    > "$OUT/$name.jsonl"
}

if [ "${1:-}" != "--table" ]; then
  [ -x "$PART" ] || swift build -c release --product part
  mkdir -p "$OUT"
  for method in at trades mart part part-t part-m; do
    run "$method" --method "$method"
  done
  for cam in xgradcam layercam gradcam++; do
    run "part-$cam" --method part --cam "$cam"
  done
  run at-seeds --method at --seeds 1,2
  run part-seeds --method part --seeds 1,2
fi

python3 - "$OUT" "${ARGS:-}" "$EVAL_LIMIT" <<'EOF'
import json, os, statistics, sys

out, extra = sys.argv[1], sys.argv[2]
if sys.argv[3] != "10000":
    extra = f"--eval-limit {sys.argv[3]} {extra}"

def log(directory):
    """The epochs of a finished run, None while it has fewer lines than its configured epochs."""
    path, config = os.path.join(directory, "log.jsonl"), os.path.join(directory, "config.json")
    if not os.path.exists(path) or not os.path.exists(config):
        return None
    lines = [json.loads(l) for l in open(path) if l.strip()]
    return lines if lines and len(lines) >= json.load(open(config))["config"]["epochs"] else None

def row(label, command, lines):
    last = lines[-1]
    cam = [l for l in lines if l["budget"] != "constant"]
    seconds = sum(l["seconds"] for l in lines)
    speed = statistics.mean(l["imagesPerSecond"] for l in lines)
    share = f"{100 * last['fullEpsilonFraction']:.1f}%" if cam else "100%"
    command = f"{command} {extra}".strip()
    return (f"| {label} | `{command}` | {100 * last['cleanAccuracy']:.2f}% | {100 * last['robustAccuracy']:.2f}% "
            f"| {share} | {speed:.0f} | {seconds / 60:.0f} min |")

print("| method | command | clean | PGD-20 | entries at full eps | training images/s | training time |")
print("| --- | --- | --- | --- | --- | --- | --- |")
runs = [("AT", "at", "part train --method at"), ("TRADES", "trades", "part train --method trades"),
        ("MART", "mart", "part train --method mart"), ("PART", "part", "part train --method part"),
        ("PART-T", "part-t", "part train --method part-t"), ("PART-M", "part-m", "part train --method part-m"),
        ("PART, XGrad-CAM", "part-xgradcam", "part train --cam xgradcam"),
        ("PART, Layer-CAM", "part-layercam", "part train --cam layercam"),
        ("PART, Grad-CAM++", "part-gradcam++", "part train --cam gradcam++")]
missing = []
for label, directory, command in runs:
    lines = log(os.path.join(out, directory))
    if lines:
        print(row(label, command, lines))
    else:
        missing.append(label)
if missing:
    print(f"\nnot finished: {'; '.join(missing)}")

print("\n| method | seeds | clean (mean ± std) | PGD-20 (mean ± std) | per seed (clean / PGD-20) |")
print("| --- | --- | --- | --- | --- |")
for label, single, sweep in [("AT", "at", "at-seeds"), ("PART", "part", "part-seeds")]:
    lines = log(os.path.join(out, single))
    path = os.path.join(out, sweep, "summary.json")
    if not lines or not os.path.exists(path):
        print(f"| {label} | not finished | | | |")
        continue
    results = [(0, lines[-1]["cleanAccuracy"], lines[-1]["robustAccuracy"])]
    results += [(r["seed"], r["cleanAccuracy"], r["robustAccuracy"]) for r in json.load(open(path))["seeds"]]
    clean, robust = [100 * r[1] for r in results], [100 * r[2] for r in results]
    per = ", ".join(f"{c:.2f} / {p:.2f}" for c, p in zip(clean, robust))
    seeds = ",".join(str(r[0]) for r in results)
    std = statistics.stdev if len(results) > 1 else (lambda v: 0.0)
    print(f"| {label} | {seeds} | {statistics.mean(clean):.2f}% ± {std(clean):.2f} "
          f"| {statistics.mean(robust):.2f}% ± {std(robust):.2f} | {per} |")
EOF
