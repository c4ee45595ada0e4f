"""How far apart two checkpoints of the same model are.

Prints the largest absolute difference of the parameters and the largest difference of a
batch-norm running statistic relative to its tensor's largest value (the figures docs/distributed.md
quotes for `part train` alone against `mpirun -np 2 part train`).

    VENV/bin/python scripts/compare_checkpoints.py runs/one/last.safetensors runs/two/last.safetensors
"""
import sys

import numpy as np
from safetensors.numpy import load_file


def main(a_path, b_path):
    a, b = load_file(a_path), load_file(b_path)
    if sorted(a) != sorted(b):
        sys.exit(f"the checkpoints hold different tensors: {sorted(set(a) ^ set(b))}")
    parameters, buffers = 0.0, 0.0
    worst = ("", 0.0)
    for name in a:
        if name.endswith("num_batches_tracked"):
            continue
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        d = float(np.abs(x - y).max()) if x.size else 0.0
        if "running_" in name:
            buffers = max(buffers, d / max(float(np.abs(x).max()), 1e-12))
        else:
            parameters = max(parameters, d)
            if d >= worst[1]:
                worst = (name, d)
    print(f"parameters: max |difference| {parameters:.3g} ({worst[0]})")
    print(f"batch-norm running statistics: max relative difference {buffers:.3g}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: compare_checkpoints.py A.safetensors B.safetensors")
    main(sys.argv[1], sys.argv[2])
