"""Deterministic subsets and the validation split: which images a config draws, keeping class proportions.

Every draw is a function of a generator the caller seeds from `split_seed` alone (the test subset from a
stream of its own), so runs that differ in anything else see the same images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import AblateError

if TYPE_CHECKING:  # the draws import it; split_counts (what plans and refusals need) does not
    import torch

TEST_STREAM = "test-subset"  # keys the test subset's generator (with split_seed), apart from the train draw


def stratified_split(labels: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick `n` indexes keeping class proportions (largest-remainder rounding); return (picked, rest),
    each sorted. Deterministic for a given generator state."""
    import torch

    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * n / len(labels)
    quota = exact.floor().long()
    short = n - int(quota.sum())
    if short:
        quota[torch.argsort(quota.double() - exact, stable=True)[:short]] += 1
    picked, rest = [], []
    for c, q in zip(classes.tolist(), quota.tolist()):
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        picked.append(idx[:q])
        rest.append(idx[q:])
    return torch.cat(picked).sort().values, torch.cat(rest).sort().values


def subset_indexes(labels: torch.Tensor, size: int | None, key: str, gen: torch.Generator) -> torch.Tensor:
    import torch

    n, k = len(labels), int(labels.unique().numel())
    if size is None or size == n:
        return torch.arange(n)
    if not k <= size <= n:
        raise AblateError(f"{key} must be between {k} (one image per class) and {n} (all), got {size}.")
    return stratified_split(labels, size, gen)[0]


def split_counts(drawn: int, val_fraction: float) -> tuple[int, int]:
    """(train, val) image counts when val_fraction of `drawn` training images is held out."""
    n_val = round(drawn * val_fraction)
    if val_fraction > 0 and n_val >= drawn:
        raise AblateError(f"val_fraction {val_fraction} of {drawn} training images leaves {drawn - n_val} to train "
                          "on; use a smaller fraction or more images.")
    if val_fraction > 0 and n_val < 1:
        raise AblateError(f"val_fraction {val_fraction} of {drawn} training images leaves {n_val} for validation; "
                          "use more images or a larger fraction.")
    return drawn - n_val, n_val
