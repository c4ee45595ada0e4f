#!/usr/bin/env python3
"""Write the golden fixture of bfloat16 training (Tests/Fixtures/bf16_training.safetensors).

Usage (from the project root, with the venv next to it):
    ../torch-venv/bin/python scripts/make_bf16_golden.py [--out Tests/Fixtures]

What `part train --train-precision bf16` computes is PyTorch's mixed precision on the CPU:
one adversarial-training (AT) step under torch.autocast("cpu", dtype=torch.bfloat16). This
script records it for three models that cover every kind of layer the model zoo trains:
  small-cnn  (convolutions with bias, max-pooling, flatten, three linear layers; 8 images 28x28x1)
  resnet18   (post-activation blocks, batch norm on the shortcut; 4 images 32x32x3)
  wrn-16-2   (pre-activation blocks of WideResNet and PreAct-ResNet-18; 4 images 16x16x3)
Parameters are make_golden.py's formula (the Swift tests set the same values); batch-norm
buffers keep PyTorch's defaults; input = torch.rand(N,C,H,W), labels = torch.randint(0,10,(N,))
right after torch.manual_seed(0).

What autocast does on the CPU (checked by this script on every run, see `check_autocast`):
convolutions and linear layers round their input and weight to bfloat16 and write bfloat16;
batch norm, ReLU, max-pooling, the residual sums and the global average pool run in the
bfloat16 type of their input (batch norm with float32 parameters and float32 running
statistics); cross-entropy runs in float32 on the logits widened to float32. Parameters,
their gradients and the optimiser state stay float32.

Keys per model <m> (PyTorch layouts, NCHW; float32 unless noted):
  <m>.input, <m>.labels (int64)
  <m>.bf16.loss, <m>.bf16.logits                  the autocast forward (train mode)
  <m>.bf16.grad.<p> | <m>.bf16.gradsample.<p>      parameter gradients of the autocast step
  <m>.bf16.running.<buffer>                        batch-norm buffers after that forward
  <m>.bf16.sgd.<p> | <m>.bf16.sgdsample.<p>        parameters after one SGD step
                                                   (lr 0.01, momentum 0.9, weight decay 2e-4)
  <m>.fp32.loss, <m>.fp32.logits, <m>.fp32.running.<buffer>,
  <m>.fp32.grad.<p> | <m>.fp32.gradsample.<p>
                                                   the same step in float32, so that a test can
                                                   tell a bfloat16 step from a float32 one
Tensors with more than 4096 entries are stored as 512 samples of the flattened tensor at
indices floor(j * numel / 512) (make_golden.py's rule), so the file stays under 1 MB.
The script also prints how far the autocast step lies from a float64 step (the size of
bfloat16's own error on these batches) and how far autocast's gradients move when every weight
moves by one float32 ulp (the noise between two bfloat16 implementations, in units of the
distance between the autocast and float32 gradients), which is what the Swift tolerances are
set against (Tests/PARTNNTests/BF16TrainingTests.swift).
"""
import argparse
import copy
import datetime
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_golden import put_maybe_sampled, set_formula_parameters  # noqa: E402
from torch_models import ResNet18, SmallCNN, WideResNet  # noqa: E402

SGD_LR, SGD_MOMENTUM, SGD_WD = 0.01, 0.9, 2e-4
MAX_BYTES = 1024 * 1024
SAMPLING = (4096, 512)  # tensors over 4096 entries are stored as 512 samples

# name -> (constructor, batch, input shape C,H,W)
MODELS = {
    "small-cnn": (lambda: SmallCNN(10, in_channels=1, image_size=28), 8, (1, 28, 28)),
    "resnet18": (lambda: ResNet18(10, in_channels=3), 4, (3, 32, 32)),
    "wrn-16-2": (lambda: WideResNet(depth=16, num_classes=10, widen_factor=2), 4, (3, 16, 16)),
}


def check_autocast():
    """Fails unless this PyTorch's CPU autocast has the semantics described above."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, bias=False)
    bn = torch.nn.BatchNorm2d(4)
    lin = torch.nn.Linear(4, 3)
    x = torch.rand(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)
        b = bn(h)
        p = F.adaptive_avg_pool2d(F.relu(b) + b, 1).flatten(1)
        z = lin(p)
        loss = F.cross_entropy(z, torch.tensor([0, 2]))
    got = [h.dtype, b.dtype, p.dtype, z.dtype, loss.dtype, bn.running_mean.dtype]
    want = [torch.bfloat16] * 4 + [torch.float32, torch.float32]
    if got != want:
        raise SystemExit(f"autocast semantics changed: {got}, expected {want}")
    loss.backward()
    if conv.weight.grad.dtype != torch.float32:
        raise SystemExit("autocast gave a non-float32 weight gradient")


def batch(name):
    make, n, (c, h, w) = MODELS[name]
    torch.manual_seed(0)
    x = torch.rand(n, c, h, w)
    y = torch.randint(0, 10, (n,))
    return make, x, y


def step(model, x, y, autocast):
    """One AT step in train mode: loss, logits, gradients; the model's buffers are updated."""
    model.train()
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    loss.backward()
    return loss.detach(), logits.detach().float()


def perturbed_by_one_ulp(model, seed):
    """The model with every weight matrix moved by -1, 0 or +1 float32 ulp per entry (at random):
    a stand-in for another implementation's order of float32 additions."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                step = torch.randint(-1, 2, p.shape, generator=gen).to(torch.int32)
                p.copy_((p.view(torch.int32) + step).view(torch.float32))
    return model


def relative(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def fixture():
    out = {}
    for name in MODELS:
        make, x, y = batch(name)
        out[f"{name}.input"] = x
        out[f"{name}.labels"] = y
        base = make()
        set_formula_parameters(base)

        model = copy.deepcopy(base)
        loss, logits = step(model, x, y, autocast=True)
        out[f"{name}.bf16.loss"] = loss.reshape(1).float()
        out[f"{name}.bf16.logits"] = logits
        grads = {}
        for p_name, p in model.named_parameters():
            assert p.dtype == torch.float32 and p.grad.dtype == torch.float32
            grads[p_name] = p.grad.detach().clone()
            put_maybe_sampled(out, f"{name}.bf16.grad", f"{name}.bf16.gradsample", p_name, p.grad, SAMPLING)
        for b_name, b in model.named_buffers():
            out[f"{name}.bf16.running.{b_name}"] = b.detach().clone()
        sgd = torch.optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM, weight_decay=SGD_WD)
        sgd.step()
        for p_name, p in model.named_parameters():
            put_maybe_sampled(out, f"{name}.bf16.sgd", f"{name}.bf16.sgdsample", p_name, p, SAMPLING)

        model32 = copy.deepcopy(base)
        loss32, logits32 = step(model32, x, y, autocast=False)
        out[f"{name}.fp32.loss"] = loss32.reshape(1).float()
        out[f"{name}.fp32.logits"] = logits32
        for b_name, b in model32.named_buffers():
            out[f"{name}.fp32.running.{b_name}"] = b.detach().clone()
        for p_name, p in model32.named_parameters():
            put_maybe_sampled(out, f"{name}.fp32.grad", f"{name}.fp32.gradsample", p_name, p.grad, SAMPLING)

        model64 = copy.deepcopy(base).double()
        loss64, _ = step(model64, x.double(), y, autocast=False)
        errors = {n: relative(grads[n], p.grad) for n, p in model64.named_parameters()}
        worst = max(errors.values())
        print("  worst tensors:", ", ".join(f"{n} {e:.1e}" for n, e in sorted(errors.items(), key=lambda i: -i[1])[:4]))
        worst32 = max(relative(p32.grad, p.grad) for (_, p32), (_, p) in
                      zip(model32.named_parameters(), model64.named_parameters()))
        print(f"{name}: loss bf16 {loss.item():.6f}, fp32 {loss32.item():.6f}, fp64 {loss64.item():.6f}; "
              f"largest gradient error (max |g - g64| / max |g64| per tensor) bf16 {worst:.2e}, fp32 {worst32:.2e}")
        # How far autocast's own gradients move when the f32 weights move by one ulp, in units of
        # their distance to the f32 gradients (per tensor, 2-norm): the noise between two bf16
        # implementations that the Swift tests allow for.
        for seed in (1, 2):
            moved = perturbed_by_one_ulp(copy.deepcopy(base), seed)
            step(moved, x, y, autocast=True)
            ratios = sorted(((p.grad.double() - grads[n].double()).norm()
                             / (p32.grad.double() - grads[n].double()).norm().clamp_min(1e-30)).item()
                            for (n, p), (_, p32) in zip(moved.named_parameters(), model32.named_parameters()))
            print(f"  one-ulp weight change (seed {seed}): |g' - g| / |g32 - g| median {ratios[len(ratios) // 2]:.2f}, "
                  f"max {ratios[-1]:.2f}")
    return out


def main():
    ap = argparse.ArgumentParser(description="write the bfloat16 training fixture for the Swift tests")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "Tests", "Fixtures"), help="output directory")
    args = ap.parse_args()
    torch.set_num_threads(1)
    check_autocast()
    tensors = fixture()
    path = os.path.join(args.out, "bf16_training.safetensors")
    meta = {"torch": torch.__version__, "written_by": "scripts/make_bf16_golden.py",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "parameters": "make_golden.py formula", "autocast": "cpu bfloat16",
            "sgd": f"lr={SGD_LR} momentum={SGD_MOMENTUM} weight_decay={SGD_WD}",
            "sample_rule": "over 4096 entries: 512 samples at floor(j * numel / 512)"}
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    os.chmod(path, 0o644)
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise SystemExit(f"{path}: {size} bytes exceeds the 1 MB fixture limit")
    print(f"{os.path.relpath(path)}: {size} bytes, {len(tensors)} tensors")


if __name__ == "__main__":
    main()
