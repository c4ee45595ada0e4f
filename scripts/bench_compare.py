"""Side-by-side speed table: `part bench` against the same workloads in PyTorch, one after the other.

Run from the project root, on an otherwise idle machine, with the Python of a venv that has torch
(VENV) and the PyTorch reference benchmark script (TORCH_REFERENCE):
  swift build -c release --product part
  VENV/bin/python scripts/bench_compare.py --torch-reference TORCH_REFERENCE
  VENV/bin/python scripts/bench_compare.py --torch-reference TORCH_REFERENCE --generation fgsm \
      --archs preact-resnet18 --torch-best --train-bf16

For every model it runs torch_reference.py, `part bench` in fp32 and (where the CPU has it) bf16,
and, with --ablations, `part bench --without X` for each optimisation; --torch-best adds PyTorch as
its users would run it at its best (channels-last, bf16 autocast in the attack and training passes),
--train-bf16 adds `part bench --precision bf16 --train-precision bf16`, and --generation fgsm times
fast AT (FGSM-RS) instead of PGD-10; every run is a separate
process with the same thread count. It prints Markdown tables (ratios are PyTorch seconds /
project seconds, so higher is better for the project) and writes every raw JSON object to
--out. Nothing is timed here: the figures are the two programs' own medians.
"""
import argparse
import json
import os
import subprocess
import sys

OPTIMISATIONS = ["fold", "fuse", "pool", "narrow", "inference", "winograd"]


def run_json(command):
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", default=".build/release/part")
    p.add_argument("--torch-reference", required=True, help="path of torch_reference.py")
    p.add_argument("--archs", default="small-cnn,resnet18")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--ablations", action="store_true", help="also time each --without X")
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--out", default="bench_results.jsonl")
    p.add_argument("--generation", choices=["pgd", "fgsm"], default="pgd")
    p.add_argument("--torch-best", action="store_true",
                   help="also PyTorch with --channels-last --autocast-bf16 --train-autocast-bf16")
    p.add_argument("--train-bf16", action="store_true",
                   help="also part bench with bf16 attack and training passes")
    a = p.parse_args()

    rows = []
    with open(a.out, "w") as out:
        def record(kind, obj):
            obj = dict(obj, run=kind)
            out.write(json.dumps(obj) + "\n")
            out.flush()
            return obj

        for arch in a.archs.split(","):
            reference = [sys.executable, a.torch_reference, "--model", arch, "--batch", str(a.batch_size),
                         "--reps", str(a.reps), "--threads", str(a.threads), "--generation", a.generation]
            torch_runs = [("PyTorch", record("torch", run_json(reference)))]
            if a.torch_best:
                torch_runs.append(("PyTorch best", record("torch best", run_json(
                    reference + ["--channels-last", "--autocast-bf16", "--train-autocast-bf16"]))))
            base = [a.part, "bench", "--arch", arch, "--batch-size", str(a.batch_size), "--reps", str(a.reps),
                    "--threads", str(a.threads), "--generation", a.generation, "--json"]
            runs = [("fp32", record("part fp32", run_json(base)))]
            if not a.no_bf16:
                try:
                    runs.append(("bf16", record("part bf16", run_json(base + ["--precision", "bf16"]))))
                    if a.train_bf16:
                        runs.append(("bf16 + bf16 training", record("part bf16 train-bf16", run_json(
                            base + ["--precision", "bf16", "--train-precision", "bf16"]))))
                except subprocess.CalledProcessError:
                    print(f"{arch}: no bf16 on this CPU", file=sys.stderr)
            if a.ablations:
                for name in OPTIMISATIONS:
                    runs.append((f"fp32 without {name}",
                                 record(f"part fp32 without {name}", run_json(base + ["--without", name]))))
            rows.append((arch, torch_runs, runs))

    fast = a.generation == "fgsm"
    attack = "FGSM" if fast else "PGD-10"
    attack_key = "fgsm_s_per_batch" if fast else "pgd10_s_per_batch"
    images_key = "fast_at_images_per_s" if fast else "at_images_per_s"
    print(f"\nbatch {a.batch_size}, {a.threads} threads; ratio = PyTorch seconds / project seconds\n")
    print(f"| model | run | {attack} s | train step s | {'fast ' if fast else ''}AT images/s | ratio vs PyTorch "
          f"| ratio vs PyTorch at its best | {attack} % of peak | train step % of its limit | PART vs AT "
          f"| Grad-CAM batched ms/image | peak MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for arch, torch_runs, runs in rows:
        base_torch = torch_runs[0][1]
        best_torch = torch_runs[-1][1]
        for label, t in torch_runs:
            cam = f"{1000 * t['cam_batched_s_per_image']:.2f}" if "cam_batched_s_per_image" in t else ""
            print(f"| {arch} | {label} | {t[attack_key]:.3f} | {t['train_step_s_per_batch']:.3f} "
                  f"| {t[images_key]:.1f} | {t[images_key] / base_torch[images_key]:.2f} "
                  f"| {t[images_key] / best_torch[images_key]:.2f} | | | | {cam} | {t['peak_rss_mb']:.0f} |")
        for label, r in runs:
            extra = r["part_step_s_per_batch"] / r["at_step_s_per_batch"] - 1
            print(f"| {arch} | {label} | {r[attack_key]:.3f} | {r['train_step_s_per_batch']:.3f} "
                  f"| {r[images_key]:.1f} | {r[images_key] / base_torch[images_key]:.2f} "
                  f"| {r[images_key] / best_torch[images_key]:.2f} | {100 * r['pgd10_fraction_of_peak']:.0f}% "
                  f"of {r['peak_gflops']:.0f} GFLOP/s "
                  f"| {100 * r['train_step_fraction_of_limit']:.0f}% of {r['train_step_limit_gflops']:.0f} GFLOP/s "
                  f"| {100 * extra:+.1f}% "
                  f"| {1000 * r['cam_batched_s_per_image']:.2f} | {r['peak_rss_mb']:.0f} |")

if __name__ == "__main__":
    main()
