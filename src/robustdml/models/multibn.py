"""One batch norm per input distribution (AdvProp / MDProp).

Clean images and adversarial (or unadversarial) examples have different feature statistics; mixing
them in one BatchNorm hurts clean accuracy. :func:`convert_to_multi_bn` swaps every BatchNorm of a
model for a :class:`MultiBatchNorm` holding one copy per named distribution; the batch being
processed chooses which copy runs through :func:`use_distribution`. Evaluation uses ``clean`` unless
told otherwise, so the clean statistics are never touched by adversarial batches.

:func:`use_segments` routes one concatenated batch through several copies at once, contiguous block
by block (MDProp's reference code trains on ``[clean; STAX; MTAX]`` in a single forward, its
``MixBatchNorm2d`` in ``mix`` mode): each copy normalises with, and updates its running statistics
from, its own block only, exactly as if each block had gone through the network on its own.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator, Sequence, Tuple, Union

import torch
from torch import nn

CLEAN = "clean"

# What a MultiBatchNorm runs: one distribution's name, or blocks ((name, count), ...) of a concatenated batch.
Route = Union[str, Tuple[Tuple[str, int], ...]]


class MultiBatchNorm(nn.Module):
    """A bank of batch norms with one active at a time; starts as copies of the original BN."""

    def __init__(self, batch_norm: nn.modules.batchnorm._BatchNorm, distributions: Sequence[str]):
        super().__init__()
        if CLEAN not in distributions:
            raise ValueError(f"distributions must include {CLEAN!r}, got {list(distributions)}")
        if len(set(distributions)) != len(distributions):
            raise ValueError(f"distribution names must be unique, got {list(distributions)}")
        self.distributions = list(distributions)
        self.norms = nn.ModuleDict({name: copy.deepcopy(batch_norm) for name in distributions})
        self.active = CLEAN

    def forward(self, x):
        if isinstance(self.active, str):
            return self.norms[self.active](x)
        counts = [count for _, count in self.active]
        if sum(counts) != x.shape[0]:
            raise ValueError(f"the batch has {x.shape[0]} items but the segments {self.active} cover {sum(counts)}")
        blocks = x.split(counts)
        return torch.cat([self.norms[name](block) for (name, _), block in zip(self.active, blocks)])

    def extra_repr(self) -> str:
        return f"distributions={self.distributions}, active={self.active!r}"


def convert_to_multi_bn(model: nn.Module, distributions: Sequence[str]) -> nn.Module:
    """Replace, in place, every BatchNorm of ``model`` by a :class:`MultiBatchNorm`; returns ``model``."""

    def replace(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, MultiBatchNorm(child, distributions))
            else:
                replace(child)

    replace(model)
    if not any(isinstance(m, MultiBatchNorm) for m in model.modules()):
        raise ValueError("the model has no BatchNorm layer to split by distribution")
    return model


def multi_bn_modules(model: nn.Module) -> Iterator[MultiBatchNorm]:
    return (module for module in model.modules() if isinstance(module, MultiBatchNorm))


def _check_name(module: MultiBatchNorm, name: str) -> None:
    if name not in module.norms:
        raise ValueError(f"unknown distribution {name!r}; this model has {module.distributions}")


def set_distribution(model: nn.Module, name: str) -> None:
    for module in multi_bn_modules(model):
        _check_name(module, name)
        module.active = name


@contextlib.contextmanager
def _routed(model: nn.Module, route: Route):
    modules = list(multi_bn_modules(model))
    previous = [module.active for module in modules]
    try:
        for module in modules:
            for name in ([route] if isinstance(route, str) else [name for name, _ in route]):
                _check_name(module, name)
            module.active = route
        yield model
    finally:
        for module, active in zip(modules, previous):
            module.active = active


def use_distribution(model: nn.Module, name: str):
    """Route batches through the ``name`` batch norms inside the block; restore the previous choice after."""
    return _routed(model, name)


def use_segments(model: nn.Module, segments: Sequence[Tuple[str, int]]):
    """Inside the block, a batch is the concatenation of ``count`` items of each ``(name, count)`` in
    order, and each block runs through its own distribution's batch norms (empty blocks are skipped)."""
    route = tuple((name, int(count)) for name, count in segments if int(count) > 0)
    if not route:
        raise ValueError("use_segments needs at least one non-empty segment")
    return _routed(model, route)
