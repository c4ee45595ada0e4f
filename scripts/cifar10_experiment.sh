#!/usr/bin/env bash
# PART against AT with fast adversarial training on CIFAR-10: the runs behind docs/cifar10.md.
#
#   DATA=CIFAR10_DIR bash scripts/cifar10_experiment.sh           # runs what is missing, then the table
#   DATA=CIFAR10_DIR bash scripts/cifar10_experiment.sh --table   # the table of what finished
#   DATA=CIFAR10_DIR bash scripts/cifar10_experiment.sh --pilot   # the pilot: cifar10-fast-at with
#                                                                 # 5 and 10 epochs (PILOT_EPOCHS); its
#                                                                 # 15-epoch point is the run at-seed0
#   bash scripts/cifar10_experiment.sh --reports                  # OUT/NAME/report.html of every run,
#                                                                 # with its evaluations (part report)
#
# DATA is CIFAR-10 as `part train --dataset cifar10` reads it (the binary files, or an image
# folder with train/ and test/). Label every figure of an image-folder copy that is not the
# original data as such (e.g. "CIFAR-10 (JPEG copy)").
#
# Runs (11): cifar10-fast-at and cifar10-fast-part with seeds 0, 1 and 2, seed 0 of
# cifar10-fast-part with --train-precision fp32 (is bf16 training harmless?), and the region
# experiment: cifar10-fast-at with eps 6/255 on the bottom-right or on the top-left quadrant
# (--budget regions), seeds 0 and 1 (its all-8/255 arm is cifar10-fast-at seeds 0 and 1). They
# start in this order: both presets with seeds 0 and 1, the region runs, seed 2, fp32. The
# per-epoch check (clean and PGD-20 on class-balanced test images) is the presets' 1,000 images for
# seed 0 of each preset, whose curves the docs show, and CHECK_LIMIT (100) for the other runs: the
# check only reads the model (the same weights come out whatever its size), and 1,000 images cost
# about 9% of an epoch's CPU time. After its last epoch each run is evaluated once:
#   - clean and PGD-20 (eps 8/255, alpha 2/255, random start) on all 10,000 test images;
#   - seed 0 of each preset also with AutoAttack standard (aa) on 500 class-balanced test images
#     (the first 50 of each class: `--limit 500 --balanced`);
#   - and the PART model of seed 0 drawn by `part cam` on one test image of each class
#     (OUT/part-seed0.cam.png, the maps in OUT/part-seed0.cam.npz).
# A finished run or evaluation is skipped; an unfinished run continues from its last checkpoint
# (`part train --resume`), so the script can be stopped and started again at any time, also
# across reboots. Training hours are the sum of the epochs' seconds in log.jsonl (across resumes),
# and beside it the sum of their process CPU seconds (cpuSeconds), which leave out pauses and waits.
#
# JOBS=2 THREADS=1 (the default) runs two runs at a time on one thread each; each run is taken by
# one worker under a lock (flock on OUT/NAME.lock). A run's figures depend on its thread count
# only through the order of floating-point sums.
#
# Environment: DATA (required), PART (default .build/release/part, built if missing), OUT (default
# runs/cifar10), JOBS (default 2), THREADS (default 1), NICE (default 10), TEST_LIMIT (default
# 10000), AA_LIMIT (default 500), CHECK_LIMIT (default 100), PILOT_EPOCHS (default "5 10"), ARGS (more `part train` flags
# for every run; use another OUT with them).
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${PART:-.build/release/part}
OUT=${OUT:-runs/cifar10}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
NICE=${NICE:-10}
TEST_LIMIT=${TEST_LIMIT:-10000}
AA_LIMIT=${AA_LIMIT:-500}
CHECK_LIMIT=${CHECK_LIMIT:-100}
PILOT_EPOCHS=${PILOT_EPOCHS:-5 10}
read -r -a EXTRA <<< "${ARGS:-}"
mode=${1:-}

if [ "$mode" = "--reports" ]; then   # part report of every run, with the evaluations kept beside it
  for dir in "$OUT"/*/; do
    name=$(basename "$dir")
    [ -f "$dir/log.jsonl" ] || continue
    results=()
    for suffix in eval aa; do
      if [ -s "$OUT/$name.$suffix.jsonl" ]; then results+=(--results "$OUT/$name.$suffix.jsonl"); fi
    done
    nice -n "$NICE" "$PART" report "$dir" --threads "$THREADS" ${results[@]+"${results[@]}"}
  done
  exit 0
fi

if [ "$mode" != "--table" ] && [ -z "${DATA:-}" ]; then
  echo "cifar10: set DATA to the CIFAR-10 folder (binary files, or train/ and test/ image folders)" >&2
  exit 64
fi

finished() {   # a run directory whose log has all its epochs
  [ -f "$1/log.jsonl" ] && [ -f "$1/config.json" ] && python3 -c '
import json, sys
epochs = json.load(open(sys.argv[1] + "/config.json"))["config"]["epochs"]
sys.exit(0 if sum(1 for l in open(sys.argv[1] + "/log.jsonl") if l.strip()) >= epochs else 1)' "$1"
}

run() {   # run NAME EVAL ARGS...: under NAME's lock, unless another worker holds it
  (
    flock -n 9 || { echo "cifar10: $1 is being run by another worker" >&2; exit 0; }
    run_locked "$@"
  ) 9> "$OUT/$1.lock"
}

evaluate() {   # evaluate NAME SUFFIX ARGS...: part eval of NAME's last checkpoint once into NAME.SUFFIX.json
  local name=$1 suffix=$2
  shift 2
  [ -s "$OUT/$name.$suffix.json" ] && return 0
  echo "cifar10: $name: part eval $*" >&2
  nice -n "$NICE" "$PART" eval "$OUT/$name/last.safetensors" --dataset cifar10 --data "$DATA" --eps 8/255 \
    --alpha 2/255 --threads "$THREADS" --save-results "$OUT/$name.$suffix.jsonl" --json --quiet "$@" \
    > "$OUT/$name.$suffix.json.partial"
  mv "$OUT/$name.$suffix.json.partial" "$OUT/$name.$suffix.json"
}

draw_cams() {   # draw_cams NAME: part cam of NAME's last checkpoint once, on class-balanced test images
  local name=$1
  [ -s "$OUT/$name.cam.png" ] && return 0
  echo "cifar10: $name: part cam --balanced" >&2
  nice -n "$NICE" "$PART" cam "$OUT/$name/last.safetensors" --dataset cifar10 --data "$DATA" --balanced --limit 10 \
    --threads "$THREADS" --out "$OUT/$name.cam.png" --save-maps "$OUT/$name.cam.npz" --quiet
}

run_locked() {   # part train into $OUT/NAME unless it finished, then its evaluations
  local name=$1 evals=$2
  shift 2
  if finished "$OUT/$name"; then
    echo "cifar10: $name finished" >&2
  elif [ -f "$OUT/$name/checkpoint.json" ]; then
    echo "cifar10: $name: part train --resume $OUT/$name" >&2
    nice -n "$NICE" "$PART" train --resume "$OUT/$name" --threads "$THREADS" --json >> "$OUT/$name.jsonl"
  else
    echo "cifar10: $name: part train $* ${EXTRA[*]}" >&2
    nice -n "$NICE" "$PART" train --data "$DATA" --out "$OUT/$name" --overwrite --checkpoint-minutes 10 --json "$@" \
      --threads "$THREADS" ${EXTRA[@]+"${EXTRA[@]}"} > "$OUT/$name.jsonl"
  fi
  [ "$evals" = none ] && return 0
  evaluate "$name" eval --limit "$TEST_LIMIT" --attacks natural,pgd20
  if [ "$evals" = aa ]; then evaluate "$name" aa --limit "$AA_LIMIT" --balanced --attacks natural,aa; fi
  if [ "$evals" = aa ] && [[ $name == part-* ]]; then draw_cams "$name"; fi
}

if [ "$mode" != "--table" ]; then
  [ -x "$PART" ] || swift build -c release --product part
  mkdir -p "$OUT"
  workers=()
  for ((job = 1; job < JOBS; job++)); do   # the other workers, each one pass over the list
    JOBS=1 bash "$0" "${mode:---runs}-only" & workers+=($!)
    sleep 5   # so that the workers start on different runs in list order
  done
  if [ "$mode" = --pilot ] || [ "$mode" = --pilot-only ]; then
    for epochs in $PILOT_EPOCHS; do
      run "pilot-at-e$epochs" eval --preset cifar10-fast-at --epochs "$epochs"
    done
  else
    check=(--eval-limit "$CHECK_LIMIT")
    preset() {   # preset NAME SEED: cifar10-fast-NAME with that seed (seed 0 with the full check and AutoAttack)
      if [ "$2" = 0 ]; then run "$1-seed0" aa --preset "cifar10-fast-$1" --seed 0
      else run "$1-seed$2" eval --preset "cifar10-fast-$1" --seed "$2" "${check[@]}"; fi
    }
    region() {   # region NAME SEED QUADRANT: cifar10-fast-at with 6/255 on QUADRANT
      run "region-$1-seed$2" eval --preset cifar10-fast-at --seed "$2" "${check[@]}" --budget regions --regions "$3=6/255"
    }
    # Seeds 0 and 1 first: they are also the region experiment's all-8/255 arm, which comes next
    # (the paper's Fig. 1: eps 6/255 on one quadrant, 8/255 elsewhere), then seed 2 and fp32.
    for seed in 0 1; do preset at "$seed"; preset part "$seed"; done
    for seed in 0 1; do region br "$seed" bottom-right; region tl "$seed" top-left; done
    preset at 2
    preset part 2
    run part-seed0-fp32 eval --preset cifar10-fast-part --seed 0 --train-precision fp32 "${check[@]}"
  fi
  for worker in ${workers[@]+"${workers[@]}"}; do wait "$worker"; done
  case "$mode" in --runs-only|--pilot-only) exit 0 ;; esac
fi

python3 - "$OUT" "$TEST_LIMIT" "$AA_LIMIT" <<'EOF'
import glob, json, os, statistics, sys

out, test_limit, aa_limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def not_yet(name):
    """The state of a run without a finished epoch: begun (its config.json written) or not."""
    begun = os.path.exists(os.path.join(out, name, "config.json"))
    return "in its first epoch" if begun else "not started"

def log(name):
    """The epochs of a run (all lines of log.jsonl), and whether it finished."""
    directory = os.path.join(out, name)
    path, config = os.path.join(directory, "log.jsonl"), os.path.join(directory, "config.json")
    if not os.path.exists(path) or not os.path.exists(config):
        return None, False
    lines = [json.loads(l) for l in open(path) if l.strip()]
    return lines, len(lines) >= json.load(open(config))["config"]["epochs"]

def figures(name, suffix, attack):
    """(clean, robust) accuracy of a finished `part eval`, None until it finished. A composite
    attack (aa) is reported as its stages: its figure is the worst case after the last of them."""
    path = os.path.join(out, f"{name}.{suffix}.json")
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    result = json.load(open(path))
    stages = {s["name"]: s for s in result["attacks"]}
    robust = stages[attack]["robust"] / result["count"] if attack in stages else result["robustAccuracy"]
    return result["cleanAccuracy"], robust

def hours(lines):
    """Training hours: the wall-clock sum, and beside it the process CPU hours when every epoch
    counted them (`cpuSeconds`; with --threads 1 the single-thread time, pauses and waits left out)."""
    text = f"{sum(l['seconds'] for l in lines) / 3600:.2f}"
    if lines and all(l.get("cpuSeconds") is not None for l in lines):
        text += f" (CPU {sum(l['cpuSeconds'] for l in lines) / 3600:.2f})"
    return text

# The pilot: accuracy against training hours, epoch by epoch (the per-epoch check: 1,000
# class-balanced test images) and at the end (all test images).
pilots = sorted(glob.glob(os.path.join(out, "pilot-at-e*")), key=lambda p: int(p.rsplit("e", 1)[1].split(".")[0])
                if p.rsplit("e", 1)[1].split(".")[0].isdigit() else 0)
pilots = [os.path.basename(p) for p in pilots if os.path.isdir(p)]
if os.path.isdir(os.path.join(out, "at-seed0")):
    pilots.append("at-seed0")   # the preset's own epoch count, seed 0: the pilot's last point
if os.path.isdir(os.path.join(out, "part-seed0")):
    pilots.append("part-seed0")   # PART's curve beside it (the same 1,000-image check)
if pilots:
    print("| run | epoch | hours so far | epoch seconds (CPU) | check clean | check PGD-20 | train adv acc | pixels at full eps |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in pilots:
        lines, done = log(name)
        for i, l in enumerate(lines or []):
            cpu = f" ({l['cpuSeconds']:.0f})" if l.get("cpuSeconds") is not None else ""
            full = l.get("fullEpsilonFraction")
            print(f"| {name} | {l['epoch']}/{l['epochs']} | {hours(lines[:i + 1])} | {l['seconds']:.0f}{cpu} "
                  f"| {100 * l['cleanAccuracy']:.2f}% | {100 * l['robustAccuracy']:.2f}% | {100 * l['trainAccuracy']:.2f}% "
                  f"| {'' if full is None else f'{100 * full:.1f}%'} |")
        f = figures(name, "eval", "pgd20")
        if f:
            print(f"| {name} | test set ({test_limit}) | {hours(lines)} | | {100 * f[0]:.2f}% | {100 * f[1]:.2f}% | | |")
    print()

def spread(values):
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"

print("| method | seed | training hours | clean | PGD-20 | AutoAttack (clean / robust) |")
print("| --- | --- | --- | --- | --- | --- |")
means = {}
for label, prefix in [("AT (cifar10-fast-at)", "at"), ("PART (cifar10-fast-part)", "part")]:
    cleans, robusts = [], []
    for seed in (0, 1, 2):
        name = f"{prefix}-seed{seed}"
        lines, done = log(name)
        f = figures(name, "eval", "pgd20")
        aa = figures(name, "aa", "aa") if seed == 0 else None
        if not lines:
            print(f"| {label} | {seed} | {not_yet(name)} | | | |")
            continue
        state = f"{hours(lines)}" + ("" if done else f" ({len(lines)} epochs done, running)")
        aa_text = f"{100 * aa[0]:.2f}% / {100 * aa[1]:.2f}%" if aa else ""
        if f:
            cleans.append(100 * f[0])
            robusts.append(100 * f[1])
            print(f"| {label} | {seed} | {state} | {100 * f[0]:.2f}% | {100 * f[1]:.2f}% | {aa_text} |")
        else:
            print(f"| {label} | {seed} | {state} | | | |")
    if len(cleans) == 3:
        print(f"| {label} | mean ± std | | {spread(cleans)} | {spread(robusts)} | |")
    means[prefix] = (cleans, robusts)
name = "part-seed0-fp32"
lines, done = log(name)
fp32 = figures(name, "eval", "pgd20")
if lines:
    text = f"| PART, fp32 training passes | 0 | {hours(lines)}" + ("" if done else " (running)")
    print(text + (f" | {100 * fp32[0]:.2f}% | {100 * fp32[1]:.2f}% | |" if fp32 else " | | | |"))
print()

# The time bar: the preset's seed-0 run within 3 hours of the 2-core machine, and at least 80%
# clean and 43% PGD-20 on the test set. One thread per run: its CPU hours / 2. Two threads: the
# epochs' seconds, taken as the run's epoch count x its median epoch, so that epochs slowed by
# other work on the machine (builds, tests) do not count; the plain sums are printed beside it.
lines, done = log("at-seed0")
f = figures("at-seed0", "eval", "pgd20")
if done and f and all(l.get("cpuSeconds") is not None for l in lines):
    state = os.path.join(out, "at-seed0", "checkpoint.json")
    threads = json.load(open(state)).get("threads", 1) if os.path.exists(state) else 1
    cpu, wall = (sum(l[k] for l in lines) / 3600 for k in ("cpuSeconds", "seconds"))
    if threads == 1:
        machine, how = cpu / 2, f"{cpu:.2f} single-thread CPU hours / 2"
    else:
        median = statistics.median(l["seconds"] for l in lines)
        machine, how = len(lines) * median / 3600, f"{len(lines)} epochs x the median epoch of {median:.0f} s with {threads} threads"
    print(f"time bar (cifar10-fast-at, seed 0): {how} = {machine:.2f} hours of the 2-core machine (bar 3; "
          f"wall-clock sum {wall:.2f} h, CPU {cpu:.2f} h); clean {100 * f[0]:.2f}% (bar 80), PGD-20 {100 * f[1]:.2f}% (bar 43): "
          + ("met" if machine <= 3 and f[0] >= 0.80 and f[1] >= 0.43 else "not met"))
# AutoAttack against PGD-20 on the same points: the AutoAttack subset is the first
# ceil(AA_LIMIT / K) test images of each class (`--balanced`); its lines are numbered by their
# place in it, the 10,000-image evaluation's by test index. The header of a newer part eval
# lists the subset's test indices (splitIndices); an older one's subset is rebuilt from the labels.
def points(path):
    lines = [json.loads(l) for l in open(path)]
    return lines[0], lines[1:]
for prefix in ("at", "part"):
    name = f"{prefix}-seed0"
    if not (figures(name, "aa", "aa") and figures(name, "eval", "pgd20")):
        continue
    _, tested = points(os.path.join(out, f"{name}.eval.jsonl"))
    header, attacked = points(os.path.join(out, f"{name}.aa.jsonl"))
    if header.get("splitIndices"):
        subset = [tested[i] for i in header["splitIndices"]]
    else:
        classes = max(r["label"] for r in tested) + 1
        per_class, taken, subset = -(-len(attacked) // classes), [0] * classes, []
        for r in tested:
            if taken[r["label"]] < per_class:
                taken[r["label"]] += 1
                subset.append(r)
    assert [r["label"] for r in subset] == [r["label"] for r in attacked], "the AutoAttack subset is not the balanced one"
    columns = [k for k in attacked[0] if k not in ("index", "label", "prediction", "brokenBy", "adversarialPrediction", "unverified")]
    pgd = {i for i, r in enumerate(subset) if r["pgd20"]}
    aa = {i for i, r in enumerate(attacked) if all(r[c] for c in columns)}
    first = {i for i, r in enumerate(attacked) if r[columns[0]] and r[columns[1]]}
    print(f"AutoAttack and PGD-20 on the same {len(attacked)} points ({name}): PGD-20 leaves {len(pgd)} robust, "
          f"AutoAttack {len(aa)} ({len(aa - pgd)} of them broken by PGD-20, {len(pgd - aa)} more broken by AutoAttack); "
          f"its first attack ({columns[1]}) leaves {len(first)}, {len(first & pgd)} of them also robust to PGD-20")
# The paper's claim: clean accuracy up, robustness about the same.
if all(len(means[p][0]) == 3 for p in ("at", "part")):
    clean, robust = (statistics.mean(means["part"][i]) - statistics.mean(means["at"][i]) for i in (0, 1))
    print(f"PART - AT over the 3 seeds: clean {clean:+.2f} points, PGD-20 {robust:+.2f} points")
# Is bf16 training harmless? The fp32 run against the bf16 seeds' mean ± max(1 point, 2 std).
if fp32 and len(means["part"][0]) == 3:
    verdicts = []
    for what, values, value in [("clean", means["part"][0], 100 * fp32[0]), ("PGD-20", means["part"][1], 100 * fp32[1])]:
        mean, band = statistics.mean(values), max(1, 2 * statistics.stdev(values))
        verdicts.append(f"{what} {value:.2f}% against {mean:.2f} ± {band:.2f}: "
                        + ("inside" if abs(value - mean) <= band else "outside"))
    print("fp32 training passes (PART, seed 0): " + "; ".join(verdicts))
print()
print("| training budget | seed | training hours | clean | PGD-20 |")
print("| --- | --- | --- | --- | --- |")
for label, prefix in [("8/255 everywhere (cifar10-fast-at)", "at"), ("6/255 on the bottom-right quadrant", "region-br"),
                      ("6/255 on the top-left quadrant", "region-tl")]:
    arm = []
    for seed in (0, 1):
        name = f"{prefix}-seed{seed}"
        lines, done = log(name)
        f = figures(name, "eval", "pgd20")
        if not lines:
            print(f"| {label} | {seed} | {not_yet(name)} | | |")
            continue
        state = f"{hours(lines)}" + ("" if done else f" ({len(lines)} epochs done, running)")
        print(f"| {label} | {seed} | {state} | " + (f"{100 * f[0]:.2f}% | {100 * f[1]:.2f}% |" if f else " | |"))
        if f:
            arm.append(f)
    if len(arm) == 2:
        print(f"| {label} | mean | | {50 * (arm[0][0] + arm[1][0]):.2f}% | {50 * (arm[0][1] + arm[1][1]):.2f}% |")
print(f"\nclean and PGD-20 (eps 8/255, alpha 2/255, random start) on the first {test_limit} test images; "
      f"AutoAttack standard on {aa_limit} class-balanced test images; hours: the sum of the epochs' seconds "
      "in log.jsonl (wall clock), and in brackets their CPU seconds (cpuSeconds) when every epoch has them")
EOF
