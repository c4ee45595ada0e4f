#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets (Fuzz/corpus/<target>/) and the hostile inputs
the tests replay (Tests/Fixtures/fuzz/<target>/).

Usage (from the project root, with the venv next to it):
    VENV/bin/python scripts/make_fuzz_corpus.py

Seeds are small valid files written by the formats' own writers (safetensors.torch,
safetensors.numpy, Python's gzip), so the fuzzer starts from what users' tools produce:
  safetensors  every dtype the reader knows, scalars, empty tensors, metadata, no tensors
  checkpoint   state_dicts of `Tiny` below (the fuzz target's model: conv1 -> bn1 -> linear,
               PyTorch names) with and without metadata and the DataParallel prefix
  idx          raw IDX files of 1 to 4 dimensions, empty ones included
  idx-gzip     a first byte choosing the mode (even: the rest is a gzip file; odd: the rest is
               gzipped by the target itself), then gzipped IDX files, two members, and a body
               longer than its header declares
  eval-results two length bytes, a progress file, then a results file of the target's fixed
               evaluation (Fuzz/Entries/EvaluationFuzz.swift): empty, header only, one batch
               done, all done, a line cut short, a batch in progress
  npy          float32 C-order arrays from numpy.save (the format of --save-adversarial)
  cifar        a first byte (CIFAR-10, -100 fine, -100 coarse), then records as in the batches
  mat          scipy.io.savemat files, SVHN's layout, compressed and not
  numpy-data   a first byte (layout: guess, nhwc, nchw), then numpy.save arrays
  zip, tar     numpy.savez (stored and deflated) and tarfile archives
  image        a first byte (grey or RGB output), then PNG and JPEG files from Pillow
  image-cache  decoded-image caches in the layout DecodedCache.write uses
  checkpoint-fit  safetensors checkpoints with and without metadata
  torch        torch.save files of tiny state_dicts: the zip layout and the legacy stream,
               float32, float16, bfloat16, float64 and int64 tensors, a non-contiguous and a
               shared-storage tensor, nested under "state_dict" with a "module." prefix, pickle
               protocols 2 and 4
  onnx         tiny models from torch.onnx.export (opset 17): conv/relu/max-pool/flatten/gemm,
               a residual block with batch norm, average pooling and shape arithmetic, an op the
               engine does not run
Regression inputs are hand-made hostile files (inputs the fuzzer found are copied into the same
folders by hand; this script never deletes them): trailing bytes, duplicated keys, a hole in
the data offsets, non-finite weights, absurd metadata, a gzip bomb whose header declares 784
bytes, a header larger than any stream of its size can hold.
"""
import gzip
import io
import json
import os
import struct
import sys

import numpy as np
import scipy.io
import tarfile
import torch
from PIL import Image
from safetensors.numpy import save as np_save
from safetensors.torch import save as torch_save

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "Fuzz", "corpus")
REGRESSIONS = os.path.join(ROOT, "Tests", "Fixtures", "fuzz")


def write(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def raw_safetensors(header, data=b""):
    """A file from a header given as JSON text (to write what no library would)."""
    text = header.encode("utf-8")
    return struct.pack("<Q", len(text)) + text + data


class Tiny(torch.nn.Module):
    """The fuzz target's model (Fuzz/Entries/CheckpointFuzz.swift, TinyClassifier)."""

    def __init__(self, classes=2, channels=1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, 2, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(2)
        self.linear = torch.nn.Linear(2, classes)


def tiny_state(classes=2, channels=1):
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in Tiny(classes, channels).state_dict().items()}


def idx(dims, data=None):
    header = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    if data is None:
        n = int(np.prod(dims)) if dims else 0
        data = bytes((i * 7) & 0xFF for i in range(n))
    return header + data


def gz(data):
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as f:
        f.write(data)
    return out.getvalue()


def safetensors_seeds():
    d = os.path.join(CORPUS, "safetensors")
    arrays = {
        "f32": np.array([1.5, -2.0, 0.0, 3.25], dtype=np.float32).reshape(2, 2),
        "f64": np.array([0.125], dtype=np.float64),
        "f16": np.array([1.0, -2.0, 65504.0], dtype=np.float16),
        "i64": np.array(-9, dtype=np.int64),
        "i32": np.array([100000, -1], dtype=np.int32),
        "u8": np.array([0, 7, 255], dtype=np.uint8),
        "bool": np.array([True, False]),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    write(d, "every-dtype", np_save(arrays, metadata={"format": "pt", "note": "seed"}))
    write(d, "bf16", torch_save({"w": torch.tensor([[1.0, 3.0]], dtype=torch.bfloat16)}))
    write(d, "no-tensors", np_save({}, metadata={"k": "v"}))
    write(d, "no-metadata", np_save({"x": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}))
    write(d, "unicode-names", np_save({"wéight.ü": np.ones(2, dtype=np.float32)}, metadata={"ключ": "значение"}))
    write(d, "tiny-checkpoint", torch_save(tiny_state(), metadata={"architecture": "fuzz-tiny"}))


def checkpoint_seeds():
    d = os.path.join(CORPUS, "checkpoint")
    meta = {"format": "pt", "architecture": "fuzz-tiny", "classes": "2", "input_shape": "8,8,1"}
    write(d, "tiny", torch_save(tiny_state(), metadata=meta))
    write(d, "tiny-no-metadata", torch_save(tiny_state()))
    write(d, "tiny-arch-only", torch_save(tiny_state(3, 3), metadata={"architecture": "fuzz-tiny", "classes": "3"}))
    write(d, "tiny-dataparallel", torch_save({"module." + k: v for k, v in tiny_state().items()}, metadata=meta))
    scalar_as_1 = dict(tiny_state())
    scalar_as_1["bn1.num_batches_tracked"] = torch.tensor([5], dtype=torch.int64)
    write(d, "tiny-scalar-as-1", torch_save(scalar_as_1, metadata=meta))
    other = dict(meta, input_shape="16,16,1", classes="4")
    write(d, "tiny-other-shape", torch_save(tiny_state(4), metadata=other))


def idx_seeds():
    d = os.path.join(CORPUS, "idx")
    write(d, "images-3x4x4", idx([3, 4, 4]))
    write(d, "labels-5", idx([5], bytes([0, 1, 2, 3, 9])))
    write(d, "rank-4", idx([1, 2, 2, 3]))
    write(d, "empty-count", idx([0, 28, 28]))


def idx_gzip_seeds():
    d = os.path.join(CORPUS, "idx-gzip")
    write(d, "gzip-images", b"\x00" + gz(idx([2, 5, 5])))
    write(d, "gzip-labels", b"\x00" + gz(idx([4], bytes([1, 2, 3, 4]))))
    whole = idx([3, 3])
    write(d, "gzip-two-members", b"\x00" + gz(whole[:7]) + gz(whole[7:]))
    write(d, "gzip-longer-than-header", b"\x00" + gz(idx([4], bytes(4)) + bytes(5000)))
    # Odd first byte: the target gzips the rest itself (split point from the byte's upper bits).
    write(d, "plain-images", b"\x01" + idx([2, 3, 3]))
    write(d, "plain-split", b"\x0b" + idx([6]))
    write(d, "plain-body-too-long", b"\x01" + idx([2, 2]) + bytes(300))


def eval_header_line():
    """The header of EvaluationFuzz's evaluation, as Swift's JSONEncoder writes it (sorted keys,
    no spaces); a progress file must quote it verbatim."""
    header = {
        "format": "part-eval-results", "version": 1, "checkpoint": "fuzz.safetensors",
        "checkpointSHA256": "0" * 64, "architecture": "fuzz-tiny", "dataset": "fuzz", "split": "test",
        "count": 4, "attacks": ["natural", "fgsm"], "columns": ["natural", "fgsm"], "independent": False,
        "epsilon": 0.1, "alpha": 0.025, "seed": 0, "precision": "fp32", "batchSize": 2,
    }
    return json.dumps(header, sort_keys=True, separators=(",", ":"))


def outcome_line(index, robust=(True, True)):
    return ('{"index":%d,"label":%d,"prediction":%d,"natural":%s,"fgsm":%s,"brokenBy":%s,'
            '"adversarialPrediction":%s,"unverified":[]}' % (
                index, index % 2, index % 2, "true" if robust[0] else "false", "true" if robust[1] else "false",
                "null" if robust[1] else '"fgsm"', "null" if robust[1] else str(1 - index % 2)))


def eval_input(results, progress=b""):
    return struct.pack("<H", len(progress)) + progress + results


def eval_results_seeds():
    d = os.path.join(CORPUS, "eval-results")
    head = eval_header_line() + "\n"
    lines = [outcome_line(i, (True, i != 1)) + "\n" for i in range(4)]
    write(d, "empty", eval_input(b""))
    write(d, "header-only", eval_input(head.encode()))
    write(d, "one-batch", eval_input((head + "".join(lines[:2])).encode()))
    write(d, "complete", eval_input((head + "".join(lines)).encode()))
    write(d, "line-cut-short", eval_input((head + lines[0] + lines[1][:20]).encode()))
    progress = {
        "header": eval_header_line(), "seconds": [0.5, 1.25],
        "batch": {"start": 2, "end": 4, "stagesDone": 1, "outcomes": [
            {"index": i, "label": i % 2, "prediction": i % 2, "robust": [True, True], "unverified": []} for i in (2, 3)]},
    }
    write(d, "batch-in-progress", eval_input((head + "".join(lines[:2])).encode(),
                                            json.dumps(progress, sort_keys=True).encode()))


def npy(array):
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def npy_seeds():
    d = os.path.join(CORPUS, "npy")
    write(d, "nhwc", npy(np.linspace(0, 1, 2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)))
    write(d, "vector", npy(np.array([1.5, -2.0, 0.25], dtype=np.float32)))
    write(d, "empty", npy(np.zeros((0, 4), dtype=np.float32)))
    write(d, "scalar", npy(np.array(7.0, dtype=np.float32)))


def dataset_seeds():
    rng = np.random.default_rng(0)
    d = os.path.join(CORPUS, "cifar")
    for mode, label_bytes in ((0, [[3], [9]]), (1, [[2, 57], [19, 99]]), (2, [[0, 1], [5, 3]])):
        records = b"".join(bytes(lb) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for lb in label_bytes)
        write(d, "records-%d" % mode, bytes([mode]) + records)

    d = os.path.join(CORPUS, "mat")
    for compressed in (False, True):
        out = io.BytesIO()
        scipy.io.savemat(out, {"X": rng.integers(0, 256, (4, 4, 3, 2), dtype=np.uint8),
                               "y": np.array([[1], [10]], dtype=np.uint8)}, do_compression=compressed)
        write(d, "svhn-%s" % ("compressed" if compressed else "plain"), out.getvalue())
    out = io.BytesIO()
    scipy.io.savemat(out, {"y": np.array([[3.0], [7.0]]), "name": "text", "i": np.array([[-2, 5]], dtype=np.int16)})
    write(d, "mixed", out.getvalue())

    d = os.path.join(CORPUS, "numpy-data")
    write(d, "nhwc-uint8", b"\x00" + npy(rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)))
    write(d, "nchw-uint8", b"\x02" + npy(rng.integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)))
    write(d, "grey-float", b"\x00" + npy(rng.random((2, 4, 4), dtype=np.float32)))
    write(d, "big-endian-float64", b"\x01" + npy(rng.random((1, 2, 2, 1)).astype(">f8")))
    write(d, "labels", b"\x00" + npy(np.array([1, 2, 3], dtype=np.int64)))
    write(d, "fortran", b"\x00" + npy(np.asfortranarray(rng.integers(0, 256, (2, 4, 4), dtype=np.uint8))))

    d = os.path.join(CORPUS, "zip")
    arrays = {"x_test": rng.integers(0, 256, (2, 4, 4, 1), dtype=np.uint8), "y_test": np.array([0, 1])}
    out = io.BytesIO()
    np.savez(out, **arrays)
    write(d, "npz-stored", out.getvalue())
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)
    write(d, "npz-deflated", out.getvalue())

    d = os.path.join(CORPUS, "tar")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in (("cifar-10-batches-bin/batches.meta.txt", b"cat\ndog\n"),
                           ("d/" + "long-name-" * 12 + ".bin", b"\x01\x02\x03")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    write(d, "gnu-long-name", out.getvalue())
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("dir")
        info.type = tarfile.DIRTYPE
        info.mtime = 0
        t.addfile(info)
        info = tarfile.TarInfo("dir/a.txt")
        info.size = 2
        info.mtime = 0
        t.addfile(info, io.BytesIO(b"hi"))
    write(d, "pax-directory", out.getvalue())

    d = os.path.join(CORPUS, "image")
    def encoded(image, fmt, **kw):
        out = io.BytesIO()
        image.save(out, fmt, **kw)
        return out.getvalue()
    rgb = Image.fromarray(rng.integers(0, 256, (5, 4, 3), dtype=np.uint8), "RGB")
    grey = Image.fromarray(rng.integers(0, 256, (4, 6), dtype=np.uint8), "L")
    write(d, "png-rgb", b"\x01" + encoded(rgb, "PNG"))
    write(d, "png-grey", b"\x00" + encoded(grey, "PNG"))
    write(d, "png-palette", b"\x01" + encoded(rgb.convert("P"), "PNG"))
    write(d, "png-rgba", b"\x01" + encoded(rgb.convert("RGBA"), "PNG"))
    write(d, "jpeg-rgb", b"\x01" + encoded(rgb, "JPEG", quality=90))
    write(d, "jpeg-grey", b"\x00" + encoded(grey, "JPEG", quality=90))
    write(d, "jpeg-progressive", b"\x01" + encoded(rgb, "JPEG", progressive=True))

    d = os.path.join(CORPUS, "image-cache")
    def cache(count, h, w, c, classes):
        header = json.dumps({"format": 1, "count": count, "height": h, "width": w, "channels": c,
                             "classNames": classes, "fingerprint": "0" * 16}, separators=(",", ":")).encode()
        align = lambda n: (n + 63) // 64 * 64
        out = b"PARTIMG1" + struct.pack("<Q", len(header)) + header
        out += bytes(align(len(out)) - len(out))
        out += b"".join(struct.pack("<i", i % len(classes)) for i in range(count))
        out += bytes(align(len(out)) - len(out))
        return out + rng.integers(0, 256, count * h * w * c, dtype=np.uint8).tobytes()
    write(d, "two-rgb", cache(2, 4, 4, 3, ["a", "b"]))
    write(d, "empty", cache(0, 8, 8, 1, ["only"]))

    d = os.path.join(CORPUS, "checkpoint-fit")
    write(d, "with-metadata", torch_save(tiny_state(), metadata={"classes": "2", "input_shape": "8,8,1"}))
    write(d, "plain-state-dict", torch_save({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc3.weight": torch.zeros(10, 2)}))
    write(d, "dataparallel", torch_save({"module.conv1.weight": torch.zeros(2, 1, 3, 3),
                                         "module.linear.weight": torch.zeros(4, 2)}))


def torch_file(obj, **kw):
    out = io.BytesIO()
    torch.save(obj, out, **kw)
    return out.getvalue()


class Shell:
    """Loading this object with pickle runs a shell command."""

    def __reduce__(self):
        return (os.system, ("touch part_fuzz_pwned",))


def torch_seeds():
    d = os.path.join(CORPUS, "torch")
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7
    base = {"conv.weight": w, "conv.bias": torch.tensor([0.5, -1.0]), "bn.num_batches_tracked": torch.tensor(3)}
    write(d, "zip-float32", torch_file(base))
    write(d, "legacy-float32", torch_file(base, _use_new_zipfile_serialization=False))
    write(d, "zip-half-bf16-double", torch_file({"h": w.half(), "b": w.bfloat16(), "d": w.double()}))
    shared = torch.arange(8, dtype=torch.float32)
    write(d, "zip-views", torch_file({"t": w.t(), "first": shared[:4], "second": shared[4:].view(2, 2)}))
    write(d, "legacy-views", torch_file({"t": w.t(), "first": shared[:4], "second": shared[4:]},
                                        _use_new_zipfile_serialization=False))
    write(d, "zip-nested", torch_file({"state_dict": {"module." + k: v for k, v in base.items()}, "epoch": 2,
                                       "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}}))
    write(d, "zip-protocol-4", torch_file(base, pickle_protocol=4))
    write(d, "zip-parameter", torch_file({"p": torch.nn.Parameter(w)}))


def onnx_seeds():
    import torch.nn as nn
    import torch.nn.functional as F

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            return self.fc(F.max_pool2d(F.relu(self.conv(x)), 2).flatten(1))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(2)
            self.conv1 = nn.Conv2d(2, 2, 3, 1, 1, bias=False)
            self.conv2 = nn.Conv2d(2, 2, 1, bias=False)
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            x = self.bn(x)
            y = F.relu(self.conv2(F.relu(self.conv1(x))) + x)
            y = F.avg_pool2d(y, 4)
            return self.fc(y.view(y.size(0), -1))

    class Refused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return torch.tanh(self.conv(x)).flatten(1)

    o = os.path.join(CORPUS, "onnx")
    os.makedirs(o, exist_ok=True)
    torch.manual_seed(0)
    for name, model, shape, dynamic in [("plain", Plain(), (1, 1, 8, 8), True), ("residual", Residual(), (1, 2, 4, 4), True),
                                        ("residual-fixed-batch", Residual(), (2, 2, 4, 4), False),
                                        ("refused", Refused(), (1, 1, 4, 4), False)]:
        buffer = io.BytesIO()
        torch.onnx.export(model.eval(), torch.rand(*shape), buffer, opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None)
        write(o, name, buffer.getvalue())


def regressions():
    t = os.path.join(REGRESSIONS, "torch")
    write(t, "os-system-zip", torch_file({"state_dict": Shell()}))
    write(t, "os-system-legacy", torch_file({"state_dict": Shell()}, _use_new_zipfile_serialization=False))
    write(t, "list-not-dict", torch_file([torch.zeros(2)]))

    s = os.path.join(REGRESSIONS, "safetensors")
    good = np_save({"a": np.array([1.0, 2.0], dtype=np.float32)})
    write(s, "trailing-bytes", good + b"\x00\x00\x00\x00")
    write(s, "duplicated-key", raw_safetensors(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        struct.pack("<2f", 1.0, 2.0)))
    write(s, "duplicated-metadata-key", raw_safetensors('{"__metadata__":{"k":"1","k":"2"}}'))
    write(s, "hole-in-data", raw_safetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', bytes(8)))
    write(s, "deep-nesting", raw_safetensors('{"__metadata__":' + "[" * 10000 + "]" * 10000 + "}"))
    write(s, "lone-surrogate", raw_safetensors('{"__metadata__":{"k":"\\ud800"}}'))
    write(s, "float-offsets", raw_safetensors('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1.0]}}', b"\x01"))
    write(s, "huge-shape", raw_safetensors(
        '{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}'))

    c = os.path.join(REGRESSIONS, "checkpoint")
    meta = {"format": "pt", "architecture": "fuzz-tiny", "classes": "2", "input_shape": "8,8,1"}
    nan = dict(tiny_state())
    nan["linear.weight"] = nan["linear.weight"].clone()
    nan["linear.weight"][1, 0] = float("nan")
    write(c, "nan-weight", torch_save(nan, metadata=meta))
    inf = dict(tiny_state())
    inf["bn1.running_var"] = torch.full((2,), float("inf"))
    write(c, "inf-buffer", torch_save(inf, metadata=meta))
    both = dict(tiny_state())
    both["module.conv1.bias"] = both["conv1.bias"].clone()
    write(c, "prefixed-twice", torch_save(both, metadata=meta))
    write(c, "huge-classes", torch_save(tiny_state(), metadata=dict(meta, classes="99999999999")))
    write(c, "negative-classes", torch_save(tiny_state(), metadata=dict(meta, classes="-3")))
    write(c, "huge-input-shape", torch_save(tiny_state(), metadata=dict(meta, input_shape="100000,100000,1")))
    write(c, "malformed-input-shape", torch_save(tiny_state(), metadata=dict(meta, input_shape="8,8")))

    e = os.path.join(REGRESSIONS, "eval-results")
    head = eval_header_line() + "\n"
    write(e, "label-beyond-int32", eval_input(
        (head + outcome_line(0).replace('"label":0', '"label":99999999999') + "\n").encode()))
    write(e, "prediction-not-a-number", eval_input(
        (head + outcome_line(0).replace('"prediction":0', '"prediction":"zero"') + "\n").encode()))
    short = {
        "header": eval_header_line(), "seconds": [0.5, 1.25],
        "batch": {"start": 0, "end": 2, "stagesDone": 1, "outcomes": [
            {"index": i, "label": i % 2, "prediction": i % 2, "robust": [True], "unverified": []} for i in (0, 1)]},
    }
    write(e, "progress-short-robust", eval_input(head.encode(), json.dumps(short, sort_keys=True).encode()))
    beyond = dict(short, batch=dict(short["batch"], outcomes=[
        {"index": i, "label": i % 2, "prediction": i % 2, "robust": [True, True], "brokenBy": 7, "unverified": [9]}
        for i in (0, 1)]))
    write(e, "progress-stage-beyond-list", eval_input(head.encode(), json.dumps(beyond, sort_keys=True).encode()))

    i = os.path.join(REGRESSIONS, "idx")
    write(i, "huge-dimensions", idx([0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], b"\x01\x02\x03"))
    write(i, "rank-255-truncated", bytes([0, 0, 8, 255]) + bytes(40))

    g = os.path.join(REGRESSIONS, "idx-gzip")
    # A gzip bomb: the header declares one 28x28 image, the stream goes on for 64 MiB.
    write(g, "bomb", b"\x00" + gz(idx([1, 28, 28]) + bytes(64 << 20)))
    # A header declaring ~100 GB in a stream that cannot hold more than ~1032 times its size.
    write(g, "impossible-size", b"\x00" + gz(idx([100000, 1000, 1000], b"")))
    write(g, "concatenated-garbage", b"\x00" + gz(idx([2])) + b"\x1f\x8bgarbage")


def main():
    safetensors_seeds()
    checkpoint_seeds()
    idx_seeds()
    idx_gzip_seeds()
    eval_results_seeds()
    npy_seeds()
    dataset_seeds()
    torch_seeds()
    onnx_seeds()
    regressions()
    total = 0
    for base in (CORPUS, REGRESSIONS):
        for dirpath, _, files in os.walk(base):
            for f in files:
                size = os.path.getsize(os.path.join(dirpath, f))
                total += size
                if size > 512 * 1024:
                    sys.exit(f"{f} is {size} bytes: fixtures must stay small")
    print(f"wrote {CORPUS} and {REGRESSIONS} ({total} bytes)")


if __name__ == "__main__":
    main()
