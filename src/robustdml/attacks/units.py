"""What an attack unit (a retrieval attack or an ensemble member) owns: its options and its revision.

A unit declares its options as a frozen dataclass of :func:`option` fields. The field's metadata is the one
place that holds the option's default, its command-line flag, its help and its check: the attack
specification validates with it, the CLI builds its flags from it, and the cache key hashes the options
that differ from their defaults, together with the unit's ``revision`` (raised whenever what the unit
computes changes, a default of one of its options included), so that an old result is never reused for a
new computation and a new option left at its default changes nothing.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Sequence, Tuple


def positive_int(value: Any) -> Optional[str]:
    """None when ``value`` is an integer >= 1, else what is wrong with it."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return None
    return f"must be an integer >= 1, got {value!r}"


def one_of(choices: Sequence[str]) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    check.choices = tuple(choices)  # type: ignore[attr-defined]
    return check


def option(default: Any, *, help: str, flag: Optional[str] = None,
           check: Callable[[Any], Optional[str]] = positive_int):
    """A unit option: ``default``, its ``--flag`` (None: not on the command line), ``help`` and ``check``
    (returns what is wrong with a value, or None)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "check": check})


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every unit's options: each field is checked by its own ``check`` on construction."""

    def __post_init__(self):
        for item in dataclasses.fields(self):
            problem = item.metadata["check"](getattr(self, item.name))
            if problem:
                raise ValueError(f"option {item.name} {problem}")

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        return {item.name: item.default for item in dataclasses.fields(cls)}

    @classmethod
    def build(cls, owner: str, values: Mapping[str, Any]) -> "Options":
        """``cls(**values)`` with errors that name the unit and list its options."""
        unknown = sorted(set(values) - set(cls.defaults()))
        if unknown:
            valid = ", ".join(f"{k} (default {v!r})" for k, v in cls.defaults().items()) or "none"
            raise ValueError(f"{owner} has no option(s) {', '.join(unknown)}; its options: {valid}")
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{owner}: {error}") from None

    def changed(self) -> Dict[str, Any]:
        """The options that differ from their defaults (what the cache key and descriptions name)."""
        return {name: value for name, value in dataclasses.asdict(self).items() if value != self.defaults()[name]}


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """A unit without options."""


class Unit:
    """A named attack unit: ``name`` (its registry name), ``revision`` and ``Options``; an instance holds
    its options (``self.options``)."""

    name: ClassVar[str] = ""
    revision: ClassVar[int] = 1
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Optional[Options] = None):
        self.options = self.Options() if options is None else options

    @classmethod
    def with_options(cls, values: Mapping[str, Any]) -> "Unit":
        return cls(cls.Options.build(cls.name, values))

    def fingerprint(self) -> Tuple[str, int, Tuple[Tuple[str, Any], ...]]:
        """What the cache key hashes of this unit: name, revision and its non-default options."""
        return self.name, self.revision, tuple(sorted(self.options.changed().items()))

    def note(self) -> Optional[str]:
        """What a one-line description of an evaluation says about this unit (None: nothing)."""
        return None

    def __repr__(self) -> str:
        changed = ", ".join(f"{k}={v!r}" for k, v in self.options.changed().items())
        return f"{self.name}({changed})"


def registered(registry):
    """Class decorator: add the unit to ``registry`` under its ``name`` (the one registry line of a unit)."""

    def add(cls):
        registry.add(cls.name, cls)
        return cls

    return add
