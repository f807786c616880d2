"""Batched, on-device data augmentation for uint8 image batches.

Seed 000 augments one PIL image at a time in DataLoader workers (RandomCrop(32, padding=4),
RandomHorizontalFlip, ColorJitter(0.2, 0.2, 0.2, 0.1), RandomRotation(15)). Here each op takes a
whole (N, C, H, W) batch on the training device and draws one random parameter per image from an
explicit `torch.Generator` on that device (and per-batch choices from a CPU one, so the GPU never
waits for the host), so a run is reproducible per seed and no per-image Python runs in the hot loop.
Semantics follow torchvision's: zero fill for crop padding and rotation, nearest interpolation for
rotation, factors drawn uniformly from [1 - x, 1 + x] (hue from [-x, x]).

One documented difference: torchvision's ColorJitter applies its four adjustments in a random
order per image; here the order is drawn once per batch (a per-image order would cost four times
the work for a statistically negligible change).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .names import REF000_AUGMENT

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL and torchvision use


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device).mul_(high - low).add_(low)


def crop_flip(images: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor,
              flip: torch.Tensor | None) -> torch.Tensor:
    """Crop image i at offset (dy[i], dx[i]) from its zero-padded copy, mirrored where flip[i].

    One gather over a flat index does crop and flip together: on CPU this is ~20x faster than
    advanced indexing, and on CUDA it needs no boolean masks (which would synchronise).
    """
    n, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    cols = torch.arange(w, device=dev).expand(n, w)
    if flip is not None:
        cols = torch.where(flip[:, None], w - 1 - cols, cols)
    rows = dy[:, None] + torch.arange(h, device=dev)
    index = (rows[:, :, None] * (w + 2 * padding) + (dx[:, None] + cols)[:, None, :]).view(n, 1, h * w)
    flat = padded.reshape(n, c, -1).gather(2, index.expand(n, c, h * w))
    return flat.view(n, c, h, w)


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """RandomCrop(size, padding) then RandomHorizontalFlip(0.5), for a whole uint8 batch."""
    n, dev = images.shape[0], images.device
    if padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=dev)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=dev)
    else:
        dy = dx = torch.zeros(n, dtype=torch.long, device=dev)
    mirror = torch.rand(n, generator=gen, device=dev) < 0.5 if flip else None
    return crop_flip(images, padding, dy, dx, mirror)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma; single-channel input is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor * x + (1 - factor) * other, clamped to [0, 1]; `factor` is one value per image."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    delta = maxc - minc
    gray = delta == 0
    s = delta / torch.where(gray, torch.ones_like(maxc), maxc)
    d = torch.where(gray, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(gray, torch.zeros_like(h), h)
    return torch.stack(((h / 6.0) % 1.0, s, maxc), 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    # channel n of RGB is v - v*s*clamp(min(k, 4 - k), 0, 1) with k = (n' + 6h) mod 6, n' = 5, 3, 1
    h, s, v = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    k = (torch.tensor((5.0, 3.0, 1.0), device=x.device, dtype=x.dtype).view(1, 3, 1, 1) + 6.0 * h) % 6.0
    return v - v * s * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by `shift` (fraction of the colour wheel, one value per image)."""
    hsv = _rgb_to_hsv(x)
    h = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), 1))


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                 gen: torch.Generator, host_gen: torch.Generator) -> torch.Tensor:
    """torchvision ColorJitter on a float batch in [0, 1]. Saturation and hue skip 1-channel images.

    The order of the four adjustments steers Python, so it is drawn from the CPU generator
    `host_gen`: drawing it on a GPU and reading it back would stall the device every step.
    """
    n, dev = x.shape[0], x.device
    order = torch.randperm(4, generator=host_gen).tolist()
    b = _uniform(n, max(0.0, 1 - brightness), 1 + brightness, gen, dev)
    c = _uniform(n, max(0.0, 1 - contrast), 1 + contrast, gen, dev)
    s = _uniform(n, max(0.0, 1 - saturation), 1 + saturation, gen, dev)
    hshift = _uniform(n, -hue, hue, gen, dev)
    color = x.shape[1] == 3
    for op in order:
        if op == 0 and brightness > 0:
            x = _blend(x, torch.zeros_like(x), b)
        elif op == 1 and contrast > 0:
            x = _blend(x, _grayscale(x).mean(dim=(1, 2, 3), keepdim=True), c)
        elif op == 2 and saturation > 0 and color:
            x = _blend(x, _grayscale(x), s)
        elif op == 3 and hue > 0 and color:
            x = adjust_hue(x, hshift)
    return x


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image i about its centre by degrees[i]; nearest interpolation, zero fill (as torchvision)."""
    angle = degrees.to(x.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack((torch.stack((cos, -sin, zero), 1), torch.stack((sin, cos, zero), 1)), 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def random_rotate(x: torch.Tensor, degrees: float, gen: torch.Generator) -> torch.Tensor:
    """RandomRotation(degrees): an angle from [-degrees, degrees] per image."""
    if degrees <= 0:
        return x
    return rotate(x, _uniform(x.shape[0], -degrees, degrees, gen, x.device))


@dataclass(frozen=True)
class Augment:
    """The training-time pipeline: uint8 batch in, float batch in [0, 1] out (normalise after)."""

    ops: tuple[str, ...] = REF000_AUGMENT
    padding: int = 4
    degrees: float = 15.0
    jitter: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.1)

    def __call__(self, images: torch.Tensor, gen: torch.Generator, host_gen: torch.Generator) -> torch.Tensor:
        """`gen` (on the images' device) draws per-image parameters; `host_gen` (CPU) per-batch choices."""
        # ref000's order: crop and flip (exact, on uint8), then jitter and rotate (on floats)
        padding = self.padding if "crop" in self.ops else 0
        if padding or "flip" in self.ops:
            images = random_crop_flip(images, padding, "flip" in self.ops, gen)
        x = to_unit_float(images)
        if "jitter" in self.ops:
            x = color_jitter(x, *self.jitter, gen, host_gen)
        if "rotate" in self.ops:
            x = random_rotate(x, self.degrees, gen)
        return x


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1] (what ToTensor does)."""
    return images.to(torch.float32).div_(255.0)


class Normalize:
    """(x - mean) / std per channel, with the constants kept on the data's device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device | str) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean).mul_(self.inv_std)
