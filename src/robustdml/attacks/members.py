"""The members of the default ensemble (``auto``): each is a class with its options, its revision and the
objective of each of its runs. ``AUTO`` lists them in the order they run; a new member is one class
registered with ``@registered(MEMBERS)`` (in a module imported by the registry's users) and, to join the
default ensemble, one entry in ``AUTO`` — which changes the cache key of ``auto`` by itself.

- ``margin``: APGD on the ranking margin min_p d(q', p) - min_n d(q', n) between the query's
  ``candidates`` nearest positives and nearest negatives in the clean gallery (the retrieval
  analogue of the CW/DLR margin);
- ``targeted``: the same margin towards the ``candidates`` nearest items of one other class, for
  each of the ``targets`` classes whose nearest item is closest (APGD-T's target classes);
- ``nn``: the nearest-neighbour attack of "Adversarial Deep Metric Learning" (Panum et al.,
  Algorithm 1): push the query away from its nearest (same-class) neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple, Type

import torch

from robustdml.attacks import objectives as O
from robustdml.attacks.units import Options, Unit, option, registered
from robustdml.registry import Registry

MEMBERS: Registry = Registry("ensemble member")
MARGIN_CANDIDATES = 16


@dataclass(frozen=True)
class Candidates:
    """Gallery indices each query's objectives look at, from its clean embedding (own copy excluded).

    ``nearest`` (B,); ``positives`` / ``negatives`` (B, K): the K nearest same-class / other-class
    items (a class with fewer than K other members repeats its nearest one); ``targets`` (B, T, K):
    the K nearest items of each of the T other classes whose nearest item is closest.
    """

    nearest: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    targets: torch.Tensor


@dataclass(frozen=True, eq=False)
class Run:
    """One engine run of a member: its restart index and, for a targeted member, the target class rank."""

    member: "Member"
    restart: int
    target: int = -1

    @property
    def name(self) -> str:
        """e.g. ``margin#1``, ``targeted@2#1`` (target class rank 2, restart 1)."""
        return self.member.name + (f"@{self.target + 1}" if self.target >= 0 else "") + f"#{self.restart + 1}"

    def objective(self, gallery: torch.Tensor, candidates: Candidates) -> O.Objective:
        return self.member.objective(self, gallery, candidates)


class Member(Unit):
    """An ensemble member: ``runs`` it makes per evaluation, the ``objective`` of each run, and the candidate
    sets it needs (``candidates`` nearest positives/negatives, ``targets`` other classes)."""

    candidates: int = 1
    targets: int = 1

    def runs(self, restarts: int, classes: int, first_restart: int = 0) -> List[Run]:
        """One run per restart, numbered from ``first_restart`` (fresh random starts for later checks)."""
        return [Run(self, restart) for restart in range(first_restart, first_restart + restarts)]

    def objective(self, run: Run, gallery: torch.Tensor, candidates: Candidates) -> O.Objective:
        raise NotImplementedError


@dataclass(frozen=True)
class MarginOptions(Options):
    candidates: int = option(MARGIN_CANDIDATES, flag="--candidates",
                             help="nearest positives/negatives in the margin objectives")


@dataclass(frozen=True)
class TargetedOptions(MarginOptions):
    targets: int = option(3, flag="--targets", help="other classes the targeted member aims at")


@registered(MEMBERS)
class Margin(Member):
    name = "margin"
    Options = MarginOptions

    @property
    def candidates(self) -> int:  # type: ignore[override]
        return self.options.candidates

    def objective(self, run: Run, gallery: torch.Tensor, candidates: Candidates) -> O.Objective:
        return O.ranking_margin(gallery[candidates.positives], gallery[candidates.negatives])


@registered(MEMBERS)
class Targeted(Margin):
    name = "targeted"
    Options = TargetedOptions

    @property
    def targets(self) -> int:  # type: ignore[override]
        return self.options.targets

    def note(self) -> str:
        return f"{self.options.targets} target classes"

    def runs(self, restarts: int, classes: int, first_restart: int = 0) -> List[Run]:
        """``restarts`` runs towards each of the nearest ``targets`` other classes (at most classes - 1)."""
        count = max(1, min(self.options.targets, classes - 1))
        return [Run(self, restart, target) for restart in range(first_restart, first_restart + restarts)
                for target in range(count)]

    def objective(self, run: Run, gallery: torch.Tensor, candidates: Candidates) -> O.Objective:
        return O.ranking_margin(gallery[candidates.positives], gallery[candidates.targets[:, run.target]])


@registered(MEMBERS)
class NearestNeighbour(Member):
    name = "nn"

    def objective(self, run: Run, gallery: torch.Tensor, candidates: Candidates) -> O.Objective:
        return O.push_from(gallery[candidates.nearest])


# The default ensemble, in the order its members run (each attacks only what the previous ones left).
AUTO: Tuple[Type[Member], ...] = (Margin, Targeted, NearestNeighbour)
