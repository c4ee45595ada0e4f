"""Side-by-side speed table: `part bench` against the same workloads in PyTorch, one after the other.

Run from the project root, on an otherwise idle machine:
  swift build -c release --product part
  ../torch-venv/bin/python scripts/bench_compare.py --torch-reference ../shared/bench/torch_reference.py

For every model it runs torch_reference.py, `part bench` in fp32 and (where the CPU has it) bf16,
and, with --ablations, `part bench --without X` for each optimisation; every run is a separate
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
    a = p.parse_args()

    rows = []
    with open(a.out, "w") as out:
        def record(kind, obj):
            obj = dict(obj, run=kind)
            out.write(json.dumps(obj) + "\n")
            out.flush()
            return obj

        for arch in a.archs.split(","):
            torch = record("torch", run_json([sys.executable, a.torch_reference, "--model", arch,
                                              "--batch", str(a.batch_size), "--reps", str(a.reps),
                                              "--threads", str(a.threads)]))
            base = [a.part, "bench", "--arch", arch, "--batch-size", str(a.batch_size),
                    "--reps", str(a.reps), "--threads", str(a.threads), "--json"]
            runs = [("fp32", record("part fp32", run_json(base)))]
            if not a.no_bf16:
                try:
                    runs.append(("bf16", record("part bf16", run_json(base + ["--precision", "bf16"]))))
                except subprocess.CalledProcessError:
                    print(f"{arch}: no bf16 on this CPU", file=sys.stderr)
            if a.ablations:
                for name in OPTIMISATIONS:
                    runs.append((f"fp32 without {name}",
                                 record(f"part fp32 without {name}", run_json(base + ["--without", name]))))
            rows.append((arch, torch, runs))

    print(f"\nbatch {a.batch_size}, {a.threads} threads; ratio = PyTorch seconds / project seconds\n")
    print("| model | run | PGD-10 s | train step s | AT images/s | ratio vs PyTorch | PGD-10 % of peak "
          "| PART vs AT | Grad-CAM batched ms/image | peak MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for arch, torch, runs in rows:
        print(f"| {arch} | PyTorch | {torch['pgd10_s_per_batch']:.3f} | {torch['train_step_s_per_batch']:.3f} "
              f"| {torch['at_images_per_s']:.1f} | 1.00 | | | {1000 * torch['cam_batched_s_per_image']:.2f} "
              f"| {torch['peak_rss_mb']:.0f} |")
        for label, r in runs:
            ratio = r["at_images_per_s"] / torch["at_images_per_s"]
            extra = r["part_step_s_per_batch"] / r["at_step_s_per_batch"] - 1
            print(f"| {arch} | {label} | {r['pgd10_s_per_batch']:.3f} | {r['train_step_s_per_batch']:.3f} "
                  f"| {r['at_images_per_s']:.1f} | {ratio:.2f} | {100 * r['pgd10_fraction_of_peak']:.0f}% "
                  f"of {r['peak_gflops']:.0f} GFLOP/s | {100 * extra:+.1f}% "
                  f"| {1000 * r['cam_batched_s_per_image']:.2f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
