"""One batch norm per input distribution (AdvProp / MDProp).

Clean images and adversarial (or unadversarial) examples have different feature statistics; mixing
them in one BatchNorm hurts clean accuracy. :func:`convert_to_multi_bn` swaps every BatchNorm of a
model for a :class:`MultiBatchNorm` holding one copy per named distribution; the batch being
processed chooses which copy runs through :func:`use_distribution`. Evaluation uses ``clean`` unless
told otherwise, so the clean statistics are never touched by adversarial batches.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator, Sequence

from torch import nn

CLEAN = "clean"


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
        return self.norms[self.active](x)

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


def set_distribution(model: nn.Module, name: str) -> None:
    for module in multi_bn_modules(model):
        if name not in module.norms:
            raise ValueError(f"unknown distribution {name!r}; this model has {module.distributions}")
        module.active = name


@contextlib.contextmanager
def use_distribution(model: nn.Module, name: str):
    """Route batches through the ``name`` batch norms inside the block; restore the previous choice after."""
    modules = list(multi_bn_modules(model))
    previous = [module.active for module in modules]
    set_distribution(model, name)
    try:
        yield model
    finally:
        for module, active in zip(modules, previous):
            module.active = active
