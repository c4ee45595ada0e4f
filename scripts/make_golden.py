#!/usr/bin/env python3
"""Write the golden fixtures the Swift tests compare against (Tests/Fixtures/*.safetensors).

Usage (from the project root, with the venv next to it):
    ../torch-venv/bin/python scripts/make_golden.py [--out Tests/Fixtures]

Parameters are not random: each one is set by a closed formula (see `formula_value`)
that the Swift tests reproduce, over `model.named_parameters()` in order, t = 0, 1, ...,
element i in row-major order of the PyTorch tensor, computed in float64, cast to float32:
  s = 2 u - 1, u = hash(i, t) / 2^32 (see `formula_uniform`)
  dim >= 2:           s / sqrt(numel / shape[0])
  1-D "...weight":    1 + 0.1 s
  1-D "...bias":      0.1 s
Buffers keep PyTorch's defaults. Input = torch.rand(N,C,H,W) and labels =
torch.randint(0,10,(N,)) right after torch.manual_seed(0); both are stored.

Keys per golden file (PyTorch layouts, NCHW):
  input, labels (int64),
  logits_eval, loss_eval, grad_input_eval                        (eval mode)
  cam [N,h,w], cam_up [N,H,W], epsmap [N,H,W]                    (Grad-CAM, eval mode,
      predicted class, min-max, PIL bicubic, squared; zscore rule eps 0.1 / eps_low 0.0875)
  cam_raw [N,h,w] (sum_k w_k A_k before ReLU), cam_z [N,H,W] (z-scores; 0 where std = 0)
      are diagnostics: the normalised CAM can be ill-conditioned (a small range of the raw
      map, printed by this script), so compare it with a tolerance scaled to that range.
  logits_train, loss_train, grad_input, grad.<p> | gradsample.<p>  (train mode)
  running.<buffer>                                                 (after that forward)
  sgd.<p> | sgdsample.<p>, loss_train2       (two SGD steps lr 0.01, momentum 0.9, wd 5e-4)
Tensors with more than 20000 entries are stored as 512 samples of the flattened tensor
at indices floor(j * numel / 512), j = 0..511 (`gradsample.` / `sgdsample.`).

Also writes smallcnn_torch_init.safetensors (a default-initialised SmallCNN under
torch.manual_seed(1), plain state_dict) and smallcnn_torch_init_logits.safetensors
(input = torch.rand(3,1,28,28) under seed 2, its eval-mode logits, and the Grad-CAM keys
cam, cam_raw, cam_up, epsmap of that model, which unlike the formula SmallCNN has non-zero CAMs).
"""
import argparse
import datetime
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_models import ResNet18, SmallCNN  # noqa: E402
from torch_train import gradcam, gradcam_raw, upsample_square, zscore_epsmap  # noqa: E402

FULL_LIMIT = 20000
SAMPLES = 512
EPS, EPS_LOW = 0.1, 0.0875
SGD_LR, SGD_MOMENTUM, SGD_WD = 0.01, 0.9, 5e-4
MAX_BYTES = 2 * 1024 * 1024


def formula_uniform(numel, t):
    """Integer hash of (element i, parameter t) mapped to [0, 1): exactly reproducible in Swift.

    A smooth formula such as sin(0.5 i) makes channels nearly collinear and the network
    ill-conditioned (float32 and float64 PyTorch then disagree by percents); a hash behaves
    like PyTorch's random initialisation.
    """
    i = torch.arange(numel, dtype=torch.int64)
    h = (i * 2654435761 + (t + 1) * 97531) % 2**32
    h = h ^ (h >> 16)
    h = (h * 73244475) % 2**32
    h = h ^ (h >> 16)
    return h.to(torch.float64) / 2**32


def formula_value(name, shape, t):
    """The closed-form value of parameter number t (float64 -> float32)."""
    numel = math.prod(shape)
    s = 2 * formula_uniform(numel, t) - 1
    if len(shape) >= 2:
        fan_in = numel / shape[0]
        v = s / math.sqrt(fan_in)
    elif name.endswith("weight"):
        v = 1.0 + 0.1 * s
    elif name.endswith("bias"):
        v = 0.1 * s
    else:
        raise ValueError(f"no formula for 1-D parameter {name}")
    return v.to(torch.float32).reshape(shape)


def set_formula_parameters(model):
    with torch.no_grad():
        for t, (name, p) in enumerate(model.named_parameters()):
            p.copy_(formula_value(name, tuple(p.shape), t))


def sample_indices(numel):
    return torch.tensor([(j * numel) // SAMPLES for j in range(SAMPLES)], dtype=torch.int64)


def put_maybe_sampled(out, full_prefix, sample_prefix, name, tensor):
    tensor = tensor.detach()
    if tensor.numel() <= FULL_LIMIT:
        out[f"{full_prefix}.{name}"] = tensor.clone().contiguous()
    else:
        flat = tensor.reshape(-1)
        out[f"{sample_prefix}.{name}"] = flat[sample_indices(flat.numel())].clone().contiguous()


def golden(model_name):
    if model_name == "small-cnn":
        model, n, shape = SmallCNN(10, in_channels=1, image_size=28), 4, (1, 28, 28)
        cam_layer = model.act4
    elif model_name == "resnet18":
        model, n, shape = ResNet18(10, in_channels=3), 4, (3, 32, 32)
        cam_layer = model.layer4
    else:
        raise ValueError(model_name)
    set_formula_parameters(model)
    torch.manual_seed(0)
    x = torch.rand(n, *shape)
    labels = torch.randint(0, 10, (n,))
    out = {"input": x.clone(), "labels": labels.clone().to(torch.int64)}
    _, h, w = shape

    # 2. eval mode: logits, loss, input gradient
    model.eval()
    xe = x.clone().requires_grad_(True)
    logits = model(xe)
    loss = F.cross_entropy(logits, labels)
    (gx,) = torch.autograd.grad(loss, xe)
    out["logits_eval"] = logits.detach().clone()
    out["loss_eval"] = loss.detach().clone().reshape(())
    out["grad_input_eval"] = gx.clone()

    # 3. Grad-CAM (eval mode, predicted class) -> cam, cam_up, epsmap
    cam_logits, cam = gradcam(model, cam_layer, x.clone())
    assert torch.equal(cam_logits.argmax(1), logits.detach().argmax(1))
    up = upsample_square(cam, h, w)
    emap = zscore_epsmap(up, EPS, EPS_LOW)
    out["cam"], out["cam_up"], out["epsmap"] = cam.clone(), up.clone(), emap.clone()
    # diagnostics: the raw map before ReLU / normalisation, and the z-scores of the rule
    _, raw = gradcam_raw(model, cam_layer, x.clone())
    out["cam_raw"] = raw.clone()
    u = up.double().flatten(1)
    std = u.std(1, unbiased=False, keepdim=True)
    z = (u - u.mean(1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
    out["cam_z"] = z.float().view_as(up).clone()
    live = (z - 1).abs()[(std > 0).expand_as(z)]
    z_margin = live.min().item() if live.numel() else float("nan")
    print(f"{model_name}: CAM maps with a non-constant upsampled map: {int((std > 0).sum())} of {len(std)}")
    assert all(p.grad is None for p in model.parameters()), "CAM must not touch parameter grads"

    # 4. train mode: logits, loss, gradients, batch-norm buffers
    model.train()
    xt = x.clone().requires_grad_(True)
    logits_t = model(xt)
    loss_t = F.cross_entropy(logits_t, labels)
    loss_t.backward()
    out["logits_train"] = logits_t.detach().clone()
    out["loss_train"] = loss_t.detach().clone().reshape(())
    out["grad_input"] = xt.grad.detach().clone()
    for name, p in model.named_parameters():
        put_maybe_sampled(out, "grad", "gradsample", name, p.grad)
    for name, b in model.named_buffers():
        out[f"running.{name}"] = b.detach().clone().contiguous()

    # 5. two SGD steps on the same batch (second train-mode forward in between)
    opt = torch.optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM, weight_decay=SGD_WD)
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss2 = F.cross_entropy(model(x.clone()), labels)
    loss2.backward()
    opt.step()
    out["loss_train2"] = loss2.detach().clone().reshape(())
    for name, p in model.named_parameters():
        put_maybe_sampled(out, "sgd", "sgdsample", name, p)

    info = {
        "pred_eval": logits.detach().argmax(1).tolist(),
        "loss_eval": out["loss_eval"].item(), "loss_train": out["loss_train"].item(),
        "loss_train2": out["loss_train2"].item(),
        "full_eps_fraction": (emap >= EPS).float().mean().item(), "z_margin": z_margin,
        "raw_range": [(r.min().item(), r.max().item()) for r in raw],
    }
    return out, info


def metadata(model_name, extra=None):
    meta = {
        "torch": torch.__version__,
        "model": model_name,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "written_by": "scripts/make_golden.py",
    }
    meta.update(extra or {})
    return meta


def write(path, tensors, meta):
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    os.chmod(path, 0o644)
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise SystemExit(f"{path}: {size} bytes exceeds the 2 MB fixture limit")
    return size


def main():
    ap = argparse.ArgumentParser(description="write the golden fixtures for the Swift tests")
    ap.add_argument("--out", type=str, default=os.path.join(HERE, "..", "Tests", "Fixtures"),
                    help="output directory (default: Tests/Fixtures next to this script)")
    ap.add_argument("--list", action="store_true", help="also print every key with its shape and dtype")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    for model_name in ["small-cnn", "resnet18"]:
        tensors, info = golden(model_name)
        path = os.path.join(args.out, f"golden_{model_name}.safetensors")
        size = write(path, tensors, metadata(model_name, {
            "parameters": "formula: s=2*hash(i,t)/2^32-1 [/sqrt(fan_in) | 1+0.1*s | 0.1*s]",
            "input_seed": "0", "sgd": f"lr={SGD_LR} momentum={SGD_MOMENTUM} weight_decay={SGD_WD}",
            "epsmap": f"zscore eps={EPS} eps_low={EPS_LOW}", "sample_rule": f"numel>{FULL_LIMIT}: floor(j*numel/{SAMPLES})",
        }))
        print(f"{os.path.relpath(path)}: {size} bytes, {len(tensors)} tensors; loss_eval {info['loss_eval']:.6f} "
              f"loss_train {info['loss_train']:.6f} loss_train2 {info['loss_train2']:.6f}; pred {info['pred_eval']}; "
              f"full-eps fraction {info['full_eps_fraction']:.4f}; min |z-1| {info['z_margin']:.3g}")
        print("    cam_raw min/max per image: " + ", ".join(f"[{a:.4g}, {b:.4g}]" for a, b in info["raw_range"]))
        if args.list:
            for k, v in tensors.items():
                print(f"    {k:48s} {str(list(v.shape)):18s} {str(v.dtype).replace('torch.', '')}")

    # A PyTorch-initialised SmallCNN, saved as a plain state_dict.
    torch.manual_seed(1)
    model = SmallCNN()
    model.eval()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    path = os.path.join(args.out, "smallcnn_torch_init.safetensors")
    save_file(state, path)
    os.chmod(path, 0o644)
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise SystemExit(f"{path}: {size} bytes exceeds the 2 MB fixture limit")
    torch.manual_seed(2)
    xin = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        logits = model(xin)
    # The formula-parameter SmallCNN above gives all-zero CAMs (its raw map is negative
    # everywhere); this PyTorch-initialised model gives non-trivial ones, so its CAM pipeline
    # (same keys and rules as in the golden files) is stored here as well.
    _, cam_i = gradcam(model, model.act4, xin)
    _, raw_i = gradcam_raw(model, model.act4, xin)
    up_i = upsample_square(cam_i, 28, 28)
    emap_i = zscore_epsmap(up_i, EPS, EPS_LOW)
    path2 = os.path.join(args.out, "smallcnn_torch_init_logits.safetensors")
    size2 = write(path2, {"input": xin, "logits": logits, "cam": cam_i, "cam_raw": raw_i, "cam_up": up_i,
                          "epsmap": emap_i}, metadata("small-cnn", {
        "weights": "smallcnn_torch_init.safetensors (torch.manual_seed(1), default init)", "input_seed": "2",
        "epsmap": f"zscore eps={EPS} eps_low={EPS_LOW}"}))
    print(f"{os.path.relpath(path)}: {size} bytes, {len(state)} tensors")
    print(f"{os.path.relpath(path2)}: {size2} bytes; logits[0] {[round(v, 5) for v in logits[0].tolist()]}; "
          f"cam full-eps fraction per image {[round(v, 4) for v in (emap_i >= EPS).float().mean((1, 2)).tolist()]}")
    if args.list:
        for k, v in state.items():
            print(f"    {k:48s} {str(list(v.shape)):18s} {str(v.dtype).replace('torch.', '')}")


if __name__ == "__main__":
    main()
