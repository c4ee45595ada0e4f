"""Small datasets in each original format, and what NumPy reads from them.

    VENV/bin/python scripts/make_dataset_fixtures.py            # Tests/Fixtures/data_*
    VENV/bin/python scripts/make_dataset_fixtures.py --full DIR # full-size files for benchmarks
    VENV/bin/python scripts/make_dataset_fixtures.py --stats NAME PATH   # NumPy's figures

Every file is written by the tools the real datasets come from or that users use: raw bytes
in the CIFAR binary layout (and a tar.gz of them), SciPy's savemat for SVHN's MATLAB files
(compressed and not), Pillow for JPEG and PNG, NumPy's save/savez/savez_compressed. The
expected figures in data_expected.json are computed independently of part: NumPy on the
record bytes, scipy.io.loadmat, Pillow's decoder, torchvision's ImageFolder ordering, and
torchvision's own crop and flip for the augmentation cases. Nothing here is real CIFAR,
SVHN or TinyImageNet data: the images are synthetic, with the real formats' layouts.
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

import numpy as np
import scipy.io
from PIL import Image

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def synthetic_images(rng, n, h, w, c):
    """Smooth gradients with noise: realistic enough statistics, compressible."""
    y = np.linspace(0, 1, h)[:, None, None]
    x = np.linspace(0, 1, w)[None, :, None]
    out = np.empty((n, h, w, c), dtype=np.uint8)
    for i in range(n):
        phase = rng.uniform(0, 1, size=(1, 1, c))
        base = 127 + 100 * np.sin(2 * np.pi * (x * rng.uniform(0.5, 2) + y * rng.uniform(0.5, 2) + phase))
        out[i] = np.clip(base + rng.normal(0, 12, size=(h, w, c)), 0, 255).astype(np.uint8)
    return out


def stats(images, labels, classes):
    """Count, shape, class histogram, per-channel mean and population std of images in [0, 1]."""
    x = images.astype(np.float64)
    if images.dtype == np.uint8:
        x = x / 255
    return {
        "count": int(images.shape[0]),
        "shape": [int(s) for s in images.shape[1:]],
        "histogram": np.bincount(labels, minlength=classes).astype(int).tolist(),
        "mean": x.mean(axis=(0, 1, 2)).tolist(),
        "std": x.std(axis=(0, 1, 2)).tolist(),
    }


def probe(images, labels):
    """Labels and a few pixels that a reader must reproduce exactly (NHWC indices)."""
    n, h, w, c = images.shape
    points = [(0, 0, 0, 0), (n - 1, h - 1, w - 1, c - 1), (n // 2, h // 3, w // 2, c // 2), (0, 1, 2, c - 1)]
    return {
        "labels": labels.astype(int).tolist(),
        "pixels": [[int(i), int(y), int(x), int(k), float(images[i, y, x, k])] for i, y, x, k in points],
    }


# ---- CIFAR binary ----------------------------------------------------------------------------

def cifar_records(images, label_rows):
    """label bytes then the R, G and B planes, row by row."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([np.asarray(label_rows, dtype=np.uint8).reshape(len(images), -1), planes], axis=1).tobytes()


def read_cifar(path, label_bytes, which):
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, label_bytes + 3072)
    images = raw[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, raw[:, which].astype(np.int64)


def make_cifar10(folder, rng, per_batch, test_count):
    os.makedirs(folder, exist_ok=True)
    for k in range(1, 6):
        images = synthetic_images(rng, per_batch, 32, 32, 3)
        labels = rng.integers(0, 10, size=per_batch)
        with open(os.path.join(folder, f"data_batch_{k}.bin"), "wb") as f:
            f.write(cifar_records(images, labels[:, None]))
    images = synthetic_images(rng, test_count, 32, 32, 3)
    labels = rng.integers(0, 10, size=test_count)
    with open(os.path.join(folder, "test_batch.bin"), "wb") as f:
        f.write(cifar_records(images, labels[:, None]))
    with open(os.path.join(folder, "batches.meta.txt"), "w") as f:
        f.write("\n".join(CIFAR10_NAMES) + "\n\n")


def expected_cifar10(folder):
    parts = [read_cifar(os.path.join(folder, f"data_batch_{k}.bin"), 1, 0) for k in range(1, 6)]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = read_cifar(os.path.join(folder, "test_batch.bin"), 1, 0)
    return {s: {**stats(x, y, 10), **probe(x, y)} for s, (x, y) in [("train", train), ("test", test)]}


def make_cifar100(folder, rng, train_count, test_count):
    os.makedirs(folder, exist_ok=True)
    for name, n in [("train.bin", train_count), ("test.bin", test_count)]:
        images = synthetic_images(rng, n, 32, 32, 3)
        fine = rng.integers(0, 100, size=n)
        coarse = fine % 20
        with open(os.path.join(folder, name), "wb") as f:
            f.write(cifar_records(images, np.stack([coarse, fine], axis=1)))
    # The name files are written by the test from part's own lists; here plain indices would do.


def expected_cifar100(folder):
    out = {}
    for mode, which, classes in [("fine", 1, 100), ("coarse", 0, 20)]:
        out[mode] = {}
        for split, name in [("train", "train.bin"), ("test", "test.bin")]:
            x, y = read_cifar(os.path.join(folder, name), 2, which)
            out[mode][split] = {**stats(x, y, classes), **probe(x, y)}
    return out


# ---- SVHN (MATLAB level 5) -------------------------------------------------------------------

def make_svhn(folder, rng, counts, compress):
    os.makedirs(folder, exist_ok=True)
    for name, n in counts.items():
        images = synthetic_images(rng, n, 32, 32, 3)
        labels = rng.integers(1, 11, size=n).astype(np.float64)
        labels[0] = 10  # the digit 0
        # SVHN's X is 32x32x3xN (row, column, channel, image); y is Nx1 doubles 1...10.
        scipy.io.savemat(os.path.join(folder, name), {"X": images.transpose(1, 2, 3, 0), "y": labels[:, None]},
                         do_compression=compress[name])


def read_svhn(path):
    mat = scipy.io.loadmat(path)
    images = np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2))
    labels = mat["y"].astype(np.int64).squeeze(1)
    labels[labels == 10] = 0
    return images, labels


def expected_svhn(folder, extra):
    train = read_svhn(os.path.join(folder, "train_32x32.mat"))
    if extra:
        e = read_svhn(os.path.join(folder, "extra_32x32.mat"))
        train = (np.concatenate([train[0], e[0]]), np.concatenate([train[1], e[1]]))
    test = read_svhn(os.path.join(folder, "test_32x32.mat"))
    return {s: {**stats(x, y, 10), **probe(x, y)} for s, (x, y) in [("train", train), ("test", test)]}


# ---- TinyImageNet-200 and image folders (JPEG, PNG) ------------------------------------------

def make_tinyimagenet(root, rng, wnids, per_class, val_count, side=64):
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(os.path.join(root, "val", "images"))
    # The official wnids.txt is not sorted; classes are numbered in sorted order.
    with open(os.path.join(root, "wnids.txt"), "w") as f:
        f.write("\n".join(wnids) + "\n")
    with open(os.path.join(root, "words.txt"), "w") as f:
        for k, w in enumerate(sorted(wnids)):
            f.write(f"{w}\tthing {k}, other name\n")
        f.write("n99999999\tunused class\n")
    for w in wnids:
        os.makedirs(os.path.join(root, "train", w, "images"))
        boxes = []
        for k in range(per_class):
            image = synthetic_images(rng, 1, side, side, 3)[0]
            name = f"{w}_{k}.JPEG"
            if k == 1:
                # TinyImageNet has some grey-scale JPEGs; they are read as RGB.
                Image.fromarray(image[:, :, 0], "L").save(os.path.join(root, "train", w, "images", name), quality=90)
            else:
                Image.fromarray(image).save(os.path.join(root, "train", w, "images", name), quality=90)
            boxes.append(f"{name}\t0\t0\t{side - 1}\t{side - 1}")
        with open(os.path.join(root, "train", w, f"{w}_boxes.txt"), "w") as f:
            f.write("\n".join(boxes) + "\n")
    lines = []
    for k in range(val_count):
        image = synthetic_images(rng, 1, side, side, 3)[0]
        Image.fromarray(image).save(os.path.join(root, "val", "images", f"val_{k}.JPEG"), quality=90)
        lines.append(f"val_{k}.JPEG\t{wnids[int(rng.integers(0, len(wnids)))]}\t1\t2\t30\t40")
    with open(os.path.join(root, "val", "val_annotations.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def pil_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def expected_tinyimagenet(root):
    wnids = sorted(line.strip() for line in open(os.path.join(root, "wnids.txt")) if line.strip())
    train_x, train_y = [], []
    for k, w in enumerate(wnids):
        folder = os.path.join(root, "train", w, "images")
        for name in sorted(os.listdir(folder)):
            train_x.append(pil_rgb(os.path.join(folder, name)))
            train_y.append(k)
    test_x, test_y = [], []
    for line in open(os.path.join(root, "val", "val_annotations.txt")):
        if line.strip():
            name, w = line.split("\t")[:2]
            test_x.append(pil_rgb(os.path.join(root, "val", "images", name)))
            test_y.append(wnids.index(w))
    out = {}
    for s, x, y in [("train", train_x, train_y), ("test", test_x, test_y)]:
        x, y = np.stack(x), np.array(y)
        out[s] = {**stats(x, y, len(wnids)), **probe(x, y)}
    return out


def make_imagefolder(root, rng, side=16):
    if os.path.exists(root):
        shutil.rmtree(root)
    spec = {
        "train": {"cat": ["a.png", "b.jpg", "c.PNG", "deep/d.png"], "dog": ["x.jpeg", "y.png"], "emu": ["e.png"]},
        "val": {"dog": ["v1.png"], "cat": ["v2.jpg", "v3.png"]},
    }
    kinds = ["rgb", "grey", "palette", "rgba", "grey-alpha"]
    k = 0
    for split, classes in spec.items():
        for cls, files in classes.items():
            for name in files:
                path = os.path.join(root, split, cls, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                image = synthetic_images(rng, 1, side, side, 3)[0]
                kind = kinds[k % len(kinds)] if name.lower().endswith("png") else "rgb"
                k += 1
                if kind == "rgb":
                    im = Image.fromarray(image)
                elif kind == "grey":
                    im = Image.fromarray(image[:, :, 1], "L")
                elif kind == "palette":
                    im = Image.fromarray(image).convert("P", palette=Image.ADAPTIVE, colors=16)
                elif kind == "rgba":
                    alpha = rng.integers(0, 256, size=(side, side, 1)).astype(np.uint8)
                    im = Image.fromarray(np.concatenate([image, alpha], axis=2), "RGBA")
                else:
                    alpha = rng.integers(0, 256, size=(side, side)).astype(np.uint8)
                    im = Image.merge("LA", [Image.fromarray(image[:, :, 2], "L"), Image.fromarray(alpha, "L")])
                if name.lower().endswith("png"):
                    im.save(path, format="PNG")
                else:
                    im.save(path, format="JPEG", quality=85)
    # Files that are not images are ignored, hidden folders too.
    with open(os.path.join(root, "train", "cat", "notes.txt"), "w") as f:
        f.write("not an image\n")
    os.makedirs(os.path.join(root, "train", ".hidden"))
    Image.fromarray(synthetic_images(rng, 1, side, side, 3)[0]).save(os.path.join(root, "train", ".hidden", "h.png"))


def expected_imagefolder(root):
    from torchvision.datasets import ImageFolder

    class VisibleFolders(ImageFolder):
        # part skips hidden folders (torchvision would make ".hidden" a class).
        def find_classes(self, directory):
            classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
            return classes, {c: i for i, c in enumerate(classes)}

    train = VisibleFolders(os.path.join(root, "train"))
    test = VisibleFolders(os.path.join(root, "val"))
    classes = train.classes
    out = {"classes": classes, "files": {}}
    for s, ds in [("train", train), ("test", test)]:
        # Test folders are numbered by the training classes (torchvision would number them alone).
        labels = np.array([classes.index(ds.classes[y]) for _, y in ds.samples])
        x = np.stack([pil_rgb(p) for p, _ in ds.samples])
        out["files"][s] = [os.path.relpath(p, root) for p, _ in ds.samples]
        out[s] = {**stats(x, labels, len(classes)), **probe(x, labels)}
    return out


# ---- NumPy ------------------------------------------------------------------------------------

def make_npy(folder, rng):
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(os.path.join(folder, "pairs"))
    train_x = synthetic_images(rng, 10, 8, 8, 3)
    train_y = rng.integers(0, 5, size=10)
    train_y[3] = 6  # the largest label decides the class count
    test_x = rng.uniform(0, 1, size=(4, 3, 8, 8)).astype(np.float32)  # NCHW float32
    test_x[0, 0, 0, 0] = 1.0
    test_x[0, 0, 0, 1] = 0.0
    test_y = rng.integers(0, 5, size=4).astype(np.int32)
    np.savez(os.path.join(folder, "train.npz"), x=train_x, y=train_y)
    np.savez_compressed(os.path.join(folder, "test.npz"), images=test_x, labels=test_y)
    np.save(os.path.join(folder, "pairs", "train_x.npy"), train_x[:, :, :, 0])  # [N, H, W]: one channel
    np.save(os.path.join(folder, "pairs", "train_y.npy"), train_y.astype(np.uint8))
    np.save(os.path.join(folder, "pairs", "val_x.npy"), test_x[:, :1])  # NCHW with C = 1
    np.save(os.path.join(folder, "pairs", "val_y.npy"), test_y[:, None].astype(np.int64))  # [N, 1]


def expected_npy(folder):
    out = {}
    tr, te = np.load(os.path.join(folder, "train.npz")), np.load(os.path.join(folder, "test.npz"))
    classes = int(max(tr["y"].max(), te["labels"].max())) + 1
    for s, x, y in [("train", tr["x"], tr["y"]), ("test", te["images"].transpose(0, 2, 3, 1), te["labels"])]:
        out[s] = {**stats(x, y, classes), **probe(x, y)}
    p = os.path.join(folder, "pairs")
    px, py = np.load(os.path.join(p, "train_x.npy"))[..., None], np.load(os.path.join(p, "train_y.npy"))
    vx, vy = np.load(os.path.join(p, "val_x.npy")).transpose(0, 2, 3, 1), np.load(os.path.join(p, "val_y.npy"))[:, 0]
    classes = int(max(py.max(), vy.max())) + 1
    out["pairs"] = {"train": {**stats(px, py, classes), **probe(px, py)}, "test": {**stats(vx, vy, classes), **probe(vx, vy)}}
    return out


# ---- augmentation -----------------------------------------------------------------------------

def expected_augmentation(rng):
    """torchvision's crop of the 4-pixel zero-padded image at given offsets, then its flip."""
    import torch
    import torchvision.transforms.functional as TF
    image = rng.integers(1, 256, size=(6, 5, 2)).astype(np.uint8)  # H, W, C; no zeros, so padding shows
    t = torch.from_numpy(image).permute(2, 0, 1)
    cases = []
    for top, left, flip in [(0, 0, True), (-4, 3, False), (2, -1, True), (4, -4, False), (-3, -2, True)]:
        out = TF.crop(TF.pad(t, 4), top + 4, left + 4, 6, 5)  # the window's corner in the padded image
        if flip:
            out = TF.hflip(out)
        cases.append({"top": top, "left": left, "flip": flip, "output": out.permute(1, 2, 0).numpy().ravel().tolist()})
    return {"image": image.ravel().tolist(), "shape": [6, 5, 2], "cases": cases}


# ---- entry points -----------------------------------------------------------------------------

def fixtures():
    rng = np.random.default_rng(20261125)
    out = {}
    d = os.path.join(FIXTURES, "data_cifar10")
    shutil.rmtree(d, ignore_errors=True)
    make_cifar10(os.path.join(d, "cifar-10-batches-bin"), rng, per_batch=4, test_count=6)
    out["cifar10"] = expected_cifar10(os.path.join(d, "cifar-10-batches-bin"))
    # The same files as the official archive packs them.
    with tarfile.open(os.path.join(d, "cifar-10-binary.tar.gz"), "w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.add(os.path.join(d, "cifar-10-batches-bin"), arcname="cifar-10-batches-bin")

    d = os.path.join(FIXTURES, "data_cifar100")
    shutil.rmtree(d, ignore_errors=True)
    make_cifar100(os.path.join(d, "cifar-100-binary"), rng, train_count=12, test_count=5)
    out["cifar100"] = expected_cifar100(os.path.join(d, "cifar-100-binary"))

    d = os.path.join(FIXTURES, "data_svhn")
    shutil.rmtree(d, ignore_errors=True)
    make_svhn(d, rng, {"train_32x32.mat": 7, "test_32x32.mat": 5, "extra_32x32.mat": 3},
              {"train_32x32.mat": True, "test_32x32.mat": False, "extra_32x32.mat": True})
    out["svhn"] = expected_svhn(d, extra=False)
    out["svhn-extra"] = expected_svhn(d, extra=True)

    d = os.path.join(FIXTURES, "data_tinyimagenet", "tiny-imagenet-200")
    make_tinyimagenet(d, rng, ["n0300", "n0100", "n0200"], per_class=3, val_count=5)
    out["tinyimagenet"] = expected_tinyimagenet(d)

    d = os.path.join(FIXTURES, "data_imagefolder")
    make_imagefolder(d, rng)
    out["imagefolder"] = expected_imagefolder(d)

    d = os.path.join(FIXTURES, "data_npy")
    make_npy(d, rng)
    out["npy"] = expected_npy(d)

    out["augmentation"] = expected_augmentation(rng)
    out["md5"] = {}
    for name in ["data_svhn/train_32x32.mat", "data_cifar10/cifar-10-binary.tar.gz", "data_npy/test.npz"]:
        with open(os.path.join(FIXTURES, name), "rb") as f:
            out["md5"][name] = hashlib.md5(f.read()).hexdigest()
    with open(os.path.join(FIXTURES, "data_expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(FIXTURES) for n in ns
                if "data_" in os.path.relpath(os.path.join(r, n), FIXTURES))
    print(f"wrote Tests/Fixtures/data_* ({total / 1024:.0f} KiB)")


def full_size(root):
    """Full-size synthetic files in the official layouts, for benchmarks (not committed)."""
    rng = np.random.default_rng(1)
    make_cifar10(os.path.join(root, "cifar-10-batches-bin"), rng, per_batch=10_000, test_count=10_000)
    with tarfile.open(os.path.join(root, "cifar-10-binary.tar.gz"), "w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.add(os.path.join(root, "cifar-10-batches-bin"), arcname="cifar-10-batches-bin")
    make_cifar100(os.path.join(root, "cifar-100-binary"), rng, train_count=50_000, test_count=10_000)
    make_svhn(os.path.join(root, "svhn"), rng, {"train_32x32.mat": 73_257, "test_32x32.mat": 26_032},
              {"train_32x32.mat": True, "test_32x32.mat": True})
    wnids = [f"n{k:08d}" for k in range(200)]
    make_tinyimagenet(os.path.join(root, "tiny-imagenet-200"), rng, wnids, per_class=500, val_count=10_000)
    print(f"wrote full-size files under {root}")


def numpy_stats(name, path):
    """The figures `part data inspect --json` prints, computed with NumPy, SciPy and Pillow."""
    if name == "cifar10":
        folder = path if os.path.exists(os.path.join(path, "test_batch.bin")) else os.path.join(path, "cifar-10-batches-bin")
        result = expected_cifar10(folder)
    elif name == "cifar100":
        folder = path if os.path.exists(os.path.join(path, "test.bin")) else os.path.join(path, "cifar-100-binary")
        result = expected_cifar100(folder)["fine"]
    elif name == "svhn":
        result = expected_svhn(path, extra=False)
    elif name == "tinyimagenet":
        folder = path if os.path.exists(os.path.join(path, "wnids.txt")) else os.path.join(path, "tiny-imagenet-200")
        result = expected_tinyimagenet(folder)
    elif name == "imagefolder":
        result = expected_imagefolder(path)
    elif name == "npy":
        result = expected_npy(path)
    else:
        sys.exit(f"unknown dataset {name}")
    print(json.dumps({s: {k: v for k, v in result[s].items() if k not in ("labels", "pixels")} for s in ("train", "test")}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", metavar="DIR", help="write full-size files in the official layouts under DIR")
    parser.add_argument("--stats", nargs=2, metavar=("NAME", "PATH"), help="print NumPy's figures for a dataset")
    args = parser.parse_args()
    if args.full:
        full_size(args.full)
    elif args.stats:
        numpy_stats(*args.stats)
    else:
        fixtures()
