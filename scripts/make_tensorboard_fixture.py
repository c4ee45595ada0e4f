#!/usr/bin/env python3
"""TensorBoard event files: the fixture the Swift writer must reproduce, and a check of a run.

Usage (from the project root, with the venv next to it; `pip install tensorboard` into it):

    VENV/bin/python scripts/make_tensorboard_fixture.py [--out Tests/Fixtures]
    VENV/bin/python scripts/make_tensorboard_fixture.py --check-run runs/part-fashion-mnist

Fixture mode writes, through PyTorch's `torch.utils.tensorboard.SummaryWriter` (old-style
scalars: `Summary.Value.simple_value`, float32):
  tb_scalars.json    the inputs: the wall time of the file-version record, then
                     [tag, value, step, wall_time] per scalar (value "nan"/"inf"/"-inf" for
                     non-finite values), in the order they were added;
  tb_events.tfevents the event file SummaryWriter wrote for them (its name, which holds the
                     host name and the process id, is not kept).
The file-version record's wall time comes from `time.time()` inside SummaryWriter; it is
pinned here so the record is reproducible. Every scalar is given its wall time explicitly.

Check mode reads RUN/tb with TensorBoard's own reader
(`tensorboard.backend.event_processing.event_accumulator`), lists the scalar tags and their
points, and compares the per-epoch scalars with RUN/log.jsonl (float32 rounding). It exits 1
on any difference.
"""
import argparse
import glob
import json
import math
import os
import shutil
import sys
import tempfile
from unittest import mock

FILE_VERSION_WALL_TIME = 1764028800.125  # 2025-11-25 00:00:00.125 UTC

# Tags chosen to exercise the encoding: a tag longer than 127 bytes (two-byte length varint),
# non-ASCII text, zero (always written: simple_value sits in a oneof), step 0 (omitted, the
# proto3 default), a step above 2^31, negative and non-finite values, float32 rounding.
SCALARS = [
    ["epoch/loss", 2.0812, 1, 1764028900.5],
    ["epoch/loss", 1.0663, 2, 1764029000.25],
    ["epoch/clean_accuracy", 0.641, 1, 1764028900.5],
    ["epoch/clean_accuracy", 0.0, 0, 1764028800.0],
    ["batch/loss", 2.3025851249694824, 0, 1764028801.0],
    ["batch/loss", -1.5e-8, 3000000000, 1764028802.75],
    ["batch/loss", "nan", 7, 1764028803.0],
    ["batch/loss", "inf", 8, 1764028804.0],
    ["batch/loss", "-inf", 9, 1764028805.0],
    ["epoch/images_per_second", 608.123456789, 1, 1764028900.5],
    ["a/" + "long_tag_" * 16, 1e30, 5, 0.0],
    ["epoch/täg µ", 0.5, 2, 1764029000.25],
]


def number(v):
    return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(v, v) if isinstance(v, str) else v


def make_fixture(out):
    from torch.utils.tensorboard import SummaryWriter

    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with mock.patch("time.time", return_value=FILE_VERSION_WALL_TIME):
            writer = SummaryWriter(log_dir=tmp)
        for tag, value, step, wall in SCALARS:
            writer.add_scalar(tag, number(value), global_step=step, walltime=wall)
        writer.close()
        files = glob.glob(os.path.join(tmp, "events.out.tfevents.*"))
        if len(files) != 1:
            sys.exit(f"expected one event file, found {files}")
        shutil.copyfile(files[0], os.path.join(out, "tb_events.tfevents"))
    with open(os.path.join(out, "tb_scalars.json"), "w") as f:
        json.dump({"fileVersionWallTime": FILE_VERSION_WALL_TIME, "scalars": SCALARS}, f, indent=1,
                  ensure_ascii=False)
        f.write("\n")
    size = os.path.getsize(os.path.join(out, "tb_events.tfevents"))
    print(f"wrote {out}/tb_events.tfevents ({size} bytes, {len(SCALARS) + 1} records) and {out}/tb_scalars.json")


# log.jsonl field -> TensorBoard tag of the per-epoch scalars `part train --tensorboard` writes.
EPOCH_TAGS = {
    "loss": "epoch/loss",
    "trainAccuracy": "epoch/train_adversarial_accuracy",
    "cleanAccuracy": "epoch/clean_accuracy",
    "robustAccuracy": "epoch/pgd_accuracy",
    "fullEpsilonFraction": "epoch/full_eps_share",
    "imagesPerSecond": "epoch/images_per_second",
    "learningRate": "epoch/learning_rate",
}


def check_run(run):
    import numpy as np
    from tensorboard.backend.event_processing import event_accumulator

    tb = os.path.join(run, "tb")
    acc = event_accumulator.EventAccumulator(tb, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    print(f"TensorBoard {event_accumulator.__name__} reads {tb}: {len(tags)} scalar tags")
    for tag in sorted(tags):
        points = acc.Scalars(tag)
        shown = ", ".join(f"{p.step}:{p.value:.6g}" for p in points[:6]) + (" ..." if len(points) > 6 else "")
        print(f"  {tag}: {len(points)} points  {shown}")
    epochs = [json.loads(line) for line in open(os.path.join(run, "log.jsonl")) if line.strip()]
    problems = 0
    for field, tag in EPOCH_TAGS.items():
        if tag not in tags:
            print(f"missing tag {tag}")
            problems += 1
            continue
        logged = {p.step: p.value for p in acc.Scalars(tag)}
        for row in epochs:
            expected = float(np.float32(number(row[field])))
            got = logged.get(row["epoch"])
            same = got is not None and (got == expected or (math.isnan(got) and math.isnan(expected)))
            if not same:
                print(f"{tag} epoch {row['epoch']}: log.jsonl {row[field]!r}, TensorBoard {got!r}")
                problems += 1
    compared = len(epochs) * len(EPOCH_TAGS)
    print(f"log.jsonl: {len(epochs)} epochs x {len(EPOCH_TAGS)} figures = {compared} values; "
          f"{compared - problems} equal TensorBoard's, {problems} differ")
    return 1 if problems else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="Tests/Fixtures")
    parser.add_argument("--check-run", metavar="RUN_DIR")
    args = parser.parse_args()
    if args.check_run:
        sys.exit(check_run(args.check_run))
    make_fixture(args.out)


if __name__ == "__main__":
    main()
