"""Mirror of the project's model contract (PyTorch side); keep in step with the Swift model zoo.

PyTorch definitions of the model zoo: the naming contract for checkpoints.

Every model the project ships has the same architecture and the same parameter
names here, so a state_dict saved with safetensors from one of these classes
loads into the project, and the project's checkpoints load back into these.
Tensors in a safetensors file keep PyTorch's layouts: conv weights OIHW,
linear weights [out, in], flatten order C,H,W. Inputs are images in [0, 1]
(no normalisation layer), NCHW on this side.

ResNet18 and WideResNet follow the official PART code (the kuangliu CIFAR
ResNet and the TRADES WideResNet, whose unused `sub_block1` must be tolerated
when loading; RobustBench's `WideResNet` has the same names); PreActResNet18 is
the kuangliu pre-activation ResNet; SmallCNN is the usual 4-conv MNIST-scale
network. DMWideResNet has the module tree and tensor names of RobustBench's
`DMWideResNet` (the DeepMind form of the leaderboard's WRN-28-10 and WRN-70-16,
with SiLU activations): unlike the others it normalises its input itself, with
`mean` and `std` buffers that its state_dict carries.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    """conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc; CAM layer: act4 = relu(conv4)."""

    def __init__(self, num_classes=10, in_channels=1, image_size=28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3)
        self.conv2 = nn.Conv2d(32, 32, 3)
        self.conv3 = nn.Conv2d(32, 64, 3)
        self.conv4 = nn.Conv2d(64, 64, 3)
        side = ((image_size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(64 * side * side, 200)
        self.fc2 = nn.Linear(200, 200)
        self.fc3 = nn.Linear(200, num_classes)
        self.act4 = nn.ReLU()  # no parameters; named so that CAM tools can hook relu(conv4)

    def features(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = F.max_pool2d(x, 2)
        return self.act4(self.conv4(F.relu(self.conv3(x))))

    def forward(self, x):
        x = F.max_pool2d(self.features(x), 2).flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18 (3x3 stem, no max-pool); CAM layer: layer4."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        planes, layers = 64, []
        for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers.append(nn.Sequential(BasicBlock(planes, width, stride), BasicBlock(width, width, 1)))
            planes = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class PreActBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18; CAM layer: layer4 (before the final bn/relu)."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        planes, layers = 64, []
        for width, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers.append(nn.Sequential(PreActBlock(planes, width, stride), PreActBlock(width, width, 1)))
            planes = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class WideBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.convShortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return out + (x if self.equal else self.convShortcut(o))


class NetworkBlock(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[WideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen (34-10 in the paper); CAM layer: block3."""

    def __init__(self, depth=34, num_classes=10, widen_factor=10, in_channels=3):
        super().__init__()
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


class DMBlock(nn.Module):
    """Pre-activation block of the DeepMind WideResNet: act(bn) -> conv -> act(bn) -> conv, plus
    the identity or a 1x1 convolution of the activated input. A strided first convolution is
    padded on the bottom and right edges only (TensorFlow's SAME)."""

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes)
        self.relu_0 = nn.SiLU()
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride, 0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes)
        self.relu_1 = nn.SiLU()
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.has_shortcut = in_planes != out_planes
        self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False) if self.has_shortcut else None
        self.pad = (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)

    def forward(self, x):
        o = self.relu_0(self.batchnorm_0(x))
        out = self.conv_0(F.pad(o, self.pad))
        out = self.conv_1(self.relu_1(self.batchnorm_1(out)))
        return out + (self.shortcut(o) if self.has_shortcut else x)


class DMBlockGroup(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride):
        super().__init__()
        self.block = nn.Sequential(*[DMBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.block(x)


class DMWideResNet(nn.Module):
    """DeepMind WRN-depth-width with SiLU (RobustBench's DMWideResNet with activation_fn=Swish,
    padding=0); CAM layer: layer.2 (before the final batchnorm/SiLU)."""

    def __init__(self, num_classes=10, depth=28, width=10, mean=CIFAR10_MEAN, std=CIFAR10_STD, num_input_channels=3):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(num_input_channels, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(num_input_channels, 1, 1))
        ch = [16, 16 * width, 32 * width, 64 * width]
        n = (depth - 4) // 6
        self.init_conv = nn.Conv2d(num_input_channels, ch[0], 3, 1, 1, bias=False)
        self.layer = nn.Sequential(DMBlockGroup(n, ch[0], ch[1], 1), DMBlockGroup(n, ch[1], ch[2], 2),
                                   DMBlockGroup(n, ch[2], ch[3], 2))
        self.batchnorm = nn.BatchNorm2d(ch[3])
        self.relu = nn.SiLU()
        self.logits = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        out = self.layer(self.init_conv((x - self.mean) / self.std))
        out = self.relu(self.batchnorm(out))
        return self.logits(F.adaptive_avg_pool2d(out, 1).flatten(1))


ZOO = {"small-cnn": SmallCNN, "resnet18": ResNet18, "preact-resnet18": PreActResNet18, "wrn-34-10": WideResNet,
       "dm-wrn-28-10": DMWideResNet}
CAM_LAYER = {"small-cnn": "act4", "resnet18": "layer4", "preact-resnet18": "layer4", "wrn-34-10": "block3",
             "dm-wrn-28-10": "layer.2"}
