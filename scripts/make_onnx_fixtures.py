"""Write the ONNX fixtures of the ONNX reader's tests (Tests/Fixtures/onnx).

Each model is exported with PyTorch's TorchScript-based exporter (`dynamo=False`, opset 17)
in evaluation mode, and its logits and input gradient on a fixed batch are written beside it:

- smallcnn.onnx: scripts/torch_models.py's SmallCNN on 16x16 grey images, exported with a
  dynamic batch (MaxPool, Flatten, Gemm; conv + ReLU chains).
- resnet_blocks.onnx: the block structure of ResNet-18 at small widths on 8x8 colour images
  (an identity block and a strided block with a 1x1 shortcut, residual Adds), a batch norm on
  the input (not folded into a convolution by the exporter, so the file keeps a
  BatchNormalization node), and the head written as `avg_pool2d(out, 4).view(out.size(0), -1)`,
  which exports as AveragePool and Shape/Gather/Unsqueeze/Concat/Reshape arithmetic; dynamic batch.
- sigmoid.onnx: a convolution followed by a Sigmoid, an op the engine does not run yet.

For training (`part train --model`), two graphs exported in training mode
(`training=torch.onnx.TrainingMode.TRAINING`, `do_constant_folding=False`): BatchNormalization
nodes keep their running statistics, with `training_mode` 1 and the updated statistics as extra
outputs. Only the graph is written:

- smallcnn_train.onnx: SmallCNN for 16x16 grey images and 3 classes (no batch norm; the training
  tests start it from the weights of the engine's own SmallCNN and compare the two runs).
- resnet_blocks_train.onnx: ResNetBlocks for 8x8 colour images and 3 classes, its batch norms'
  statistics randomised.

NAME.safetensors holds `input` (NCHW, torch.rand under a seed), `logits`, `weights` (the
fixed random w of the loss sum(logits * w)) and `input_gradient` (d loss / d input, NCHW), and
for the two classifiers `cam_activation` and `cam_gradient`: the output of the module whose node
is the default CAM layer of the ONNX model (SmallCNN's act4, the last block) and d loss / d it.

Run: python scripts/make_onnx_fixtures.py [output folder, default Tests/Fixtures/onnx]
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import BasicBlock, SmallCNN  # noqa: E402


class ResNetBlocks(nn.Module):
    """ResNet-18's stem and two of its blocks (widths 8 and 16), with a batch norm on the input."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.linear = nn.Linear(16, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(self.bn_in(x))))
        out = F.avg_pool2d(self.layer1(out), 4)
        return self.linear(out.view(out.size(0), -1))


class SigmoidNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.sigmoid(self.conv(x)).flatten(1))


def randomise_batch_norms(model, generator):
    """Running statistics away from their defaults, so that a reader ignoring them is caught."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=generator) * 0.1)


def export(model, shape, path, dynamic_batch, seed, cam_module=None):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        randomise_batch_norms(model, generator)
    model.eval()
    x = torch.rand(*shape, generator=generator)
    dynamic = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(model, x, path + ".onnx", opset_version=17, input_names=["input"], output_names=["logits"],
                      dynamic_axes=dynamic, dynamo=False)
    x = x.clone().requires_grad_(True)
    seen = []
    if cam_module is not None:
        def keep(module, inputs, output):
            output.retain_grad()
            seen.append(output)
        cam_module.register_forward_hook(keep)
    logits = model(x)
    w = torch.randn(logits.shape, generator=generator)
    (logits * w).sum().backward()
    tensors = {"input": x.detach().contiguous(), "logits": logits.detach().contiguous(), "weights": w.contiguous(),
               "input_gradient": x.grad.contiguous()}
    if seen:
        tensors["cam_activation"] = seen[0].detach().contiguous()
        tensors["cam_gradient"] = seen[0].grad.contiguous()
    save_file(tensors, path + ".safetensors")


def export_training(model, shape, path, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        randomise_batch_norms(model, generator)
    model.train()
    x = torch.rand(*shape, generator=generator)
    torch.onnx.export(model, x, path, opset_version=17, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("Tests", "Fixtures", "onnx")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    small = SmallCNN(num_classes=10, in_channels=1, image_size=16)
    export(small, (4, 1, 16, 16), os.path.join(out, "smallcnn"), dynamic_batch=True, seed=1, cam_module=small.act4)
    torch.manual_seed(2)
    blocks = ResNetBlocks()
    export(blocks, (3, 3, 8, 8), os.path.join(out, "resnet_blocks"), dynamic_batch=True, seed=3,
           cam_module=blocks.layer1[1])
    torch.manual_seed(4)
    export(SigmoidNet(), (1, 1, 8, 8), os.path.join(out, "sigmoid"), dynamic_batch=False, seed=5)
    torch.manual_seed(6)
    export_training(SmallCNN(num_classes=3, in_channels=1, image_size=16), (2, 1, 16, 16),
                    os.path.join(out, "smallcnn_train.onnx"), seed=7)
    torch.manual_seed(8)
    export_training(ResNetBlocks(num_classes=3), (2, 3, 8, 8), os.path.join(out, "resnet_blocks_train.onnx"), seed=9)


if __name__ == "__main__":
    main()
