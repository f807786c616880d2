"""Named random streams: one seed, many independent generators that never shift each other.

A run's seed feeds several consumers (each layer's initial weights, the test subset, ...). Drawing
them in sequence from one generator would make each depend on what was drawn before it: inserting
an attention module would move every later layer's weights. Instead each consumer gets its own
seed, derived from the base seed and a key naming it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def derive_seed(base: int, *key: str) -> int:
    """A 63-bit seed from `base` and a key (e.g. a stream name and a module path): the same key gets
    the same seed whatever else exists, and different keys get unrelated seeds."""
    digest = hashlib.sha256("\x1f".join((str(base), *key)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block on torch's CPU generator seeded with `seed`; the caller's generator state is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield
