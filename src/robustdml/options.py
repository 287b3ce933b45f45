"""Reading option values typed by people: one parser for numbers such as ``8/255`` and for booleans.

Papers quote radii as pixel fractions (eps 8/255, step 3/255), so every place a number can be typed — a
command-line flag, a YAML config, ``--defense-option eps=8/255`` — reads it with :func:`parse_number`, and a
value that is not a number fails naming where it came from.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence


def parse_number(value: Any) -> float:
    """A number from an int/float or a text such as ``0.05``, ``1e-3`` or ``8/255``; ValueError otherwise.

    Booleans are refused: ``True`` is an int in Python, never a radius."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"not a number: {value!r}")
    text = value.strip()
    try:
        numerator, _, denominator = text.partition("/")
        return float(numerator) / float(denominator) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"not a number: {value!r} (write e.g. 0.1 or 8/255)") from None


class OptionError(ValueError):
    """A bad option value; ``owner`` (e.g. the defense), ``field`` and ``value`` say which, so a config
    reader can name it as ``defense_options.<field>``."""

    def __init__(self, owner: str, field: str, value: Any, reason: str, message: Optional[str] = None):
        super().__init__(message or f"{owner}: {field} {reason}")
        self.owner, self.field, self.value, self.reason = owner, field, value, reason


def unknown_options(owner: str, given: Dict[str, Any], valid: Sequence[str]) -> OptionError:
    """The error for options ``owner`` does not take (a typo such as ``attack_rte``), listing those it does."""
    names = sorted(given)
    text = f"{owner}: unknown option(s) {', '.join(names)}; its options: {', '.join(valid) or 'none'}"
    return OptionError(owner, names[0], given[names[0]], text, message=text)


def number(text: str) -> float:
    """argparse type: ``0.05`` or ``8/255`` (every number flag of the CLI reads with it)."""
    import argparse

    try:
        return parse_number(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def whole_number(text: str) -> int:
    """argparse type: an integer, also written ``1e3`` or ``10.0``."""
    import argparse

    value = number(text)
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(value)


def number_list(text: str) -> list:
    """argparse type: ``0.01,0.05,8/255``."""
    return [number(part) for part in text.split(",")]


def number_option(owner: str, field: str, value: Any, kind=float, low: Optional[float] = None,
                  high: Optional[float] = None, above: Optional[float] = None):
    """An option value as a finite number (see :func:`parse_number`); ``kind=int`` requires a whole number;
    ``low``/``high``: inclusive bounds, ``above``: an exclusive lower bound. Errors are :class:`OptionError`."""
    try:
        number = parse_number(value)
    except ValueError:
        raise OptionError(owner, field, value, f"must be a number (e.g. 0.1 or 8/255), got {value!r}") from None
    if not math.isfinite(number):
        raise OptionError(owner, field, value, "must be a finite number")
    if kind is int:
        if number != int(number):
            raise OptionError(owner, field, value, f"must be a whole number, got {value!r}")
        number = int(number)
    if low is not None and number < low:
        raise OptionError(owner, field, value, f"must be >= {low:g}, got {value!r}")
    if high is not None and number > high:
        raise OptionError(owner, field, value, f"must be <= {high:g}, got {value!r}")
    if above is not None and number <= above:
        raise OptionError(owner, field, value, f"must be > {above:g}, got {value!r}")
    return number


def bool_option(owner: str, field: str, value: Any) -> bool:
    """True/False (also the strings true/false/1/0/yes/no/on/off): ``bool("false")`` would silently be True."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise OptionError(owner, field, value, f"must be true or false, got {value!r}")
