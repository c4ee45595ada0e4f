#!/usr/bin/env python3
"""AutoAttack's four attacks on a SmallCNN checkpoint with torchattacks: the reference figures
that part's APGD-CE, APGD-T, FAB-T and Square are compared with.

Usage (from the project root, with the venv next to it):
    VENV/bin/python scripts/compare_attacks.py --checkpoint RUN/last.safetensors \
        --limit 200 --eps 0.1 [--attacks apgd-ce,apgd-t,fab-t,square,aa] [--part-results FILE]

Each attack runs with AutoAttack's standard settings (Croce & Hein 2020), which are not all
torchattacks' defaults: APGD and APGD-T 100 iterations (torchattacks' default is 10, also inside
its AutoAttack class), rho 0.75, 1 restart, 9 targets; FAB multi-targeted, 100 iterations,
9 targets; Square 5000 queries, p_init 0.8, margin loss, the schedule not rescaled to the query
budget (AutoAttack's resc_schedule=False; torchattacks defaults to True). An attack name alone
runs on every correctly classified test point; "aa" runs the four in sequence, each on the points
still robust (AutoAttack standard). Prints robust accuracy, wall-clock seconds and process CPU
seconds (all threads; on a shared machine the fairer measure of work) per attack and per stage of
"aa"; --json prints one JSON object instead.

--part-results reads a JSON object {attack name: [1 if robust else 0 per test point]} written by a
run of part's attacks on the same points and reports, per attack, part's robust accuracy and the
points on which the two disagree.

--norm L2 runs the four attacks in the L2 ball of radius --eps (AutoAttack's L2 standard version;
FAB's and Square's L2 forms, APGD's L2 step); the stages are then named apgd-ce-l2 and so on.
--part PART runs `PART eval CHECKPOINT --attacks natural,aa:... (or aa-l2:eps=EPS) --json` on the
same points and prints, per stage and for the final worst case, the robust accuracy of
torchattacks beside part's with their difference, and whether every difference is within
--bar points (default 1), e.g.

    VENV/bin/python scripts/compare_attacks.py --checkpoint CKPT --limit 1000 --eps 1.5 --norm L2 \
        --attacks aa --part .build/release/part --threads 1
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_eval import load_smallcnn  # noqa: E402
from torch_train import DEFAULT_DATA, load_split  # noqa: E402

STAGES = ["apgd-ce", "apgd-t", "fab-t", "square"]


def make(name, model, eps, iterations, queries, seed, norm="Linf"):
    import torchattacks

    if name == "apgd-ce":
        return torchattacks.APGD(model, norm=norm, eps=eps, steps=iterations, n_restarts=1, seed=seed, loss="ce",
                                 rho=0.75)
    if name == "apgd-dlr":
        return torchattacks.APGD(model, norm=norm, eps=eps, steps=iterations, n_restarts=1, seed=seed, loss="dlr",
                                 rho=0.75)
    if name == "apgd-t":
        return torchattacks.APGDT(model, norm=norm, eps=eps, steps=iterations, n_restarts=1, seed=seed, rho=0.75,
                                  n_classes=10)
    if name == "fab-t":
        return torchattacks.FAB(model, norm=norm, eps=eps, steps=iterations, n_restarts=1, seed=seed,
                                multi_targeted=True, n_classes=10)
    if name == "square":
        return torchattacks.Square(model, norm=norm, eps=eps, n_queries=queries, n_restarts=1, p_init=0.8,
                                   loss="margin", resc_schedule=False, seed=seed)
    raise SystemExit(f"unknown attack {name!r} (known: {', '.join(STAGES + ['apgd-dlr', 'aa'])})")


def predict(model, x, batch):
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def attack_rows(attack, model, x, y, rows, batch, norm="Linf"):
    """Robust flags of `rows` after `attack`, in batches of `batch`; also checks the budget."""
    robust = torch.ones(len(rows), dtype=torch.bool)
    for i in range(0, len(rows), batch):
        idx = rows[i:i + batch]
        adv = attack(x[idx], y[idx])
        with torch.no_grad():
            robust[i:i + len(idx)] = model(adv).argmax(1) == y[idx]
        delta = (adv - x[idx]).flatten(1)
        worst = (delta.norm(dim=1) if norm == "L2" else delta.abs().max(1)[0]).max().item()
        if worst > attack.eps * (1 + 1e-5) + 1e-6:
            print(f"warning: {attack.__class__.__name__} left the budget by {worst - attack.eps:.2e}", file=sys.stderr)
    return robust


def main(argv=None):
    p = argparse.ArgumentParser(description="torchattacks' AutoAttack attacks on a SmallCNN checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=200, help="first N test images")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--attacks", default="apgd-ce,apgd-t,fab-t,square,aa")
    p.add_argument("--iterations", type=int, default=100, help="APGD, APGD-T and FAB iterations")
    p.add_argument("--queries", type=int, default=5000, help="Square's queries")
    p.add_argument("--batch", type=int, default=250, help="points per attack call (AutoAttack's default 250)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="0 = torch default")
    p.add_argument("--part-results", help="JSON {attack: [robust flag per point]} of part's run")
    p.add_argument("--norm", choices=["Linf", "L2"], default="Linf", help="threat model; --eps is the L2 radius with L2")
    p.add_argument("--part", help="part binary: also run its eval on the same points and compare with aa")
    p.add_argument("--bar", type=float, default=1.0, help="agreement bar in percentage points for --part")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    for ok, msg in [(a.limit >= 1, "--limit must be >= 1"), (a.eps >= 0, "--eps must be >= 0"),
                    (a.iterations >= 1, "--iterations must be >= 1"), (a.queries >= 1, "--queries must be >= 1"),
                    (a.batch >= 1, "--batch must be >= 1"), (a.threads >= 0, "--threads must be >= 0")]:
        if not ok:
            p.error(msg)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_smallcnn(a.checkpoint)
    x, y = load_split(a.data, False, a.limit)
    clean = predict(model, x, a.batch) == y
    out = {"checkpoint": a.checkpoint, "n": len(y), "eps": a.eps, "iterations": a.iterations, "queries": a.queries,
           "clean": clean.float().mean().item(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "attacks": {}}
    log = (lambda *s: print(*s, file=sys.stderr)) if a.json else print
    log(f"clean accuracy {100 * out['clean']:.2f}% on {len(y)} points, eps {a.eps}")
    flags = {}
    for name in a.attacks.split(","):
        if name == "aa":
            robust = clean.clone()
            total, total_cpu, stages = 0.0, 0.0, {}
            for stage in STAGES:
                rows = robust.nonzero().flatten()
                if len(rows) == 0:
                    break
                t0, c0 = time.perf_counter(), time.process_time()
                r = attack_rows(make(stage, model, a.eps, a.iterations, a.queries, a.seed, a.norm), model, x, y, rows,
                                a.batch, a.norm)
                seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
                total += seconds
                total_cpu += cpu
                robust[rows[~r]] = False
                stages[stage] = {"robust": robust.float().mean().item(), "seconds": seconds, "cpu_seconds": cpu}
                log(f"aa: after {stage:8s} robust {100 * stages[stage]['robust']:.2f}%  {seconds:.1f} s  cpu {cpu:.1f} s")
            out["attacks"]["aa"] = {"robust": robust.float().mean().item(), "seconds": total, "cpu_seconds": total_cpu,
                                    "stages": stages}
            log(f"aa          robust {100 * robust.float().mean().item():.2f}%  {total:.1f} s  cpu {total_cpu:.1f} s")
        else:
            rows = clean.nonzero().flatten()
            t0, c0 = time.perf_counter(), time.process_time()
            r = attack_rows(make(name, model, a.eps, a.iterations, a.queries, a.seed, a.norm), model, x, y, rows,
                            a.batch, a.norm)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            robust = clean.clone()
            robust[rows[~r]] = False
            out["attacks"][name] = {"robust": robust.float().mean().item(), "seconds": seconds, "cpu_seconds": cpu}
            log(f"{name:11s} robust {100 * robust.float().mean().item():.2f}%  {seconds:.1f} s  cpu {cpu:.1f} s")
        flags[name] = robust
    if a.part_results:
        with open(a.part_results) as f:
            part = json.load(f)
        for name, mine in flags.items():
            if name not in part:
                continue
            theirs = torch.tensor(part[name], dtype=torch.bool)
            if len(theirs) != len(mine):
                raise SystemExit(f"{a.part_results}: {name} has {len(theirs)} flags for {len(mine)} points")
            differ = (theirs != mine).nonzero().flatten().tolist()
            out["attacks"][name]["part_robust"] = theirs.float().mean().item()
            out["attacks"][name]["disagree"] = differ
            log(f"{name:11s} part robust {100 * theirs.float().mean().item():.2f}%  torchattacks "
                f"{100 * mine.float().mean().item():.2f}%  points that differ: {len(differ)} {differ[:20]}")
    if a.part:
        if "aa" not in out["attacks"]:
            p.error("--part compares with aa: include aa in --attacks")
        out["part"] = compare_with_part(a, out["attacks"]["aa"], out["clean"], log)
    if a.json:
        print(json.dumps(out))


def run_part(a):
    """part eval on the same points with AutoAttack standard (L-inf or L2) at the same settings;
    returns its JSON output."""
    keys = f"steps={a.iterations}:queries={a.queries}"
    item = f"aa-l2:eps={a.eps}:{keys}" if a.norm == "L2" else f"aa:{keys}"
    command = [a.part, "eval", a.checkpoint, "--data", a.data, "--limit", str(a.limit), "--attacks", f"natural,{item}",
               "--seed", str(a.seed), "--json", "--quiet"]
    if a.norm == "Linf":
        command += ["--eps", str(a.eps)]  # the L2 radius is the item's eps
    if a.threads:
        command += ["--threads", str(a.threads)]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {done.returncode}: {done.stderr.strip()}")
    result = json.loads(done.stdout)
    result["wall_seconds"] = time.perf_counter() - t0
    result["command"] = " ".join(command)
    return result


def compare_with_part(a, aa, clean, log):
    """The table of torchattacks' and part's robust accuracy per stage and at the end."""
    part = run_part(a)
    suffix = "-l2" if a.norm == "L2" else ""
    part_stages = {s["name"]: s["accuracy"] for s in part["attacks"]}
    rows = [("natural", clean, part_stages.get("natural"))]
    rows += [(stage + suffix, aa["stages"][stage]["robust"], part_stages.get(stage + suffix))
             for stage in STAGES if stage in aa["stages"]]
    rows.append(("final", aa["robust"], part["robustAccuracy"]))
    log(f"part: {part['command']} ({part['wall_seconds']:.1f} s)")
    log(f"{'stage':14s} {'torchattacks':>12s} {'part':>8s} {'difference':>10s}")
    within = True
    table = []
    for name, theirs, mine in rows:
        if mine is None:
            log(f"{name:14s} {100 * theirs:11.2f}% {'-':>8s}")
            continue
        difference = 100 * (mine - theirs)
        within = within and abs(difference) <= a.bar
        table.append({"stage": name, "torchattacks": theirs, "part": mine, "difference_points": difference})
        log(f"{name:14s} {100 * theirs:11.2f}% {100 * mine:7.2f}% {difference:+9.2f}")
    log(f"agreement within {a.bar:g} point{'s' if a.bar != 1 else ''}: {'yes' if within else 'NO'}")
    return {"rows": table, "within_bar": within, "bar_points": a.bar, "seconds": part["wall_seconds"],
            "command": part["command"]}


if __name__ == "__main__":
    main()
