"""Write the ONNX fixtures of the ONNX reader's tests (Tests/Fixtures/onnx).

Each model is exported with PyTorch's TorchScript-based exporter (`dynamo=False`, opset 17;
ops.onnx, wrn28_silu.onnx and head.onnx at opset 18, mobilenet_v2.onnx at opset 13, gelu.onnx at opset 20)
in evaluation mode, and its logits and input gradient on a fixed batch are written beside it:

- smallcnn.onnx: scripts/torch_models.py's SmallCNN on 16x16 grey images, exported with a
  dynamic batch (MaxPool, Flatten, Gemm; conv + ReLU chains).
- resnet_blocks.onnx: the block structure of ResNet-18 at small widths on 8x8 colour images
  (an identity block and a strided block with a 1x1 shortcut, residual Adds), a batch norm on
  the input (not folded into a convolution by the exporter, so the file keeps a
  BatchNormalization node), and the head written as `avg_pool2d(out, 4).view(out.size(0), -1)`,
  which exports as AveragePool and Shape/Gather/Unsqueeze/Concat/Reshape arithmetic; dynamic batch.
- activations.onnx: convolutions and linear layers followed by LeakyRelu, Tanh, Elu, Clip
  (ReLU6), Softplus and Sigmoid.
- ops.onnx: a grouped and a dilated convolution, overlapping padded max and average pooling
  (count_include_pad both ways), products, quotients and differences of two activations and
  with constants, Pow by a constant, Concat of images and of features, constant Pad and a
  Transpose that moves nothing.
- The bar's architectures, random weights, 32x32 colour images, at reduced widths so that each
  file stays small (the full-width models are tens of megabytes): resnet18.onnx (ResNet-18,
  widths 4-32 instead of 64-512), preact_resnet18.onnx (PreAct-ResNet-18, the same widths),
  wrn28_silu.onnx (a DeepMind WRN-28 with SiLU, widths 8-32, mean/std inside the model as Sub
  and Div and the bottom-right padding of its strided convolutions as Pad), vgg11_bn.onnx
  (VGG-11 with batch norm, widths divided by 8), mobilenet_v2.onnx (torchvision's MobileNetV2 at
  width 0.25 with a last layer of 128 channels instead of 1280: depthwise convolutions, ReLU6 as
  Clip) and densenet_block.onnx (a DenseNet block of three layers, Concat, and a transition).
- mobilenet_v3.onnx: torchvision's MobileNetV3-Small at width 0.25 (batch norm folded into the
  convolutions by the exporter): HardSwish, and squeeze-and-excitation blocks whose channel
  weights (GlobalAveragePool, 1x1 convolutions, ReLU, HardSigmoid) multiply the image.
- gelu.onnx (opset 20, the first with a Gelu op): convolutions followed by GELU, GELU with the tanh
  approximation and Mish (written as x * tanh(softplus(x))).
- probabilities.onnx and log_probabilities.onnx: GELU as opset 17 writes it (Div, Erf, Add, Mul),
  and a head that ends in softmax or log-softmax, outputs the engine runs (and `part eval` warns
  about) rather than logits.
- head.onnx (opset 18, ReduceMean's axes an input): the global pooling written as
  `x.mean((2, 3))` and as `x.mean((2, 3), keepdim=True).flatten(1)` (ReduceMean), and a
  BatchNorm1d between the two linear layers of the head, its statistics randomised.
- unsupported.onnx: a convolution followed by Cos, an op the engine does not run.
- two_inputs.onnx: a model of two images, and features_input.onnx: a linear layer on [N, 16]
  features, inputs the engine does not take.

For training (`part train --model`), two graphs exported in training mode
(`training=torch.onnx.TrainingMode.TRAINING`, `do_constant_folding=False`): BatchNormalization
nodes keep their running statistics, with `training_mode` 1 and the updated statistics as extra
outputs. Only the graph is written:

- smallcnn_train.onnx: SmallCNN for 16x16 grey images and 3 classes (no batch norm; the training
  tests start it from the weights of the engine's own SmallCNN and compare the two runs).
- resnet_blocks_train.onnx: ResNetBlocks for 8x8 colour images and 3 classes, its batch norms'
  statistics randomised.
- head_train.onnx: HeadNet for 8x8 colour images and 3 classes (a batch norm of features).

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
from torch_models import BasicBlock, DMBlockGroup, PreActBlock, SmallCNN  # noqa: E402


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


class ActivationsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3 if i == 0 else 6, 6, 3, 1, 1) for i in range(4)])
        self.fc1 = nn.Linear(6 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 5)

    def forward(self, x):
        x = F.leaky_relu(self.convs[0](x), 0.1)
        x = torch.tanh(self.convs[1](x))
        x = F.elu(self.convs[2](x), alpha=0.7)
        x = torch.clamp(F.relu6(self.convs[3](x)), max=0.1)
        x = F.softplus(self.fc1(x.flatten(1)))
        return self.fc3(torch.sigmoid(self.fc2(x)))


class OpsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(8, 8, 3, 1, 2, dilation=2)
        self.conv2 = nn.Conv2d(8, 8, 3, 1, 1, groups=4)
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.conv4 = nn.Conv2d(16, 8, 3, 1, 1)
        self.fc = nn.Linear(8 * 3 * 3 + 8, 4)

    def forward(self, x):
        x = F.pad(x, (1, 1, 1, 1))
        x = torch.cat([x, x * 2 - 1], 1)
        a = self.conv1(x)
        b = torch.sigmoid(self.conv2(a)) + 0.5
        c = a * b - a / b
        d = F.max_pool2d(torch.cat([self.conv3(c).pow(2), c], 1), 3, 2, 1)
        e = F.relu(self.conv4(d))
        e = F.avg_pool2d(e, 3, 2, 1, count_include_pad=False) + F.avg_pool2d(e, 3, 2, 1)
        g = F.adaptive_avg_pool2d(e, 1).transpose(2, 3)  # [N, C, 1, 1]: moves nothing
        return self.fc(torch.cat([e.flatten(1), g.flatten(1)], 1))


class NarrowResNet18(nn.Module):
    """scripts/torch_models.py's ResNet18 at widths 4, 8, 16, 32."""

    def __init__(self, num_classes=10, width=4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes, layers = width, []
        for w, stride in [(width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)]:
            layers.append(nn.Sequential(BasicBlock(planes, w, stride), BasicBlock(w, w, 1)))
            planes = w
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class NarrowPreActResNet18(nn.Module):
    """scripts/torch_models.py's PreActResNet18 at widths 4, 8, 16, 32."""

    def __init__(self, num_classes=10, width=4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        planes, layers = width, []
        for w, stride in [(width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)]:
            layers.append(nn.Sequential(PreActBlock(planes, w, stride), PreActBlock(w, w, 1)))
            planes = w
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class NarrowDMWideResNet(nn.Module):
    """scripts/torch_models.py's DMWideResNet, depth 28, at widths 8, 8, 16, 32 (WRN-28-10 has
    16, 160, 320, 640), normalising its input itself."""

    def __init__(self, num_classes=10, mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1))
        ch, n = [8, 8, 16, 32], 4
        self.init_conv = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.layer = nn.Sequential(DMBlockGroup(n, ch[0], ch[1], 1), DMBlockGroup(n, ch[1], ch[2], 2),
                                   DMBlockGroup(n, ch[2], ch[3], 2))
        self.batchnorm = nn.BatchNorm2d(ch[3])
        self.logits = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        out = self.layer(self.init_conv((x - self.mean) / self.std))
        out = F.silu(self.batchnorm(out))
        return self.logits(F.adaptive_avg_pool2d(out, 1).flatten(1))


class VGG11BN(nn.Module):
    """VGG-11 with batch norm for 32x32 images (the CIFAR form: five 2x2 max-pools, one linear
    layer), widths divided by 8."""

    def __init__(self, num_classes=10):
        super().__init__()
        layers, c = [], 3
        for v in [8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def mobilenet_v2(num_classes=10):
    """torchvision's MobileNetV2 at width 0.25, its last 1x1 convolution narrowed to 128 channels."""
    from torchvision.models import mobilenet_v2 as make
    from torchvision.ops.misc import Conv2dNormActivation
    model = make(num_classes=num_classes, width_mult=0.25)
    c = model.features[-1][0].in_channels
    model.features[-1] = Conv2dNormActivation(c, 128, kernel_size=1, activation_layer=nn.ReLU6)
    model.classifier[-1] = nn.Linear(128, num_classes)
    return model


class DenseLayer(nn.Module):
    def __init__(self, c, growth):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, 2 * growth, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(2 * growth), nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        out = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([x, out], 1)


class DenseNetBlock(nn.Module):
    """A DenseNet stem, a dense block of three layers (growth 6), a transition and the head."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.block = nn.Sequential(DenseLayer(8, 6), DenseLayer(14, 6), DenseLayer(20, 6))
        self.transition = nn.Sequential(nn.BatchNorm2d(26), nn.ReLU(), nn.Conv2d(26, 12, 1, bias=False),
                                        nn.AvgPool2d(2, 2))
        self.bn = nn.BatchNorm2d(12)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.transition(self.block(self.conv0(x)))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def mobilenet_v3(num_classes=10):
    """torchvision's MobileNetV3-Small at width 0.25."""
    from torchvision.models import mobilenet_v3_small
    return mobilenet_v3_small(num_classes=num_classes, width_mult=0.25)


class GeluNet(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3), nn.Conv2d(6, 8, 3)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x), approximate="tanh")
        x = F.mish(self.conv3(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ProbabilityNet(nn.Module):
    def __init__(self, log, num_classes=4):
        super().__init__()
        self.log = log
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x):
        logits = self.fc(F.adaptive_avg_pool2d(F.gelu(self.conv(x)), 1).flatten(1))
        return F.log_softmax(logits, 1) if self.log else F.softmax(logits, 1)


class HeadNet(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc1, self.bn, self.fc2 = nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, num_classes)
        with torch.no_grad():
            self.bn.running_mean.copy_(torch.randn(16) * 0.1)
            self.bn.running_var.copy_(torch.rand(16) + 0.5)
            self.bn.weight.copy_(torch.rand(16) + 0.5)
            self.bn.bias.copy_(torch.randn(16) * 0.1)

    def forward(self, x):
        x = F.relu(self.conv(x))
        pooled = x.mean((2, 3)) + x.mean((2, 3), keepdim=True).flatten(1)
        return self.fc2(F.relu(self.bn(self.fc1(pooled))))


class CosNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.cos(self.conv(x)).flatten(1))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x, y):
        return self.fc((x + y).flatten(1))


def randomise_batch_norms(model, generator):
    """Running statistics away from their defaults, so that a reader ignoring them is caught."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=generator) * 0.1)


def export(model, shape, path, dynamic_batch, seed, cam_module=None, randomise=True, opset=17):
    generator = torch.Generator().manual_seed(seed)
    if randomise:
        with torch.no_grad():
            randomise_batch_norms(model, generator)
    model.eval()
    x = torch.rand(*shape, generator=generator)
    dynamic = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(model, x, path + ".onnx", opset_version=opset, input_names=["input"], output_names=["logits"],
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


def export_training(model, shape, path, seed, opset=17):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        randomise_batch_norms(model, generator)
    model.train()
    x = torch.rand(*shape, generator=generator)
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"], output_names=["logits"],
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
    export(CosNet(), (1, 1, 8, 8), os.path.join(out, "unsupported"), dynamic_batch=False, seed=5, randomise=False)
    torch.onnx.export(TwoInputs(), (torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)),
                      os.path.join(out, "two_inputs.onnx"), opset_version=17, dynamo=False)
    torch.onnx.export(nn.Linear(16, 3), torch.rand(1, 16), os.path.join(out, "features_input.onnx"), opset_version=17,
                      dynamo=False)
    torch.manual_seed(6)
    export(ActivationsNet(), (3, 3, 8, 8), os.path.join(out, "activations"), dynamic_batch=True, seed=7)
    torch.manual_seed(8)
    export(OpsNet(), (2, 4, 8, 8), os.path.join(out, "ops"), dynamic_batch=True, seed=9, opset=18)
    bar = [("resnet18", NarrowResNet18), ("preact_resnet18", NarrowPreActResNet18), ("wrn28_silu", NarrowDMWideResNet),
           ("vgg11_bn", VGG11BN), ("mobilenet_v2", mobilenet_v2), ("densenet_block", DenseNetBlock)]
    opsets = {"wrn28_silu": 18, "mobilenet_v2": 13}
    for i, (name, make) in enumerate(bar):
        torch.manual_seed(10 + 2 * i)
        export(make(), (2, 3, 32, 32), os.path.join(out, name), dynamic_batch=True, seed=11 + 2 * i,
               opset=opsets.get(name, 17))
    torch.manual_seed(30)
    export(mobilenet_v3(), (2, 3, 32, 32), os.path.join(out, "mobilenet_v3"), dynamic_batch=True, seed=31)
    torch.manual_seed(32)
    export(GeluNet(), (3, 3, 8, 8), os.path.join(out, "gelu"), dynamic_batch=True, seed=33, opset=20)
    for i, log in enumerate([False, True]):
        torch.manual_seed(34 + 2 * i)
        export(ProbabilityNet(log), (3, 3, 8, 8), os.path.join(out, "log_probabilities" if log else "probabilities"),
               dynamic_batch=True, seed=35 + 2 * i)
    torch.manual_seed(38)
    export(HeadNet(), (3, 3, 8, 8), os.path.join(out, "head"), dynamic_batch=True, seed=39, opset=18)
    torch.manual_seed(6)
    export_training(SmallCNN(num_classes=3, in_channels=1, image_size=16), (2, 1, 16, 16),
                    os.path.join(out, "smallcnn_train.onnx"), seed=7)
    torch.manual_seed(8)
    export_training(ResNetBlocks(num_classes=3), (2, 3, 8, 8), os.path.join(out, "resnet_blocks_train.onnx"), seed=9)
    torch.manual_seed(40)
    export_training(HeadNet(num_classes=3), (2, 3, 8, 8), os.path.join(out, "head_train.onnx"), seed=41, opset=18)


if __name__ == "__main__":
    main()
