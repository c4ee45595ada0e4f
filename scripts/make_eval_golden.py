#!/usr/bin/env python3
"""Write Tests/Fixtures/eval_golden.safetensors: attack steps of torchattacks (and MMA's target
choice and steps, written here from the PART code's formulas) that the Swift attack tests compare
against.

The model is the PyTorch-initialised SmallCNN of Tests/Fixtures/smallcnn_torch_init.safetensors
(written by make_golden.py); the inputs are torch.rand with seed 3. No random starts, so every
value is deterministic:
  - pgd1:   torchattacks.PGD(eps 0.1, alpha 0.025, steps 1, random_start False)
  - fgsm:   torchattacks.FGSM(eps 0.1)
  - pgdl2:  torchattacks.PGDL2(eps 1.0, alpha 0.2, steps 1, random_start False)
  - mma_targets: per row the 3 highest non-true classes of the clean logits, best first
  - mma:    MMA with 5 steps of 0.025, eps 0.1, no random start, hinge margin 50; the kept
            candidate is the one with the largest z_t - z_y (the first target on ties)

Usage: VENV/bin/python scripts/make_eval_golden.py
"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_models import SmallCNN  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "Tests", "Fixtures")
EPS, ALPHA = 0.1, 0.025


def mma(model, x, y, eps, alpha, steps, k, confidence=50.0):
    """MMA without random start: PGD on -max(z_y - z_t + c, 0) towards each of the k best wrong
    classes, keeping per row the candidate with the largest final z_t - z_y."""
    with torch.no_grad():
        logits = model(x)
    masked = logits.clone()
    masked[torch.arange(len(y)), y] = -float("inf")
    # Best first; a stable sort on the negated logits keeps the lower class first on ties.
    targets = torch.sort(-masked, dim=1, stable=True).indices[:, :k]
    best, best_margin = None, None
    for i in range(k):
        t = targets[:, i]
        xa = x.clone()
        for _ in range(steps):
            xa.requires_grad_(True)
            z = model(xa)
            zy, zt = z.gather(1, y[:, None])[:, 0], z.gather(1, t[:, None])[:, 0]
            loss = (-torch.clamp(zy - zt + confidence, min=0)).sum()
            (g,) = torch.autograd.grad(loss, xa)
            xa = xa.detach() + alpha * g.sign()
            xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)
        with torch.no_grad():
            z = model(xa)
            margin = z.gather(1, t[:, None])[:, 0] - z.gather(1, y[:, None])[:, 0]
        if best is None:
            best, best_margin = xa.clone(), margin
        else:
            better = margin > best_margin
            best[better] = xa[better]
            best_margin = torch.where(better, margin, best_margin)
    return targets, best


def main():
    import torchattacks

    torch.set_num_threads(1)
    model = SmallCNN(10, in_channels=1, image_size=28)
    model.load_state_dict(load_file(os.path.join(FIXTURES, "smallcnn_torch_init.safetensors")))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(3)
    x = torch.rand(4, 1, 28, 28)
    y = torch.tensor([3, 0, 7, 9])
    with torch.no_grad():
        logits = model(x)
    pgd1 = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=1, random_start=False)(x, y)
    fgsm = torchattacks.FGSM(model, eps=EPS)(x, y)
    pgdl2 = torchattacks.PGDL2(model, eps=1.0, alpha=0.2, steps=1, random_start=False)(x, y)
    targets, mma_adv = mma(model, x, y, EPS, ALPHA, 5, 3)
    # Gradient sign entries within rounding of zero are where two implementations may differ.
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    out = {
        "input": x, "labels": y.to(torch.int32), "logits": logits, "pgd1": pgd1, "fgsm": fgsm, "pgdl2": pgdl2,
        "mma_targets": targets.to(torch.int32), "mma": mma_adv, "ce_gradient": g,
    }
    path = os.path.join(FIXTURES, "eval_golden.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path, metadata={
        "weights": "smallcnn_torch_init.safetensors", "input_seed": "3", "eps": str(EPS), "alpha": str(ALPHA),
        "torch": torch.__version__, "torchattacks": torchattacks.__version__, "layout": "NCHW"})
    os.chmod(path, 0o644)
    print(f"{os.path.relpath(path)}: {os.path.getsize(path)} bytes; pgd1 moved {(pgd1 != x).float().mean():.3f} of "
          f"entries; mma targets {targets.tolist()}; min |grad| {g.abs().min():.3g}")


if __name__ == "__main__":
    main()
