#!/usr/bin/env python3
"""Does `part eval` give the same figures on an ONNX export as on the checkpoint it came from?

It loads a Fashion-MNIST SmallCNN checkpoint written by `part train` (safetensors) into
torch_models.py's SmallCNN, exports it with `torch.onnx.export` in evaluation mode (opset 17,
dynamic batch), runs `part eval` on both files with the same points and attacks (by default
`--attacks natural,pgd20,aa` on the first 1,000 test images, eps 0.1, alpha 0.025), and prints
each file's clean and robust accuracy after every stage, the difference in examples, and the
examples whose final outcome differs (from the per-example results files).

Usage (from the project root, after `swift build -c release --product part`):
    VENV/bin/python scripts/onnx_eval_parity.py --checkpoint runs/part-fashion-mnist/last.safetensors
    VENV/bin/python scripts/onnx_eval_parity.py --checkpoint C --limit 200 --attacks natural,pgd20

The export and the results files go to --out (default: a new temporary folder); nothing else is
written. Run again with the same --out, it continues where it stopped. Exits 1 when a stage differs by more than --tolerance of the points (default 1/200).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_eval import load_smallcnn  # noqa: E402


def export(checkpoint, onnx_path):
    model = load_smallcnn(checkpoint)
    torch.onnx.export(model, torch.rand(1, 1, 28, 28), onnx_path, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)


def part_eval(part, model, args, results):
    command = [part, "eval", model, "--limit", str(args.limit), "--attacks", args.attacks,
               "--eps", args.eps, "--alpha", args.alpha, "--save-results", results, "--json", "--quiet"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.data:
        command += ["--data", args.data]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"part eval {model} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def outcomes(path, stage):
    """index -> robust after the last stage, from a results file's example lines."""
    final = {}
    for line in open(path):
        record = json.loads(line)
        if "index" in record and stage in record:
            final[record["index"]] = record[stage]
    return final


def main(argv=None):
    p = argparse.ArgumentParser(description="part eval on a SmallCNN checkpoint and on its ONNX export")
    p.add_argument("--checkpoint", required=True, help="a SmallCNN safetensors checkpoint of part train")
    p.add_argument("--part", default=os.path.join(HERE, "..", ".build", "release", "part"))
    p.add_argument("--data", default="", help="the Fashion-MNIST folder (default: part's default)")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--attacks", default="natural,pgd20,aa")
    p.add_argument("--eps", default="0.1")
    p.add_argument("--alpha", default="0.025")
    p.add_argument("--threads", type=int, default=0, help="0 = part's default")
    p.add_argument("--tolerance", type=float, default=1 / 200, help="largest allowed difference, as a share")
    p.add_argument("--out", default="", help="folder for the export and the results files")
    args = p.parse_args(argv)
    if args.limit < 1:
        raise SystemExit("--limit must be at least 1")
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"{args.checkpoint}: no such file")
    out = args.out or tempfile.mkdtemp(prefix="onnx-parity-")
    os.makedirs(out, exist_ok=True)
    onnx_path = os.path.join(out, "model.onnx")
    if os.path.exists(onnx_path):   # an earlier run's: part eval continues from its results files
        print(f"continuing in {out} (its model.onnx is kept)", file=sys.stderr)
    else:
        export(args.checkpoint, onnx_path)
    rows, finals = [], []
    for name, path in [("safetensors", args.checkpoint), ("onnx", onnx_path)]:
        results = os.path.join(out, f"{name}.jsonl")
        summary = part_eval(args.part, path, args, results)
        rows.append((name, summary))
        finals.append(outcomes(results, summary["attacks"][-1]["name"]))

    count = rows[0][1]["count"]
    stages = [s["name"] for s in rows[0][1]["attacks"]]
    print(f"{count} points; {args.attacks}; eps {args.eps}, alpha {args.alpha}")
    print("| file | clean | " + " | ".join(stages) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in stages) + " |")
    for name, summary in rows:
        robust = {s["name"]: s["robust"] for s in summary["attacks"]}
        print(f"| {name} | {round(summary['cleanAccuracy'] * count)} | " + " | ".join(str(robust[s]) for s in stages) + " |")
    worst = abs(round(rows[0][1]["cleanAccuracy"] * count) - round(rows[1][1]["cleanAccuracy"] * count))
    for a, b in zip(rows[0][1]["attacks"], rows[1][1]["attacks"]):
        worst = max(worst, abs(a["robust"] - b["robust"]))
    differing = sorted(i for i in finals[0] if finals[1].get(i) != finals[0][i])
    print(f"largest difference: {worst} of {count} points; final outcome differs on {len(differing)} points"
          + (f": {differing[:20]}" if differing else ""))
    print(f"export and results: {out}")
    return 0 if worst <= args.tolerance * count else 1


if __name__ == "__main__":
    sys.exit(main())
