#!/usr/bin/env python3
"""Evaluate a SmallCNN safetensors checkpoint on Fashion-MNIST with PyTorch: clean and PGD accuracy.

Usage (from the project root, with the venv next to it):
    VENV/bin/python scripts/torch_eval.py --checkpoint model.safetensors --limit 10000 --json

The checkpoint is a state_dict with the names of scripts/torch_models.py (written by
torch_train.py or by the Swift project); a leading `module.` (DataParallel) is stripped,
header metadata is ignored. PGD: L-inf, random start, CE loss, model in eval mode.
"""
import argparse
import json
import os
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import SmallCNN  # noqa: E402
from torch_train import DEFAULT_DATA, evaluate, load_split  # noqa: E402


def load_smallcnn(path):
    state = load_file(path)
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    model = SmallCNN(10, in_channels=1, image_size=28)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise SystemExit(f"{path}: not a SmallCNN state_dict (missing {missing})")
    if unexpected:
        print(f"warning: {path}: ignoring {len(unexpected)} extra tensors ({', '.join(unexpected[:5])}"
              f"{', ...' if len(unexpected) > 5 else ''})", file=sys.stderr)
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise SystemExit(f"{path}: {k} has shape {list(state[k].shape)}, expected {list(v.shape)}")
    model.load_state_dict({k: state[k].to(v.dtype) for k, v in expected.items()}, strict=True)
    return model.eval()


def main(argv=None):
    p = argparse.ArgumentParser(description="clean and PGD accuracy of a SmallCNN safetensors checkpoint")
    p.add_argument("--checkpoint", type=str, required=True)
    p.add_argument("--data", type=str, default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=10000, help="first K test images (0 = all)")
    p.add_argument("--pgd-steps", type=int, default=20)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=0.025)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--threads", type=int, default=0, help="0 = torch default")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    for ok, msg in [(a.limit >= 0, "--limit must be >= 0"), (a.pgd_steps >= 0, "--pgd-steps must be >= 0"),
                    (a.eps >= 0, "--eps must be >= 0"), (a.alpha >= 0, "--alpha must be >= 0"),
                    (a.batch >= 1, "--batch must be >= 1"), (a.threads >= 0, "--threads must be >= 0")]:
        if not ok:
            p.error(msg)
    if a.threads:
        torch.set_num_threads(a.threads)

    model = load_smallcnn(a.checkpoint)
    x, y = load_split(a.data, False, a.limit)
    t0 = time.perf_counter()
    clean, robust = evaluate(model, x, y, a.eps, a.alpha, a.pgd_steps, a.seed, a.batch)
    rec = {"checkpoint": a.checkpoint, "n": int(x.shape[0]), "clean_acc": clean, "pgd_acc": robust,
           "pgd_steps": a.pgd_steps, "eps": a.eps, "alpha": a.alpha, "seed": a.seed,
           "seconds": time.perf_counter() - t0, "torch": torch.__version__}
    if a.json:
        print(json.dumps(rec))
    else:
        print(f"{a.checkpoint}: clean {100 * clean:.2f}%  pgd{a.pgd_steps} {100 * robust:.2f}% "
              f"(eps {a.eps}, alpha {a.alpha}) on {rec['n']} test images ({rec['seconds']:.1f}s)")


if __name__ == "__main__":
    main()
