"""Name -> class/function registries: one dictionary each, no string parsing, no magic files.

Every user-facing choice (dataset, model, loss, miner, attack engine, objective, defense) is looked
up here, so an unknown name always fails the same way: naming the field, the bad value and the
valid choices.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """Raised when a registry lookup fails; the message lists the valid names."""


class Registry(Generic[T]):
    """A named dictionary of builders with a decorator to fill it and helpful lookup errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def remove(self, name: str) -> T:
        """Take ``name`` out again (a test's toy entry, for instance); returns what it held."""
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def builder_options(builder: Callable, exclude: Iterable[str] = ()) -> Dict[str, Any]:
    """The keyword options ``builder`` takes (its parameters but ``exclude``), with their defaults."""
    skip = set(exclude)
    return {key: p.default for key, p in inspect.signature(builder).parameters.items() if key not in skip}


def check_known_options(kind: str, name: str, given: Iterable[str], valid: Dict[str, Any]) -> None:
    """An option a builder does not take (a typo such as ``marign``) is an error naming the ones it does."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"{kind} {name!r} has no option(s) {', '.join(unknown)}; its options: "
                         + (", ".join(f"{k} (default {v!r})" for k, v in valid.items()) or "none"))
