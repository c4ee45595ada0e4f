"""Check that a `part train --model` run's RUN/last.onnx gives onnxruntime the logits `part` gives.

With no RUN it makes one: a small dataset of 8x8 colour images of 3 classes (an npy dataset in a
temporary folder), then one epoch of AT with `part train --model
Tests/Fixtures/onnx/resnet_blocks_train.onnx` (a training-mode export with batch norm, see
make_onnx_fixtures.py), so that the weights and the running statistics of last.onnx are trained
ones. Then `part eval RUN/last.onnx --attacks natural --save-logits` writes part's logits of the
test images, onnxruntime runs last.onnx on the same images (NCHW, /255) and the script prints the
largest difference; it exits 1 when that exceeds --tolerance.

Run: python scripts/check_onnx_roundtrip.py --part .build/release/part
     python scripts/check_onnx_roundtrip.py --part PART --run RUN --data NPY_FOLDER   (an existing run on an npy dataset)
Needs onnxruntime and numpy (scripts/requirements.txt).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_dataset(folder):
    """Images whose class is a bright band of rows, 48 for training and 24 for testing."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 48), ("test", 24)):
        y = np.arange(n) % 3
        x = (rng.random((n, 8, 8, 3)) * 80).astype(np.uint8)
        for i in range(n):
            x[i, y[i] * 3:y[i] * 3 + 2] += 150
        np.savez(os.path.join(folder, split + ".npz"), x=x, y=y.astype(np.int64))


def run(command):
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", required=True, help="the part executable")
    parser.add_argument("--run", help="a run directory holding last.onnx (default: train one)")
    parser.add_argument("--data", help="the npy dataset folder of --run (test.npz)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |difference| of a logit")
    args = parser.parse_args()
    if (args.run is None) != (args.data is None):
        parser.error("--run and --data go together")
    with tempfile.TemporaryDirectory() as tmp:
        data, run_dir = args.data, args.run
        if run_dir is None:
            data = os.path.join(tmp, "data")
            os.makedirs(data)
            write_dataset(data)
            run_dir = os.path.join(tmp, "run")
            model = os.path.join(ROOT, "Tests", "Fixtures", "onnx", "resnet_blocks_train.onnx")
            run([args.part, "train", "--model", model, "--dataset", "npy", "--data", data, "--method", "at",
                 "--epochs", "1", "--batch-size", "8", "--steps", "3", "--eval-steps", "2", "--out", run_dir, "--quiet"])
        onnx_file = os.path.join(run_dir, "last.onnx")
        logits_file = os.path.join(tmp, "logits.npy")
        run([args.part, "eval", onnx_file, "--dataset", "npy", "--data", data, "--attacks", "natural",
             "--save-logits", logits_file, "--quiet"])
        ours = np.load(logits_file)
        images = np.load(os.path.join(data, "test.npz"))["x"]
        x = (images.astype(np.float32) / 255).transpose(0, 3, 1, 2)
        session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
        theirs = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x)})[0]
        difference = float(np.abs(ours - theirs).max())
        scale = float(np.abs(theirs).max())
        print(f"{onnx_file}: {len(x)} images, {theirs.shape[1]} logits each; largest |part - onnxruntime| = "
              f"{difference:.3g} (largest |logit| {scale:.3g}); onnxruntime {onnxruntime.__version__}")
        if not difference <= args.tolerance:
            print(f"FAIL: above the tolerance {args.tolerance}")
            return 1
        print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
