#!/usr/bin/env python3
"""Write the PyTorch checkpoint fixtures of the `.pt` reader (Tests/Fixtures/torch/).

Usage (from the project root):
    VENV/bin/python scripts/make_torch_fixtures.py [--out Tests/Fixtures/torch]
    VENV/bin/python scripts/make_torch_fixtures.py --check-converted FILE.pt
    VENV/bin/python scripts/make_torch_fixtures.py --check-written

The first form writes, for a small-cnn (scripts/torch_models.py) of 1x16x16 inputs and 2
classes with weights drawn by torch.manual_seed(0):
  smallcnn.safetensors      the weights (float32), the twin every .pt is compared with
  smallcnn_logits.safetensors  "input" [4,1,16,16] and PyTorch's "logits" [4,2] (eval mode)
  smallcnn_zip.pt           torch.save (zip layout) of {"state_dict": {"module." + name: ...},
                            "epoch": 3, "optimizer": SGD's state_dict, "note": "..."}; fc2.weight
                            stored non-contiguous (strides (1, 200)), conv1.bias and conv2.bias
                            views of one shared storage (offsets 0 and 32)
  smallcnn_legacy.pt        the same state_dict at the top level, _use_new_zipfile_serialization
                            =False (the legacy stream), fc2.weight non-contiguous
  smallcnn_fp16.pt          the state_dict in float16 with torch.compile's "_orig_mod." prefix
  smallcnn_bf16_legacy.pt   the state_dict in bfloat16, legacy stream
  smallcnn_fp16_legacy_nested.pt  {"state_dict": {"module." + name: float16}}, legacy stream
  write_input.safetensors   what the project's writer encodes in the --check-written files:
                            "a.weight" [4,8] float32 (values that float16 rounds up, down, to
                            even, to subnormals, to zero and to infinity), "a.bias" [3],
                            "bn.num_batches_tracked" int64
  two_dicts.pt              {"model": {...}, "ema": {...}} of tiny tensors (one needs --key)
  tiny.safetensors          {"weight": [3,2] float32, "num_batches_tracked": int64 scalar},
                            the input of the conversion check below
  npy/test.npz, npy/train.npz  4 images of 16x16x1 (uint8) and labels 0/1, for `part eval`
  evil.pkl                  a bare pickle whose loading runs os.system("touch part_torch_pwned")
  evil_zip.pt               torch.save of {"state_dict": <that object>} (zip layout)
The script checks that loading each evil file with Python's pickle really creates the file
(in a temporary folder), so the refusal tests refuse a real exploit.

The second form checks a .pt written by `part convert tiny.safetensors FILE.pt`: it must load
with torch.load(weights_only=True) and hold exactly tiny.safetensors's tensors (dtypes
included). It prints the torch version and the file's SHA-256.

The third form checks the files TorchFile.encode wrote from write_input.safetensors in every
form, written_{zip,legacy}_{f32,f16}.pt (Tests/PARTEngineTests/TorchWriterTests.swift holds the
writer to these bytes): torch.load(weights_only=True) must read each as {"state_dict":
{"module." + name: tensor}} with the input's values, in float16 exactly torch's `.half()` of
them, int64 kept.
"""
import argparse
import collections
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import SmallCNN  # noqa: E402

MARKER = "part_torch_pwned"


class Evil:
    """Loading this object with pickle runs a shell command."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def exploit_works(path, legacy_torch=False):
    """Whether loading `path` with Python's unrestricted unpickler creates the marker file."""
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "import pickle, torch, sys\n"
            f"p = {os.path.abspath(path)!r}\n"
            "try:\n"
            "    torch.load(p, weights_only=False) if p.endswith('.pt') else pickle.load(open(p, 'rb'))\n"
            "except Exception as e:\n"
            "    pass\n"
        )
        subprocess.run([sys.executable, "-c", code], cwd=tmp, check=False, capture_output=True)
        return os.path.exists(os.path.join(tmp, MARKER))


def write(out):
    os.makedirs(os.path.join(out, "npy"), exist_ok=True)
    torch.manual_seed(0)
    model = SmallCNN(num_classes=2, in_channels=1, image_size=16).eval()
    sd = collections.OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "smallcnn.safetensors"))

    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        logits = model(x)
    save_file({"input": x, "logits": logits}, os.path.join(out, "smallcnn_logits.safetensors"))

    # Zip layout: nested, prefixed, a non-contiguous and two tensors sharing one storage.
    nested = collections.OrderedDict()
    shared = torch.cat([sd["conv1.bias"], sd["conv2.bias"]])
    for k, v in sd.items():
        if k == "fc2.weight":
            v = v.t().contiguous().t()
            assert not v.is_contiguous() and v.stride() == (1, 200)
        elif k == "conv1.bias":
            v = shared[:32]
        elif k == "conv2.bias":
            v = shared[32:]
        nested["module." + k] = v
    assert nested["module.conv2.bias"].untyped_storage().data_ptr() == nested["module.conv1.bias"].untyped_storage().data_ptr()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save({"state_dict": nested, "epoch": 3, "optimizer": optimizer.state_dict(), "note": "trained for 3 epochs"},
               os.path.join(out, "smallcnn_zip.pt"))

    legacy = collections.OrderedDict((k, v.t().contiguous().t() if k == "fc2.weight" else v) for k, v in sd.items())
    torch.save(legacy, os.path.join(out, "smallcnn_legacy.pt"), _use_new_zipfile_serialization=False)

    half = collections.OrderedDict(("_orig_mod." + k, v.half()) for k, v in sd.items())
    torch.save(half, os.path.join(out, "smallcnn_fp16.pt"))
    bf16 = collections.OrderedDict((k, v.bfloat16()) for k, v in sd.items())
    torch.save(bf16, os.path.join(out, "smallcnn_bf16_legacy.pt"), _use_new_zipfile_serialization=False)

    nested_half = collections.OrderedDict(("module." + k, v.half()) for k, v in sd.items())
    torch.save({"state_dict": nested_half}, os.path.join(out, "smallcnn_fp16_legacy_nested.pt"),
               _use_new_zipfile_serialization=False)

    g = torch.Generator().manual_seed(2)
    edges = torch.tensor([0.1, -1 / 3, 65504.0, 65519.0, 65520.0, -1e6, 1e-8, 2.0 ** -25,
                          3e-6, -5.96e-8, 6.1e-5, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 0.0, -0.0, 2048.5])
    weight = torch.cat([edges, torch.randn(16, generator=g) * 10.0 ** torch.randint(-6, 4, (16,), generator=g)]).reshape(4, 8)
    save_file({"a.weight": weight, "a.bias": torch.tensor([0.5, -2.0, 1e-3]),
               "bn.num_batches_tracked": torch.tensor(98765, dtype=torch.int64)},
              os.path.join(out, "write_input.safetensors"))

    small = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(3, 2), "a.bias": torch.tensor([0.5, -0.5, 1.0])}
    torch.save({"model": small, "ema": {k: v * 2 for k, v in small.items()}, "epoch": 1}, os.path.join(out, "two_dicts.pt"))

    save_file({"weight": torch.tensor([[1.5, -2.0], [0.25, 3.0], [-0.125, 7.0]]),
               "num_batches_tracked": torch.tensor(1234567, dtype=torch.int64)}, os.path.join(out, "tiny.safetensors"))

    g = torch.Generator().manual_seed(1)
    for split, n in (("test", 4), ("train", 4)):
        images = torch.randint(0, 256, (n, 16, 16, 1), generator=g, dtype=torch.uint8).numpy()
        labels = np.array([0, 1, 1, 0][:n], dtype=np.int64)
        np.savez(os.path.join(out, "npy", f"{split}.npz"), x=images, y=labels)

    with open(os.path.join(out, "evil.pkl"), "wb") as f:
        pickle.dump(Evil(), f, protocol=2)
    torch.save({"state_dict": Evil()}, os.path.join(out, "evil_zip.pt"))
    for name in ("evil.pkl", "evil_zip.pt"):
        assert exploit_works(os.path.join(out, name)), f"{name} does not run its command under pickle; fix the fixture"
    # PyTorch's own safe loader refuses them too.
    for name in ("evil.pkl", "evil_zip.pt"):
        try:
            torch.load(os.path.join(out, name), weights_only=True)
            raise SystemExit(f"torch.load(weights_only=True) accepted {name}")
        except pickle.UnpicklingError:
            pass
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name)
        if os.path.isfile(path):
            print(f"{name}: {os.path.getsize(path)} bytes")


def check_converted(path, out):
    loaded = torch.load(path, weights_only=True)
    want = load_file(os.path.join(out, "tiny.safetensors"))
    assert list(loaded.keys()) == sorted(want.keys()), (list(loaded.keys()), sorted(want.keys()))
    for k, v in want.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), (k, loaded[k], v)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    print(f"torch {torch.__version__}: torch.load(weights_only=True) reads {path} as tiny.safetensors; sha256 {digest}")


def check_written(out):
    want = load_file(os.path.join(out, "write_input.safetensors"))
    for layout in ("zip", "legacy"):
        for precision, dtype in (("f32", torch.float32), ("f16", torch.float16)):
            path = os.path.join(out, f"written_{layout}_{precision}.pt")
            loaded = torch.load(path, weights_only=True)
            assert list(loaded.keys()) == ["state_dict"], list(loaded.keys())
            sd = loaded["state_dict"]
            assert list(sd.keys()) == ["module." + k for k in sorted(want)], list(sd.keys())
            for k, v in want.items():
                got = sd["module." + k]
                expected = v if v.dtype == torch.int64 else v.to(dtype)
                assert got.dtype == expected.dtype and got.shape == expected.shape, (path, k, got.dtype, got.shape)
                assert torch.equal(got, expected), (path, k, got, expected)
            digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
            print(f"torch {torch.__version__}: torch.load(weights_only=True) reads {path} "
                  f"as write_input.safetensors in {dtype}; sha256 {digest}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="Tests/Fixtures/torch")
    parser.add_argument("--check-converted", metavar="FILE")
    parser.add_argument("--check-written", action="store_true")
    args = parser.parse_args()
    if args.check_written:
        check_written(args.out)
    elif args.check_converted:
        check_converted(args.check_converted, args.out)
    else:
        write(args.out)


if __name__ == "__main__":
    main()
