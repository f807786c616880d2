"""Check an arm that uses code from outside ablate before anything trains: it builds, runs, keeps shapes.

A plugin attention module must keep its input's shape at every site it is placed at (a module that
changes it would break the backbone further on, or worse, silently change what the model is); a
plugin backbone must put inputs of the shapes its `sites` declare at those sites, and produce one
logit per class. Each failure is an AblateError naming the module, the arm and the site.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..attention import ATTENTION
from ..errors import AblateError
from .build import build_model


class _SiteError(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path, self.problem = path, problem


def _shape(t: Any) -> str:
    return "x".join(map(str, t.shape[1:])) if isinstance(t, torch.Tensor) else type(t).__name__


def check_arm(kwargs: Mapping[str, Any], arm_id: str, *, num_classes: int, in_channels: int, input_size: int) -> None:
    """Build the arm (init seed 0) and run one forward pass on two zero images in eval mode, checking
    every inserted module against its site. Raises AblateError on the first problem."""
    model = build_model(**kwargs, num_classes=num_classes, in_channels=in_channels, input_size=input_size, init_seed=0)
    attention = kwargs.get("attention", "none")
    source = ATTENTION.sources().get(attention)
    module = f"attention {attention!r}" + (f" ({source.target})" if source else "")
    declared = {i.path: (i.channels, i.height, i.width) for i in model.insertions}
    inside: list[str] = []  # the site whose module is running, so an exception in it can be named

    def hook(path: str) -> Any:
        def check(_module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            inside.clear()
            x = inputs[0] if inputs else None
            if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != declared[path]:
                expected = "x".join(map(str, declared[path]))
                raise _SiteError(path, f"the backbone feeds it {_shape(x)} where its sites declare {expected}")
            if not isinstance(output, torch.Tensor) or output.shape != x.shape:
                raise _SiteError(path, f"{module} changes the shape from {_shape(x)} to "
                                       f"{_shape(output)}; an attention module must keep its input shape")
        return check

    handles = [model.get_submodule(p).register_forward_hook(hook(p)) for p in declared]
    handles += [model.get_submodule(p).register_forward_pre_hook(lambda _m, _i, p=p: inside.append(p))
                for p in declared]
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.zeros(2, in_channels, input_size, input_size))
    except _SiteError as err:
        raise AblateError(f"arm {arm_id}, site {err.path}: {err.problem}.") from None
    except Exception as err:  # noqa: BLE001  (the user's code raised inside the forward pass)
        site = f", site {inside[-1]} ({module})" if inside else ""
        raise AblateError(f"arm {arm_id}{site}: the forward pass on a {in_channels}x{input_size}x{input_size} input "
                          f"fails: {type(err).__name__}: {err}.") from None
    finally:
        for h in handles:
            h.remove()
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, num_classes):
        raise AblateError(f"arm {arm_id}: the model outputs {_shape(logits)} per image, not {num_classes} logits.")
