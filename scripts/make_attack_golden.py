#!/usr/bin/env python3
"""Write the golden fixtures of the attack tests (Tests/Fixtures/attacks_*.safetensors).

Usage (from the project root, with the venv next to it):
    VENV/bin/python scripts/make_attack_golden.py [--out Tests/Fixtures]

attacks_margins.safetensors -- the attack losses and their gradients by autograd
  logits [6, 10], labels, targets (never the label; int64)
  cw.values, cw.grad          max_{j != y} z_j - z_y
  dlr.values, dlr.grad        -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)
  dlrt.values, dlrt.grad      -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)
  small.logits [5, 4], small.labels, small.targets, small.dlrt.values, small.dlrt.grad
                              (targeted DLR at its smallest class count)
  Gradients are of the sum of the per-example values (rows are independent).

attacks_apgd_step.safetensors -- two APGD steps without random start (NCHW)
  SmallCNN(10 classes, 1 channel, 16x16) with the formula parameters of make_golden.py,
  input = torch.rand(4, 1, 16, 16) and labels = torch.randint(0, 10, (4,)) after
  torch.manual_seed(3); map: 0 where u < 0.2, else 0.1 u (u = torch.rand, same seed, after
  the labels). For loss in (ce, dlr):
      g0 = grad of sum loss at x0 = input
      x1 = P(x0 + 2 map sign(g0))                        (first step, momentum weight 1)
      g1 = grad at x1
      z  = P(x1 + 2 map sign(g1));  x2 = P(x1 + 0.75 (z - x1) + 0.25 (x1 - x0))
  with P the projection onto [x0 - map, x0 + map] and [0, 1]. Keys <loss>.loss0 / loss1
  (per example), <loss>.x1, <loss>.x2, plus input, labels, map.

attacks_fab_projection.safetensors -- FAB's L-inf projection onto a hyperplane in [0, 1]
  points t1, t0 [6, 40] in [0, 1], normals w [6, 40], offsets b [6]; d1, d0 = the reference's
  projection_linf (torchattacks 3.5.1, FAB) of t1 and t0 onto {x : w . x = b} within [0, 1].

attacks_l2.safetensors -- AutoAttack's L2 steps
  apgd: two L2 APGD steps without random start, model, input, labels as attacks_apgd_step
      (keys apgd.input, apgd.labels), radius r = apgd.radius = 0.5, step 2 r:
      x1 = P(x0 + 2 r g0 / (||g0|| + 1e-12)),  z = P(x1 + 2 r g1 / (||g1|| + 1e-12)),
      x2 = P(x1 + 0.75 (z - x1) + 0.25 (x1 - x0)),
      P(v) = clamp(x0 + (v - x0) min(r, ||v - x0||) / (||v - x0|| + 1e-12), 0, 1);
      keys apgd.<ce|dlr>.x1, apgd.<ce|dlr>.x2.
  fab: t1, t0, w, b of attacks_fab_projection and fab.d1, fab.d0 = torchattacks' projection_l2.
  square: square.eta<s> for s in 1, 2, 3, 5, 7, 25: the pattern (torchattacks' eta_rectangles,
      stacked and normalised, untransposed); one L2 proposal on 3 rows of [2, 12, 12] (NCHW):
      square.origin, square.best, square.radius, square.side (5), square.windows [3, 4]
      (top, left, top2, left2), square.signs [3, 2], square.transposed [3], square.candidate.
"""
import argparse
import datetime
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_golden import set_formula_parameters  # noqa: E402
from torch_models import SmallCNN  # noqa: E402


def cw_margin(z, y):
    other = z.clone()
    other[torch.arange(len(y)), y] = -float("inf")
    return other.max(1)[0] - z[torch.arange(len(y)), y]


def dlr(z, y):
    s, _ = z.sort(1)
    u = torch.arange(len(y))
    other = z.clone()
    other[u, y] = -float("inf")
    return -(z[u, y] - other.max(1)[0]) / (s[:, -1] - s[:, -3] + 1e-12)


def dlr_targeted(z, y, t):
    s, _ = z.sort(1)
    u = torch.arange(len(y))
    return -(z[u, y] - z[u, t]) / (s[:, -1] - 0.5 * (s[:, -3] + s[:, -4]) + 1e-12)


def values_and_grad(fn, logits, *args):
    z = logits.clone().requires_grad_(True)
    v = fn(z, *args)
    (g,) = torch.autograd.grad(v.sum(), z)
    return v.detach().clone(), g.clone()


def other_targets(labels, k, gen):
    return torch.tensor([(int(y) + 1 + int(torch.randint(0, k - 1, (1,), generator=gen))) % k for y in labels])


def margins():
    gen = torch.Generator().manual_seed(1)
    out = {}
    logits = torch.randn(6, 10, generator=gen) * 3
    labels = torch.randint(0, 10, (6,), generator=gen)
    labels[0] = logits[0].argmax()  # one row whose label is the top class
    targets = other_targets(labels, 10, gen)
    out["logits"], out["labels"], out["targets"] = logits, labels, targets
    out["cw.values"], out["cw.grad"] = values_and_grad(cw_margin, logits, labels)
    out["dlr.values"], out["dlr.grad"] = values_and_grad(dlr, logits, labels)
    out["dlrt.values"], out["dlrt.grad"] = values_and_grad(dlr_targeted, logits, labels, targets)
    small = torch.randn(5, 4, generator=gen) * 2
    small_labels = torch.randint(0, 4, (5,), generator=gen)
    small_targets = other_targets(small_labels, 4, gen)
    out["small.logits"], out["small.labels"], out["small.targets"] = small, small_labels, small_targets
    out["small.dlrt.values"], out["small.dlrt.grad"] = values_and_grad(dlr_targeted, small, small_labels, small_targets)
    # No two logits of a row within 1e-3 of each other: a tie would make the sort's gradient ambiguous.
    for z in (logits, small):
        s, _ = z.sort(1)
        assert (s[:, 1:] - s[:, :-1]).min() > 1e-3
    return out


def apgd_steps():
    model = SmallCNN(10, in_channels=1, image_size=16)
    set_formula_parameters(model)
    model.eval()
    torch.manual_seed(3)
    x0 = torch.rand(4, 1, 16, 16)
    labels = torch.randint(0, 10, (4,))
    u = torch.rand(4, 1, 16, 16)
    emap = torch.where(u < 0.2, torch.zeros_like(u), 0.1 * u)
    lo, hi = (x0 - emap).clamp(0, 1), (x0 + emap).clamp(0, 1)

    def project(v):
        return torch.min(torch.max(v, lo), hi)

    def loss_grad(x, loss):
        xr = x.clone().requires_grad_(True)
        z = model(xr)
        v = F.cross_entropy(z, labels, reduction="none") if loss == "ce" else dlr(z, labels)
        (g,) = torch.autograd.grad(v.sum(), xr)
        return v.detach(), g

    out = {"input": x0, "labels": labels, "map": emap}
    for loss in ("ce", "dlr"):
        v0, g0 = loss_grad(x0, loss)
        x1 = project(x0 + 2 * emap * g0.sign())
        v1, g1 = loss_grad(x1, loss)
        z = project(x1 + 2 * emap * g1.sign())
        x2 = project(x1 + 0.75 * (z - x1) + 0.25 * (x1 - x0))
        out[f"{loss}.loss0"], out[f"{loss}.loss1"] = v0, v1
        out[f"{loss}.x1"], out[f"{loss}.x2"] = x1, x2
        tiny = (g0.abs() < 1e-7).sum().item() + (g1.abs() < 1e-7).sum().item()
        print(f"apgd {loss}: losses {v0.tolist()} -> {v1.tolist()}; gradient entries below 1e-7: {tiny}")
    return out


def fab_projection():
    from torchattacks.attacks.fab import projection_linf

    gen = torch.Generator().manual_seed(4)
    n, d = 6, 40
    t1 = torch.rand(n, d, generator=gen)
    t0 = torch.rand(n, d, generator=gen)
    w = torch.randn(n, d, generator=gen)
    w[0, :5] = 0  # entries that cannot move the point
    # Hyperplanes through a random point of the box: reachable from both points.
    b = (w * torch.rand(n, d, generator=gen)).sum(1)
    b[1] = (w[1] * t1[1]).sum()  # t1 of row 1 lies on its hyperplane
    b[2] = w[2].abs().sum() * 2  # unreachable inside the box
    d1 = projection_linf(t1.clone(), w.clone(), b.clone())
    d0 = projection_linf(t0.clone(), w.clone(), b.clone())
    return {"t1": t1, "t0": t0, "w": w, "b": b, "d1": d1, "d0": d0}


def l2_norms(v):
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


def apgd_l2_steps(out):
    model = SmallCNN(10, in_channels=1, image_size=16)
    set_formula_parameters(model)
    model.eval()
    torch.manual_seed(3)
    x0 = torch.rand(4, 1, 16, 16)
    labels = torch.randint(0, 10, (4,))
    r = 0.5

    def project(v):
        d = v - x0
        n = l2_norms(d)
        return (x0 + d / (n + 1e-12) * torch.clamp(n, max=r)).clamp(0, 1)

    def grad(x, loss):
        xr = x.clone().requires_grad_(True)
        z = model(xr)
        v = F.cross_entropy(z, labels, reduction="none") if loss == "ce" else dlr(z, labels)
        (g,) = torch.autograd.grad(v.sum(), xr)
        return g

    out["apgd.input"], out["apgd.labels"], out["apgd.radius"] = x0, labels, torch.tensor([r])
    for loss in ("ce", "dlr"):
        g0 = grad(x0, loss)
        x1 = project(x0 + 2 * r * g0 / (l2_norms(g0) + 1e-12))
        g1 = grad(x1, loss)
        z = project(x1 + 2 * r * g1 / (l2_norms(g1) + 1e-12))
        x2 = project(x1 + 0.75 * (z - x1) + 0.25 * (x1 - x0))
        out[f"apgd.{loss}.x1"], out[f"apgd.{loss}.x2"] = x1, x2
        print(f"apgd l2 {loss}: ||x1 - x0|| {l2_norms(x1 - x0).flatten().tolist()}")


def fab_l2_projection(out):
    from torchattacks.attacks.fab import projection_l2

    linf = fab_projection()
    t1, t0, w, b = linf["t1"], linf["t0"], linf["w"], linf["b"]
    out["fab.t1"], out["fab.t0"], out["fab.w"], out["fab.b"] = t1, t0, w, b
    out["fab.d1"] = projection_l2(t1.clone(), w.clone(), b.clone())
    out["fab.d0"] = projection_l2(t0.clone(), w.clone(), b.clone())


def square_pattern(sq, s):
    top = sq.eta_rectangles(s // 2, s)
    bottom = -sq.eta_rectangles(s - s // 2, s)
    eta = torch.cat((top, bottom), 0)
    return eta / (eta ** 2).sum().sqrt()


def square_l2(out):
    import torchattacks

    sq = torchattacks.Square(torch.nn.Linear(1, 1), norm="L2", eps=1.0)
    for s in (1, 2, 3, 5, 7, 25):
        out[f"square.eta{s}"] = square_pattern(sq, s)
    gen = torch.Generator().manual_seed(6)
    n, c, h, w, s, r = 3, 2, 12, 12, 5, 1.5
    origin = torch.rand(n, c, h, w, generator=gen)
    noise = torch.randn(n, c, h, w, generator=gen)
    best = (origin + noise / l2_norms(noise) * r).clamp(0, 1)
    best[2] = (origin[2] + noise[2] / l2_norms(noise)[2] * 0.4 * r).clamp(0, 1)  # well inside the ball
    windows = torch.tensor([[0, 0, 7, 7], [3, 4, 5, 6], [2, 2, 2, 2]])  # apart, overlapping, the same
    signs = torch.tensor([[1.0, -1.0], [-1.0, -1.0], [1.0, 1.0]])
    transposed = torch.tensor([0, 1, 0])
    eta = square_pattern(sq, s)
    candidate = torch.empty_like(origin)
    for b in range(n):
        top, left, top2, left2 = windows[b].tolist()
        delta = best[b] - origin[b]
        total = delta.norm()
        mask = torch.zeros(h, w, dtype=torch.bool)
        mask[top:top + s, left:left + s] = True
        mask[top2:top2 + s, left2:left2 + s] = True
        windows_norm = (delta[:, mask] ** 2).sum().sqrt()
        first = delta[:, top:top + s, left:left + s]
        pattern = eta.t() if transposed[b] else eta
        fresh = pattern.unsqueeze(0) * signs[b].view(c, 1, 1) + first / (first.flatten(1).norm(dim=1).view(c, 1, 1) + 1e-12)
        target = (torch.clamp(torch.tensor(r * r) - total ** 2, min=0) / c + windows_norm ** 2).sqrt()
        fresh = fresh / (fresh.flatten(1).norm(dim=1).view(c, 1, 1) + 1e-12) * target
        delta = delta.clone()
        delta[:, top2:top2 + s, left2:left2 + s] = 0
        delta[:, top:top + s, left:left + s] = fresh
        candidate[b] = (origin[b] + delta / (delta.norm() + 1e-12) * r).clamp(0, 1)
    out["square.origin"], out["square.best"], out["square.candidate"] = origin, best, candidate
    out["square.radius"], out["square.side"] = torch.tensor([r]), torch.tensor([s])
    out["square.windows"], out["square.signs"], out["square.transposed"] = windows, signs, transposed


def l2_steps():
    out = {}
    apgd_l2_steps(out)
    fab_l2_projection(out)
    square_l2(out)
    return out


def write(path, tensors, what):
    meta = {"torch": torch.__version__, "written_by": "scripts/make_attack_golden.py", "what": what,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    tensors = {k: (v.to(torch.int64) if not v.is_floating_point() else v.float()).contiguous() for k, v in tensors.items()}
    save_file(tensors, path, metadata=meta)
    os.chmod(path, 0o644)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "..", "Tests", "Fixtures"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    write(os.path.join(args.out, "attacks_margins.safetensors"), margins(), "attack losses and gradients")
    write(os.path.join(args.out, "attacks_apgd_step.safetensors"), apgd_steps(), "two APGD steps")
    write(os.path.join(args.out, "attacks_fab_projection.safetensors"), fab_projection(), "FAB L-inf projection")
    write(os.path.join(args.out, "attacks_l2.safetensors"), l2_steps(), "AutoAttack's L2 steps")


if __name__ == "__main__":
    main()
