#!/usr/bin/env python3
"""Compare `part eval` with torchattacks on the same PyTorch-trained checkpoint and points.

It trains a Fashion-MNIST SmallCNN with plain adversarial training in PyTorch (or loads one),
saves it with safetensors under the names of torch_models.py, evaluates the first N test
points with torchattacks (natural accuracy; PGD-20, eps 0.1, alpha 0.025, random start;
AutoAttack standard with torchattacks' port of its attacks: APGD-CE, APGD-T, FAB-T and Square
built as scripts/compare_attacks.py builds them, with AutoAttack's standard settings (100
iterations, 5,000 queries; torchattacks' own AutoAttack class runs 10 iterations), each on the
points still robust, starting from those that PGD-20 left robust as `part eval --attacks
natural,pgd20,aa` does), times each, then runs `part eval` on the same checkpoint and points and
prints both rows, the time ratio and the points on which the final flags differ.

Usage (from the project root, after `swift build -c release`):
    VENV/bin/python scripts/compare_eval.py --limit 1000
    VENV/bin/python scripts/compare_eval.py --limit 200 --checkpoint model.safetensors
    VENV/bin/python scripts/compare_eval.py --limit 100 --iterations 10 --queries 500  # quick

The checkpoint is trained only when the --checkpoint file does not exist.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_models import SmallCNN  # noqa: E402
from torch_train import DEFAULT_DATA, load_split, pgd  # noqa: E402
from compare_attacks import STAGES, attack_rows, make  # noqa: E402


def train(args):
    """--natural-epochs of plain training on all 60,000 images (from PyTorch's initialisation the
    SmallCNN stays at chance for a few hundred steps), then plain AT (PGD-10 under a constant
    eps) on --train-limit images; returns the model in eval mode."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x_all, y_all = load_split(args.data, True, 0)
    model = SmallCNN(10, in_channels=1, image_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)
    epochs = args.natural_epochs + args.train_epochs
    for epoch in range(1, epochs + 1):
        adversarial = epoch > args.natural_epochs
        x, y = (x_all[:args.train_limit or len(x_all)], y_all[:args.train_limit or len(y_all)]) if adversarial \
            else (x_all, y_all)
        perm = torch.randperm(x.shape[0], generator=gen)
        t0, total = time.perf_counter(), 0.0
        for s in range(0, x.shape[0], 128):
            idx = perm[s:s + 128]
            xb, yb = x[idx], y[idx]
            model.eval()
            xa = pgd(model, xb, yb, torch.full_like(xb, args.eps), args.alpha, 10, gen) if adversarial else xb
            model.train()
            loss = F.cross_entropy(model(xa), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
        print(f"train epoch {epoch}/{epochs} ({'AT' if adversarial else 'natural'}): loss {total / x.shape[0]:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return model.eval()


def load(path):
    from safetensors.torch import load_file
    state = load_file(path)
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    model = SmallCNN(10, in_channels=1, image_size=28)
    model.load_state_dict(state, strict=True)
    return model.eval()


def accuracy(model, x, y, batch=500):
    with torch.no_grad():
        return sum((model(x[s:s + batch]).argmax(1) == y[s:s + batch]).sum().item()
                   for s in range(0, x.shape[0], batch)) / x.shape[0]


def robust(model, attack, x, y, batch):
    """Per-point robust flags under the attack, batch by batch, and the seconds it took."""
    t0 = time.perf_counter()
    flags = []
    for s in range(0, x.shape[0], batch):
        xa = attack(x[s:s + batch], y[s:s + batch])
        with torch.no_grad():
            flags.append(model(xa).argmax(1) == y[s:s + batch])
    return torch.cat(flags), time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="runs/compare-eval/smallcnn_at.safetensors",
                   help="safetensors state_dict (trained and written here when missing)")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=1000, help="the first N test points")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=0.025)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=256, help="batch size of both tools")
    p.add_argument("--natural-epochs", type=int, default=1, help="plain training epochs before AT")
    p.add_argument("--train-epochs", type=int, default=2, help="AT epochs")
    p.add_argument("--train-limit", type=int, default=20000, help="training images (0: all 60,000)")
    p.add_argument("--part", default=os.path.join(".build", "release", "part"), help="the part binary")
    p.add_argument("--iterations", type=int, default=100, help="APGD, APGD-T and FAB iterations of both tools")
    p.add_argument("--queries", type=int, default=5000, help="Square's queries of both tools")
    p.add_argument("--precisions", default="fp32", help="part eval runs, one per --precision (e.g. fp32,bf16)")
    p.add_argument("--part-results", help="also keep part eval's per-example results (--save-results) here "
                                          "(other precisions: FILE-bf16.jsonl)")
    p.add_argument("--skip-autoattack", action="store_true", help="torchattacks PGD-20 only (quick checks)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args()
    if a.natural_epochs < 0:
        p.error("--natural-epochs must be >= 0")
    if min(a.limit, a.batch, a.train_epochs, a.iterations, a.queries) < 1:
        p.error("--limit, --batch, --train-epochs, --iterations and --queries must be >= 1")
    if a.threads:
        torch.set_num_threads(a.threads)

    import torchattacks
    from safetensors.torch import save_file

    if os.path.exists(a.checkpoint):
        model = load(a.checkpoint)
        print(f"loaded {a.checkpoint}", file=sys.stderr)
    else:
        model = train(a)
        os.makedirs(os.path.dirname(os.path.abspath(a.checkpoint)), exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, a.checkpoint,
                  metadata={"written_by": "scripts/compare_eval.py", "epochs": str(a.train_epochs),
                            "natural_epochs": str(a.natural_epochs),
                            "train_limit": str(a.train_limit), "seed": str(a.seed)})
        print(f"saved {a.checkpoint}", file=sys.stderr)
    for q in model.parameters():
        q.requires_grad_(False)

    x, y = load_split(a.data, False, a.limit)
    torch.manual_seed(a.seed)
    rows = {}
    t0 = time.perf_counter()
    rows["natural"] = (accuracy(model, x, y), time.perf_counter() - t0)
    with torch.no_grad():
        clean = torch.cat([model(x[s:s + a.batch]).argmax(1) for s in range(0, len(y), a.batch)]) == y
    pgd20 = torchattacks.PGD(model, eps=a.eps, alpha=a.alpha, steps=20, random_start=True)
    pgd_flags, seconds = robust(model, pgd20, x, y, a.batch)
    pgd_flags &= clean
    rows["pgd20"] = (pgd_flags.float().mean().item(), seconds)
    torch_flags = None
    if not a.skip_autoattack:
        # As `part eval --attacks natural,pgd20,aa` composes them: AutoAttack's stages run on the
        # points still robust after PGD-20, and the figure is the worst case over all of them.
        torch_flags = pgd_flags.clone()
        t0, c0 = time.perf_counter(), time.process_time()
        for stage in STAGES:
            still = torch_flags.nonzero().flatten()
            if len(still) == 0:
                break
            s0 = time.perf_counter()
            r = attack_rows(make(stage, model, a.eps, a.iterations, a.queries, a.seed), model, x, y, still, a.batch)
            torch_flags[still[~r]] = False
            print(f"torchattacks: robust accuracy after {stage}: {100 * torch_flags.float().mean().item():.2f}% "
                  f"({time.perf_counter() - s0:.1f} s)", file=sys.stderr, flush=True)
        rows["aa"] = (torch_flags.float().mean().item(), time.perf_counter() - t0)
        print(f"torchattacks: AutoAttack {rows['aa'][1]:.1f} s, cpu {time.process_time() - c0:.1f} s",
              file=sys.stderr, flush=True)

    attacks = "natural,pgd20" if a.skip_autoattack else "natural,pgd20,aa"
    if not a.skip_autoattack and (a.iterations != 100 or a.queries != 5000):
        attacks += f":steps={a.iterations}:queries={a.queries}"
    parts = {}
    for precision in a.precisions.split(","):
        command = [a.part, "eval", a.checkpoint, "--data", a.data, "--limit", str(a.limit), "--eps", str(a.eps),
                   "--alpha", str(a.alpha), "--seed", str(a.seed), "--batch-size", str(a.batch),
                   "--attacks", attacks, "--precision", precision, "--json", "--quiet"]
        results_file = None
        if a.part_results:
            root, ext = os.path.splitext(a.part_results)
            results_file = a.part_results if precision == "fp32" else f"{root}-{precision}{ext or '.jsonl'}"
            for stale in (results_file, results_file + ".progress.json"):
                if os.path.exists(stale):
                    os.remove(stale)   # a fresh run, not the resume of an earlier one
            command += ["--save-results", results_file]
        t0 = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if run.returncode != 0:
            sys.exit(f"part eval --precision {precision} failed ({run.returncode}): {run.stderr.strip()}")
        parts[precision] = (json.loads(run.stdout), wall, results_file)

    print(f"SmallCNN on Fashion-MNIST test, first {a.limit} points, eps {a.eps}, PGD-20 alpha {a.alpha} "
          f"with random start, AutoAttack standard ({a.iterations} iterations, {a.queries} queries), "
          f"seed {a.seed}, batch {a.batch}; torch {torch.__version__} (fp32), torchattacks {torchattacks.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'tool':<28}{'natural':>10}{'PGD-20':>10}{'+ AutoAttack':>14}{'AA time':>10}{'ratio':>8}")
    aa_t = rows.get("aa")
    print(f"{'torchattacks':<28}{100 * rows['natural'][0]:>9.2f}%{100 * rows['pgd20'][0]:>9.2f}%"
          + (f"{100 * aa_t[0]:>13.2f}%{aa_t[1]:>9.1f}s{1:>8.2f}" if aa_t else f"{'-':>14}{'-':>10}{'-':>8}"))
    summary = {}
    for precision, (result, wall, results_file) in parts.items():
        stages = {s["name"]: s for s in result["attacks"]}
        aa_seconds = sum(s["seconds"] for n, s in stages.items() if n in STAGES)
        label = f"part eval ({precision})"
        ratio = aa_t[1] / aa_seconds if aa_t and aa_seconds > 0 else None
        print(f"{label:<28}{100 * stages['natural']['accuracy']:>9.2f}%"
              f"{100 * stages['pgd20']['robust'] / result['count']:>9.2f}%"
              + (f"{100 * result['robustAccuracy']:>13.2f}%{aa_seconds:>9.1f}s{ratio:>8.2f}" if ratio
                 else f"{'-':>14}{'-':>10}{'-':>8}"))
        summary[precision] = {"result": result, "wall_seconds": wall, "aa_seconds": aa_seconds}
        if results_file and torch_flags is not None:
            with open(results_file) as f:
                header = json.loads(f.readline())
                mine = {}
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        mine[r["index"]] = r[header["columns"][-1]]
            differ = [i for i in range(len(y)) if mine.get(i) != bool(torch_flags[i])]
            summary[precision]["differ"] = differ
            print(f"  {precision}: final flags that differ from torchattacks': {len(differ)} of {len(y)} points "
                  f"{differ[:20]}")
    print(f"torchattacks PGD-20 {rows['pgd20'][1]:.1f} s; ratio = torchattacks' AutoAttack seconds / part's "
          "(the four stages, re-verification included)")
    print(json.dumps({"torchattacks": {k: {"accuracy": v[0], "seconds": v[1]} for k, v in rows.items()},
                      "part": summary}))


if __name__ == "__main__":
    main()
