#!/usr/bin/env bash
# The PART family on the 5-epoch Fashion-MNIST recipe: the runs behind the family tables of docs/results.md.
#
#   bash scripts/family_table.sh            # runs what is missing, then prints the tables
#   bash scripts/family_table.sh --table    # prints the tables of the runs that finished
#
# Runs (each `part train` with the defaults: SmallCNN, 60,000 training images, 5 epochs with 2
# of burn-in, eps 0.1, eps-low 0.0875, alpha 0.025, PGD-10 generation, the per-epoch check on
# the first 1,000 test images), in this order (13 runs):
#   seed 0 of AT, TRADES, MART, PART, PART-T, PART-M, and of PART with XGrad-CAM, Layer-CAM and
#   Grad-CAM++ (Grad-CAM is PART's default); then seeds 1 and 2 of AT and PART.
# After its last epoch each run's checkpoint is evaluated once on the whole test set
# (`part eval --attacks natural,pgd20`: clean and PGD-20, eps 0.1, alpha 0.025, random start);
# the tables report those figures. A run is a function of its seed, so seed 0's run serves both
# tables, and the seeds 1 and 2 runs equal those of `part train --seeds 0,1,2` (the 3-seed
# figures are computed the same way: mean and sample standard deviation).
# A finished run is skipped; an unfinished one continues from its last checkpoint
# (`part train --resume`), so the script can be stopped and started again at any time.
# On a quiet 2-core machine a run takes about 20 minutes alone on both cores, and about 25 minutes
# on one core beside another (JOBS=2 THREADS=1: about 2.7 hours for all 13).
#
# JOBS=2 THREADS=1 runs two runs at a time, each on one thread: on a 2-core machine that is about
# as fast as one run on two threads when the machine is quiet, and much faster when something
# else also runs (a kernel's threads then wait for each other at every barrier). Each run is taken
# by one worker under a lock (flock on OUT/NAME.lock), so workers never share a run. A run's
# figures depend on its thread count only through the order of floating-point sums.
#
# Environment: PART (the binary, default .build/release/part, built if missing), OUT (default
# runs/family), NICE (default 10), EVAL_LIMIT (test images of the per-epoch check, default 1000),
# TEST_LIMIT (test images of the final evaluation, default 10000), JOBS (runs at a time, default
# 1), THREADS (--threads of every part command, default all cores), ARGS (more `part train` flags
# for every run, e.g. ARGS="--epochs 2 --burn-in 1 --train-limit 20000" for a shorter table;
# use another OUT for it).
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${PART:-.build/release/part}
OUT=${OUT:-runs/family}
NICE=${NICE:-10}
EVAL_LIMIT=${EVAL_LIMIT:-1000}
TEST_LIMIT=${TEST_LIMIT:-10000}
JOBS=${JOBS:-1}
read -r -a EXTRA <<< "${ARGS:-}"
THREAD_ARGS=()
[ -n "${THREADS:-}" ] && THREAD_ARGS=(--threads "$THREADS")

finished() {   # a run directory whose log has all its epochs
  [ -f "$1/log.jsonl" ] && [ -f "$1/config.json" ] && python3 -c '
import json, sys
epochs = json.load(open(sys.argv[1] + "/config.json"))["config"]["epochs"]
sys.exit(0 if sum(1 for l in open(sys.argv[1] + "/log.jsonl") if l.strip()) >= epochs else 1)' "$1"
}

run() {   # run NAME ARGS...: under NAME's lock, unless another worker holds it
  (
    flock -n 9 || { echo "family: $1 is being run by another worker" >&2; exit 0; }
    run_locked "$@"
  ) 9> "$OUT/$1.lock"
}

run_locked() {   # part train into $OUT/NAME unless it finished, then part eval once
  local name=$1
  shift
  if finished "$OUT/$name"; then
    echo "family: $name finished" >&2
  elif [ -f "$OUT/$name/checkpoint.json" ]; then
    echo "family: $name: part train --resume $OUT/$name" >&2
    nice -n "$NICE" "$PART" train --resume "$OUT/$name" ${THREAD_ARGS[@]+"${THREAD_ARGS[@]}"} --json >> "$OUT/$name.jsonl"
  else
    echo "family: $name: part train $* ${EXTRA[*]}" >&2
    nice -n "$NICE" "$PART" train --eval-limit "$EVAL_LIMIT" --out "$OUT/$name" --overwrite --json "$@" \
      ${THREAD_ARGS[@]+"${THREAD_ARGS[@]}"} \
      ${EXTRA[@]+"${EXTRA[@]}"} > "$OUT/$name.jsonl"
  fi
  if [ ! -s "$OUT/$name.eval.json" ]; then
    echo "family: $name: part eval on the first $TEST_LIMIT test images" >&2
    nice -n "$NICE" "$PART" eval "$OUT/$name/last.safetensors" --limit "$TEST_LIMIT" --attacks natural,pgd20 \
      ${THREAD_ARGS[@]+"${THREAD_ARGS[@]}"} --json --quiet > "$OUT/$name.eval.json.partial"
    mv "$OUT/$name.eval.json.partial" "$OUT/$name.eval.json"
  fi
}

if [ "${1:-}" != "--table" ]; then
  [ -x "$PART" ] || swift build -c release --product part
  mkdir -p "$OUT"
  workers=()
  for ((job = 1; job < JOBS; job++)); do   # the other workers, each one pass over the list
    JOBS=1 bash "$0" --runs-only & workers+=($!)
    sleep 5   # so that the workers start on different runs in list order
  done
  for method in at trades mart part part-t part-m; do
    run "$method" --method "$method"
  done
  for cam in xgradcam layercam gradcam++; do
    run "part-$cam" --method part --cam "$cam"
  done
  for seed in 1 2; do
    run "at-seed$seed" --method at --seed "$seed"
    run "part-seed$seed" --method part --seed "$seed"
  done
  for worker in ${workers[@]+"${workers[@]}"}; do wait "$worker"; done
  [ "${1:-}" = "--runs-only" ] && exit 0
fi

python3 - "$OUT" "${ARGS:-}" "$EVAL_LIMIT" "$TEST_LIMIT" <<'EOF'
import json, os, statistics, sys

out, extra, test_limit = sys.argv[1], sys.argv[2], int(sys.argv[4])
if sys.argv[3] != "1000":
    extra = f"--eval-limit {sys.argv[3]} {extra}"

def log(directory):
    """The epochs of a finished run, None while it has fewer lines than its configured epochs."""
    path, config = os.path.join(directory, "log.jsonl"), os.path.join(directory, "config.json")
    if not os.path.exists(path) or not os.path.exists(config):
        return None
    lines = [json.loads(l) for l in open(path) if l.strip()]
    return lines if lines and len(lines) >= json.load(open(config))["config"]["epochs"] else None

def evaluation(directory):
    """(clean, PGD-20) accuracy of the run's final `part eval`, None until it finished."""
    path = directory + ".eval.json"
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    result = json.load(open(path))
    stages = {s["name"]: s for s in result["attacks"]}
    return result["cleanAccuracy"], stages["pgd20"]["robust"] / result["count"]

def row(label, command, lines, figures):
    """One table row. No speed column: the runs share the machine (JOBS, other work), so their
    times say nothing about the methods' costs; `part bench` measures those."""
    last = lines[-1]
    cam = [l for l in lines if l["budget"] != "constant"]
    share = f"{100 * last['fullEpsilonFraction']:.1f}%" if cam else "100%"
    command = f"{command} {extra}".strip()
    return f"| {label} | `{command}` | {100 * figures[0]:.2f}% | {100 * figures[1]:.2f}% | {share} |"

print("| method | command | clean | PGD-20 | entries at full eps (last epoch) |")
print("| --- | --- | --- | --- | --- |")
runs = [("AT", "at", "part train --method at"), ("TRADES", "trades", "part train --method trades"),
        ("MART", "mart", "part train --method mart"), ("PART", "part", "part train --method part"),
        ("PART-T", "part-t", "part train --method part-t"), ("PART-M", "part-m", "part train --method part-m"),
        ("PART, XGrad-CAM", "part-xgradcam", "part train --cam xgradcam"),
        ("PART, Layer-CAM", "part-layercam", "part train --cam layercam"),
        ("PART, Grad-CAM++", "part-gradcam++", "part train --cam gradcam++")]
missing = []
for label, directory, command in runs:
    lines, figures = log(os.path.join(out, directory)), evaluation(os.path.join(out, directory))
    if lines and figures:
        print(row(label, command, lines, figures))
    else:
        missing.append(label)
if missing:
    print(f"\nnot finished: {'; '.join(missing)}")

def spread(values):
    return f"{statistics.mean(values):.2f}% ± {statistics.stdev(values):.2f}"

print("\n| method | seeds | clean (mean ± std) | PGD-20 (mean ± std) | per seed (clean / PGD-20) "
      "| last held-out check, as `--seeds` prints it (clean; PGD-20) |")
print("| --- | --- | --- | --- | --- | --- |")
for label, name in [("AT", "at"), ("PART", "part")]:
    directories = [os.path.join(out, d) for d in (name, f"{name}-seed1", f"{name}-seed2")]
    results, logs = [evaluation(d) for d in directories], [log(d) for d in directories]
    if any(r is None for r in results) or any(l is None for l in logs):
        print(f"| {label} | not finished | | | | |")
        continue
    clean, robust = [100 * r[0] for r in results], [100 * r[1] for r in results]
    per = ", ".join(f"{c:.2f} / {p:.2f}" for c, p in zip(clean, robust))
    check = (spread([100 * l[-1]["cleanAccuracy"] for l in logs]) + "; "
             + spread([100 * l[-1]["robustAccuracy"] for l in logs]))
    print(f"| {label} | 0,1,2 | {spread(clean)} | {spread(robust)} | {per} | {check} |")
print(f"\nclean and PGD-20 (eps 0.1, alpha 0.025, random start): `part eval --attacks natural,pgd20` on the "
      f"first {test_limit} test images; the held-out check: each run's last epoch in log.jsonl")
EOF
