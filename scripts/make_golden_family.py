#!/usr/bin/env python3
"""Write the golden fixtures of the PART family (Tests/Fixtures/family_*.safetensors).

Usage (from the project root, with the venv next to it):
    VENV/bin/python scripts/make_golden_family.py [--out Tests/Fixtures]

What the Swift tests compare against (PyTorch layouts, NCHW; float32 unless noted):

family_losses.safetensors  -- the training losses of docs/method.md#5-objectives on fixed logits, written
  exactly as the official PART code computes them (loss/trades.py, loss/mart.py):
    <case>.clean, <case>.adv [B,K], <case>.labels (int64),
    <case>.trades.loss, <case>.trades.grad_clean, <case>.trades.grad_adv   (beta 6)
    <case>.mart.loss,   <case>.mart.grad_clean,   <case>.mart.grad_adv     (beta 6)
    <case>.kl.values [B] = KL(softmax clean || softmax adv), <case>.kl.grad_adv (of their sum)
  cases: "small" (B 6, K 10, rows where the adversarial top class is and is not the label)
  and "wide" (B 4, K 200, logits of scale 10).

family_step_<arch>.safetensors (small-cnn, resnet18) -- one full training step of TRADES and
  of MART on the golden batch, computed in float64 and stored as float32: parameters set by make_golden.py's formula, input = rand under
  seed 0 (as golden_<arch>), labels, x_adv = clamp(x + 0.03 randn) under the first seed
  from 1 that keeps the last stages' ReLU inputs 1e-5 away from 0 (printed); both
  forwards in train mode, clean first, one SGD step (lr 0.01, momentum 0.9, wd 2e-4):
    input, input_adv, labels,
    <obj>.loss, <obj>.logits_clean, <obj>.logits_adv,
    <obj>.grad.<p> | <obj>.gradsample.<p>, <obj>.running.<buffer>, <obj>.sgd.<p> | <obj>.sgdsample.<p>
  (tensors over 20000 entries stored as 512 samples at floor(j * numel / 512)).
  The official code runs the clean batch through the model twice for TRADES; both outputs are
  equal in train mode, so one clean forward gives the same loss and gradients (batch-norm running
  statistics see the clean batch once here).

family_generation.safetensors -- TRADES (KL against the clean softmax) and MART (CE) generation
  on the PyTorch-initialised SmallCNN (smallcnn_torch_init.safetensors), eval mode, under a
  per-pixel map of 0.1 / 0.0875, steps of 0.025 as the reference code takes them:
    input, labels, epsmap [N,1,H,W], start (x + 0.001 N(0,1)), point (x +- 0.05, clipped),
    <obj>.grad (input gradient of the generation loss at point), <obj>.step (one step from point),
    <obj>.adv (five steps from start).
  Five TRADES steps from the 0.001 start are chaotic: the first KL gradient is a difference of
  nearly equal probabilities, and float32 and float64 PyTorch disagree on 37% of the resulting
  entries; the tests compare TRADES at `point` and MART along the whole trajectory.

family_cam_<arch>.safetensors (small-cnn with smallcnn_torch_init weights; resnet18 with the
  formula parameters) -- each CAM method at the default CAM layer (act4 / layer4), for the
  predicted class, eval mode:
    input, pred (int64), <method>.raw [N,h,w] (before the final ReLU and normalisation),
    <method>.cam (min-max normalised, zero range -> 0), <method>.up (PIL bicubic to the input
    size, squared), <method>.epsmap [N,H,W] (zscore rule, eps 0.1 / eps_low 0.0875)
  methods (docs/method.md#3-from-cam-to-epsilon-map, own formulas): gradcam, xgradcam, layercam, gradcam++.
  Also <layer>.<method>.cam at a shallower named layer (small-cnn conv3, resnet18 layer3).
  torchcam's GradCAM, XGradCAM and LayerCAM are run on the same batch as a cross-check (printed).

family_official_rule.safetensors -- the `official` map rule of the reference code (utils.py:
  matplotlib jet on the squared upsampled map, RGB, z-score over H x W x 3, eps where > 1):
    jet_lut [256,3] (float64, matplotlib's table), up [N,32,32] (4x4 maps of uniform values
    min-max normalised like CAMs, a constant map and a one-hot map, PIL bicubic to 32x32, squared), epsmap [N,32,32,3]
    (eps 8/255, eps_low 7/255), z [N,32,32,3] (float64 z-scores, diagnostics).
"""
import argparse
import copy
import datetime
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_golden import put_maybe_sampled, set_formula_parameters  # noqa: E402
from torch_models import ResNet18, SmallCNN  # noqa: E402
from torch_train import upsample_square, zscore_epsmap  # noqa: E402

BETA = 6.0
SGD_LR, SGD_MOMENTUM, SGD_WD = 0.01, 0.9, 2e-4
EPS, EPS_LOW = 0.1, 0.0875
MAX_BYTES = 1024 * 1024


# ------------------------------------------------------------------------------ losses

def trades_loss(clean, adv, labels, beta):
    """loss/trades.py: CE(clean) + beta / B * KLDivLoss(sum)(log_softmax(adv), softmax(clean))."""
    kl = torch.nn.KLDivLoss(reduction="sum")
    return F.cross_entropy(clean, labels) + beta * (1.0 / len(labels)) * kl(F.log_softmax(adv, dim=1),
                                                                            F.softmax(clean, dim=1))


def mart_loss(clean, adv, labels, beta):
    """loss/mart.py: boosted CE of the adversarial logits + beta * KL weighted by 1 - p_y."""
    kl = torch.nn.KLDivLoss(reduction="none")
    adv_probs = F.softmax(adv, dim=1)
    top2 = torch.argsort(adv_probs, dim=1)[:, -2:]
    new_y = torch.where(top2[:, -1] == labels, top2[:, -2], top2[:, -1])
    loss_adv = F.cross_entropy(adv, labels) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(clean, dim=1)
    true_probs = torch.gather(nat_probs, 1, labels.unsqueeze(1).long()).squeeze()
    loss_robust = (1.0 / len(labels)) * torch.sum(
        torch.sum(kl(torch.log(adv_probs + 1e-12), nat_probs), dim=1) * (1.0000001 - true_probs))
    return loss_adv + float(beta) * loss_robust


def loss_case(out, name, clean, adv, labels):
    out[f"{name}.clean"], out[f"{name}.adv"] = clean.clone(), adv.clone()
    out[f"{name}.labels"] = labels.clone().to(torch.int64)
    for obj, fn in [("trades", trades_loss), ("mart", mart_loss)]:
        z = clean.clone().requires_grad_(True)
        za = adv.clone().requires_grad_(True)
        loss = fn(z, za, labels, BETA)
        gz, gza = torch.autograd.grad(loss, [z, za])
        out[f"{name}.{obj}.loss"] = loss.detach().reshape(())
        out[f"{name}.{obj}.grad_clean"], out[f"{name}.{obj}.grad_adv"] = gz.clone(), gza.clone()
    za = adv.clone().requires_grad_(True)
    values = torch.nn.KLDivLoss(reduction="none")(F.log_softmax(za, dim=1), F.softmax(clean, dim=1)).sum(1)
    (g,) = torch.autograd.grad(values.sum(), [za])
    out[f"{name}.kl.values"], out[f"{name}.kl.grad_adv"] = values.detach().clone(), g.clone()
    print(f"losses/{name}: trades {out[f'{name}.trades.loss'].item():.6f}, mart {out[f'{name}.mart.loss'].item():.6f}")


def losses():
    out = {}
    g = torch.Generator().manual_seed(10)
    clean = torch.randn(6, 10, generator=g) * 3
    adv = torch.randn(6, 10, generator=g) * 3
    labels = torch.randint(0, 10, (6,), generator=g)
    # Row 0: the adversarial top class is the label (MART's y2 is then the runner-up); row 1: it is not.
    labels[0] = int(adv[0].argmax())
    labels[1] = (int(adv[1].argmax()) + 1) % 10
    loss_case(out, "small", clean, adv, labels)
    g = torch.Generator().manual_seed(11)
    loss_case(out, "wide", torch.randn(4, 200, generator=g) * 10, torch.randn(4, 200, generator=g) * 10,
              torch.randint(0, 200, (4,), generator=g))
    return out


# ------------------------------------------------------------------------- training step

def model_for(arch):
    if arch == "small-cnn":
        return SmallCNN(10, in_channels=1, image_size=28), (4, 1, 28, 28)
    return ResNet18(10, in_channels=3), (4, 3, 32, 32)


def relu_margin(model, batch):
    """The smallest |value| entering a ReLU of the model's last stages (train mode, float64).

    A ReLU input within float32 rounding of 0 can fall on either side in two correct engines; in
    the last stages, where each activation carries a large share of the gradient, that changes
    parameter gradients by percents. So the golden batches keep those inputs clear of the kink:
    SmallCNN's fc1 and fc2; ResNet-18's layer3 and layer4 (each block's bn1 output and its
    bn2(...) + shortcut(x)).
    """
    model = copy.deepcopy(model).double().train()
    seen = []
    hooks = []

    def record(_m, _i, o):
        seen.append(o.abs().min().item())

    def block_hook(m, inputs, _o):
        out = m.bn2(m.conv2(F.relu(m.bn1(m.conv1(inputs[0])))))
        seen.append((out + m.shortcut(inputs[0])).abs().min().item())

    for name, module in model.named_modules():
        if name in ("fc1", "fc2") and not hasattr(model, "layer1"):
            hooks.append(module.register_forward_hook(record))
        if name.startswith(("layer3.", "layer4.")):
            if name.endswith("bn1"):
                hooks.append(module.register_forward_hook(record))
            if hasattr(module, "shortcut") and hasattr(module, "bn2"):
                hooks.append(module.register_forward_hook(block_hook))
    with torch.no_grad():
        model(batch.double())
    for h in hooks:
        h.remove()
    return min(seen)


def training_step(arch):
    model, shape = model_for(arch)
    set_formula_parameters(model)
    torch.manual_seed(0)
    x = torch.rand(*shape)
    labels = torch.randint(0, 10, (shape[0],))
    # x_adv = clamp(x + 0.03 N(0,1)) with the first noise seed from 1 that keeps the ReLU inputs of
    # the last stages at least 1e-5 from 0 (see relu_margin; seed 1 leaves one at 2.6e-6 in
    # ResNet-18's layer4, which float32 rounding can put on the other side).
    for noise_seed in range(1, 100):
        g = torch.Generator().manual_seed(noise_seed)
        x_adv = torch.clamp(x + 0.03 * torch.randn(*shape, generator=g), 0, 1)
        margin = relu_margin(model, x_adv)
        if margin > 1e-5:
            break
    else:
        raise SystemExit(f"{arch}: no noise seed keeps the ReLU inputs clear of 0")
    print(f"step/{arch}: noise seed {noise_seed}, smallest last-stage ReLU input {margin:.2e}")
    out = {"input": x.clone(), "input_adv": x_adv.clone(), "labels": labels.clone().to(torch.int64)}
    for obj, fn in [("trades", trades_loss), ("mart", mart_loss)]:
        # In float64 (stored as float32), so that the reference carries no float32 rounding.
        model, _ = model_for(arch)
        set_formula_parameters(model)
        model = model.double()
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM, weight_decay=SGD_WD)
        opt.zero_grad(set_to_none=True)
        logits = model(x.double())
        logits_adv = model(x_adv.double())
        loss = fn(logits, logits_adv, labels, BETA)
        loss.backward()
        out[f"{obj}.loss"] = loss.detach().float().reshape(())
        out[f"{obj}.logits_clean"] = logits.detach().float().clone()
        out[f"{obj}.logits_adv"] = logits_adv.detach().float().clone()
        for name, p in model.named_parameters():
            put_maybe_sampled(out, f"{obj}.grad", f"{obj}.gradsample", name, p.grad.float())
        for name, b in model.named_buffers():
            out[f"{obj}.running.{name}"] = b.detach().clone().contiguous().float()
        opt.step()
        for name, p in model.named_parameters():
            put_maybe_sampled(out, f"{obj}.sgd", f"{obj}.sgdsample", name, p.float())
        print(f"step/{arch}/{obj}: loss {loss.item():.6f}")
    return out


# ---------------------------------------------------------------------------- generation

def torch_init_smallcnn():
    model = SmallCNN()
    state = load_file(os.path.join(HERE, "..", "Tests", "Fixtures", "smallcnn_torch_init.safetensors"))
    model.load_state_dict(state)
    model.eval()
    return model


def generation_loss(model, obj, xa, target, labels):
    logits = model(xa)
    if obj == "trades":
        return torch.nn.KLDivLoss(reduction="sum")(F.log_softmax(logits, dim=1), target)
    return F.cross_entropy(logits, labels)


def sign_step(xa, grad, x, epsmap):
    """One step of the reference code: x' + alpha sign(g), element_wise_clamp around x, [0, 1]."""
    xa = xa.detach() + 0.025 * torch.sign(grad)
    eta = torch.min(torch.max(xa - x, -epsmap), epsmap)
    return torch.clamp(x + eta, 0, 1)


def generation():
    model = torch_init_smallcnn()
    torch.manual_seed(3)
    x = torch.rand(4, 1, 28, 28)
    labels = torch.randint(0, 10, (4,))
    epsmap = torch.where(torch.rand(4, 1, 28, 28) < 0.15, torch.tensor(EPS), torch.tensor(EPS_LOW))
    start = x + 0.001 * torch.randn(4, 1, 28, 28)
    point = torch.clamp(x + 0.05 * torch.sign(torch.randn(4, 1, 28, 28)), 0, 1)
    out = {"input": x.clone(), "labels": labels.clone().to(torch.int64), "epsmap": epsmap.clone(),
           "start": start.clone(), "point": point.clone()}
    with torch.no_grad():
        target = F.softmax(model(x), dim=1)
    for obj in ["trades", "mart"]:
        # The gradient of the generation loss at a point 0.05 away from x, and one step from it.
        xp = point.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(generation_loss(model, obj, xp, target, labels), [xp])
        out[f"{obj}.grad"], out[f"{obj}.step"] = grad.clone(), sign_step(point, grad, x, epsmap)
        # Five steps from x + 0.001 N(0, 1).
        xa = start.clone()
        for _ in range(5):
            xa.requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(generation_loss(model, obj, xa, target, labels), [xa])
            xa = sign_step(xa, grad, x, epsmap)
        out[f"{obj}.adv"] = xa.detach().clone()
        moved = (xa - x).abs()
        print(f"generation/{obj}: mean |x' - x| {moved.mean().item():.4f}, at the budget "
              f"{(moved >= epsmap - 1e-6).float().mean().item():.3f}")
    return out


# ---------------------------------------------------------------------------------- CAMs

def activations_and_gradients(model, layer, x):
    """A and G = d logit_pred / dA at `layer` (eval mode), and the predicted classes."""
    store = {}
    handle = layer.register_forward_hook(lambda _m, _i, o: store.__setitem__("a", o))
    try:
        with torch.enable_grad():
            logits = model(x)
            pred = logits.argmax(dim=1)
            (grads,) = torch.autograd.grad(logits.gather(1, pred[:, None]).sum(), store["a"])
    finally:
        handle.remove()
    return store["a"].detach(), grads.detach(), pred


def cam_raw(method, a, g):
    """The map before the final ReLU (docs/method.md#3-from-cam-to-epsilon-map), [N,h,w]."""
    if method == "gradcam":
        w = g.mean(dim=(2, 3))
    elif method == "xgradcam":
        w = (a * g).sum(dim=(2, 3)) / (a.sum(dim=(2, 3)) + 1e-7)
    elif method == "layercam":
        return (F.relu(g) * a).sum(dim=1)
    elif method == "gradcam++":
        g2, g3 = g.pow(2), g.pow(3)
        denominator = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, torch.ones_like(g2)),
                            torch.zeros_like(g2))
        w = (alpha * F.relu(g)).sum(dim=(2, 3))
    else:
        raise ValueError(method)
    return (w[:, :, None, None] * a).sum(dim=1)


def min_max(cam):
    flat = cam.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    span = flat.max(dim=1).values[:, None, None] - lo
    return torch.where(span > 0, (cam - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(cam))


def cams(arch):
    if arch == "small-cnn":
        model, layer_name = torch_init_smallcnn(), "act4"
        torch.manual_seed(5)
        x = torch.rand(4, 1, 28, 28)
    else:
        model, layer_name = ResNet18(10, in_channels=3), "layer4"
        set_formula_parameters(model)
        model.eval()
        torch.manual_seed(0)
        x = torch.rand(4, 3, 32, 32)
    layer = getattr(model, layer_name)
    a, g, pred = activations_and_gradients(model, layer, x.clone())
    out = {"input": x.clone(), "pred": pred.clone().to(torch.int64)}
    for method in ["gradcam", "xgradcam", "layercam", "gradcam++"]:
        raw = cam_raw(method, a, g)
        cam = min_max(F.relu(raw))
        up = upsample_square(cam, x.shape[2], x.shape[3])
        out[f"{method}.raw"], out[f"{method}.cam"] = raw.clone(), cam.clone()
        out[f"{method}.up"], out[f"{method}.epsmap"] = up.clone(), zscore_epsmap(up, EPS, EPS_LOW)
        ranges = [f"{(r.max() - r.min()).item():.3g}" for r in F.relu(raw)]
        live = sum(float(r.max() - r.min()) > 0 for r in F.relu(raw))
        print(f"cam/{arch}/{method}: {live} of {len(raw)} maps non-constant; ReLU(raw) ranges {ranges}")
        if live < len(raw) - 1:
            raise SystemExit(f"{arch} {method}: degenerate maps prove nothing; choose other weights or inputs")
    # The same methods at a shallower named layer (`--cam-layer`): SmallCNN conv3 (10 x 10, before
    # its ReLU), ResNet-18 layer3 (8 x 8).
    shallow = "conv3" if arch == "small-cnn" else "layer3"
    a, g, _ = activations_and_gradients(model, getattr(model, shallow), x.clone())
    for method in ["gradcam", "xgradcam", "layercam", "gradcam++"]:
        cam = min_max(F.relu(cam_raw(method, a, g)))
        if sum(float(c.max() - c.min()) > 0 for c in cam) < len(cam) - 1:
            raise SystemExit(f"{arch} {method} at {shallow}: degenerate maps prove nothing")
        out[f"{shallow}.{method}.cam"] = cam.clone()
    cross_check_torchcam(model, layer_name, x, out)
    return out


def cross_check_torchcam(model, layer_name, x, out):
    """torchcam's maps of the same batch (normalised by max + 1e-8) beside ours."""
    try:
        from torchcam.methods import GradCAM, LayerCAM, XGradCAM
    except ImportError:
        print("    torchcam not installed: no cross-check")
        return
    for method, cls in [("gradcam", GradCAM), ("xgradcam", XGradCAM), ("layercam", LayerCAM)]:
        extractor = cls(model, layer_name)
        try:
            logits = model(x.clone())
            maps = extractor(logits.argmax(1).tolist(), logits)[0].detach()
        finally:
            extractor.remove_hooks()
        print(f"    torchcam {method}: max |difference| {(maps - out[f'{method}.cam']).abs().max().item():.2e}")


# ------------------------------------------------------------------------ official rule

def official_rule():
    cmap = colormaps["jet"]
    lut = cmap(np.arange(256))[:, :3].astype(np.float64)        # integer input: the table itself
    g = torch.Generator().manual_seed(7)
    small = min_max(torch.rand(6, 4, 4, generator=g))           # like normalised CAMs: min 0, max 1
    constant = torch.zeros(1, 4, 4)
    onehot = torch.zeros(1, 4, 4)
    onehot[0, 1, 2] = 1
    maps = torch.cat([small, constant, onehot])
    up = upsample_square(maps, 32, 32).numpy()                  # PIL bicubic, squared, float32
    epsmaps, zs = [], []
    for u in up:
        overlay = cmap(u)                                       # utils.py: cm.get_cmap('jet')(overlay ** 2)
        rgb = (255 * overlay[:, :, :3]).astype(np.double) / 255  # utils.py: process_overlay
        mean, std = np.mean(rgb), np.std(rgb)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (rgb - mean) / std
        w = torch.clamp(torch.from_numpy(z), 1, torch.from_numpy(z).max()).float()
        epsmaps.append(torch.where(w > 1, 8 / 255, 7 / 255).float())
        zs.append(torch.from_numpy(np.nan_to_num(z, nan=0.0)))
    epsmap = torch.stack(epsmaps)
    full = (epsmap[:6] >= 8 / 255 - 1e-9).double().mean(dim=(0, 1, 2))
    print(f"official rule: full-eps share per channel (R, G, B) on random maps {[round(v, 3) for v in full.tolist()]}, "
          f"overall {full.mean().item():.3f}")
    return {"jet_lut": torch.from_numpy(lut), "up": torch.from_numpy(up), "epsmap": epsmap, "z": torch.stack(zs)}


# --------------------------------------------------------------------------------- main

def write(directory, name, tensors, extra):
    path = os.path.join(directory, name)
    meta = {"torch": torch.__version__, "written_by": "scripts/make_golden_family.py",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    meta.update(extra)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    os.chmod(path, 0o644)
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise SystemExit(f"{path}: {size} bytes exceeds the 1 MB fixture limit")
    print(f"{os.path.relpath(path)}: {size} bytes, {len(tensors)} tensors")


def main():
    ap = argparse.ArgumentParser(description="write the PART family's golden fixtures for the Swift tests")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "Tests", "Fixtures"), help="output directory")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    write(args.out, "family_losses.safetensors", losses(), {"beta": str(BETA)})
    for arch in ["small-cnn", "resnet18"]:
        write(args.out, f"family_step_{arch}.safetensors", training_step(arch),
              {"model": arch, "parameters": "make_golden.py formula", "beta": str(BETA),
               "sgd": f"lr={SGD_LR} momentum={SGD_MOMENTUM} weight_decay={SGD_WD}"})
    write(args.out, "family_generation.safetensors", generation(),
          {"weights": "smallcnn_torch_init.safetensors", "steps": "5", "alpha": "0.025", "sigma": "0.001"})
    for arch in ["small-cnn", "resnet18"]:
        write(args.out, f"family_cam_{arch}.safetensors", cams(arch),
              {"model": arch, "weights": "smallcnn_torch_init.safetensors" if arch == "small-cnn"
               else "make_golden.py formula", "epsmap": f"zscore eps={EPS} eps_low={EPS_LOW}"})
    write(args.out, "family_official_rule.safetensors", official_rule(), {"epsmap": "official eps=8/255 eps_low=7/255"})


if __name__ == "__main__":
    main()
