"""The reference tutorials' own models, written from ../shared/reference for the tests to compare against.

Kept verbatim in structure (layer for layer) so parameter counts are the tutorials' own, not ours.
"""

from __future__ import annotations

import torch
from torch import nn


class Ref000ChannelAttention(nn.Module):
    def __init__(self, in_channels: int, reduction_ratio: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(in_channels, in_channels // reduction_ratio, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(in_channels // reduction_ratio, in_channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.size()
        w = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * w


class Ref000CNN(nn.Module):
    def __init__(self, se: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU()
        self.ca1 = Ref000ChannelAttention(32) if se else nn.Identity()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU()
        self.ca2 = Ref000ChannelAttention(64) if se else nn.Identity()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu3 = nn.ReLU()
        self.ca3 = Ref000ChannelAttention(128) if se else nn.Identity()
        self.pool3 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(128 * 4 * 4, 512)
        self.dropout = nn.Dropout(p=0.5)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.ca1(self.relu1(self.bn1(self.conv1(x)))))
        x = self.pool2(self.ca2(self.relu2(self.bn2(self.conv2(x)))))
        x = self.pool3(self.ca3(self.relu3(self.bn3(self.conv3(x)))))
        x = x.view(-1, 128 * 4 * 4)
        return self.fc2(self.dropout(self.relu3(self.fc1(x))))


class Ref002ChannelAttention(nn.Module):
    def __init__(self, in_channels: int, reduction_ratio: int = 16) -> None:
        super().__init__()
        self.reduced_channels = max(in_channels // reduction_ratio, 1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.sigmoid = nn.Sigmoid()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, self.reduced_channels),
            nn.ReLU(inplace=True),
            nn.Linear(self.reduced_channels, in_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.size()
        att = self.sigmoid(self.mlp(self.avg_pool(x).view(b, c)) + self.mlp(self.max_pool(x).view(b, c)))
        return x * att.view(b, c, 1, 1)


class Ref003LocalAttention(nn.Module):
    def __init__(self, in_channels: int, reduction_ratio: int = 8) -> None:
        super().__init__()
        self.channel_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, in_channels // reduction_ratio, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels // reduction_ratio, in_channels, kernel_size=1),
            nn.Sigmoid(),
        )
        self.spatial_attention = nn.Sequential(
            nn.Conv2d(in_channels, in_channels // reduction_ratio, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels // reduction_ratio, 1, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.channel_attention(x) * self.spatial_attention(x))


def ref003_vgg16_with_attention(num_classes: int = 1000) -> nn.Module:
    """VGG16WithAttention of ref003: torchvision VGG16 (no BN) + LocalAttention at each block end."""
    layers: list[nn.Module] = []
    c_in = 3
    for block in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
        for c in block:
            layers += [nn.Conv2d(c_in, c, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = c
        layers += [Ref003LocalAttention(c_in), nn.MaxPool2d(kernel_size=2, stride=2)]
    return nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d((7, 7)),
        nn.Flatten(1),
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, num_classes),
    )


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
