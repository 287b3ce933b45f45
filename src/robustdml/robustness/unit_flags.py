"""Unit options by command-line flag: every flag some attack unit's option declares (``option(flag=...)``), the
units it sets, and a spec with the values of such flags applied. Shared by the CLI's flags and by reading the
flat option fields of version-1 stored specs (``targets``, ``gtt_k``...: each is a flag's name)."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Tuple

from robustdml.attacks import members as M
from robustdml.attacks.retrieval import RETRIEVAL_ATTACKS


def _unit_classes() -> List[type]:
    return [M.MEMBERS.get(name) for name in M.MEMBERS.names()] + \
        [RETRIEVAL_ATTACKS.get(name) for name in RETRIEVAL_ATTACKS.names()]


def unit_flags() -> Dict[str, Tuple[dataclasses.Field, List[Tuple[str, str]]]]:
    """Each unit-option flag: its first field (default, help, check) and every (unit, option) it sets."""
    flags: Dict[str, Tuple[dataclasses.Field, List[Tuple[str, str]]]] = {}
    for cls in _unit_classes():
        for item in dataclasses.fields(cls.Options):
            flag = item.metadata.get("flag")
            if flag:
                flags.setdefault(flag, (item, []))[1].append((cls.name, item.name))
    return flags


def flag_options(spec, values: Mapping[str, Any], source: str = "flag", strict: bool = True):
    """``spec`` (and its ERS profile) with each unit-option flag's value set on every unit it runs that has
    that flag. ``strict``: a flag that no unit run has is an error (otherwise it is ignored, as for the
    option fields of older stored specs, which every spec carried)."""
    flags = unit_flags()
    unknown = sorted(set(values) - set(flags))
    if unknown:
        raise ValueError(f"unknown {source}(s) {', '.join(unknown)}; valid: {', '.join(sorted(flags))}")

    def apply(target) -> Tuple[Any, set]:
        options = target.option_values()
        used = set()
        for flag, value in values.items():
            for unit, name in flags[flag][1]:
                if unit in target.unit_names:
                    options.setdefault(unit, {})[name] = value
                    used.add(flag)
        return dataclasses.replace(target, options=options, ers=target.ers), used

    ers, used_by_ers = apply(spec.ers) if spec.ers is not None else (None, set())
    spec, used = apply(dataclasses.replace(spec, ers=None))
    spec = dataclasses.replace(spec, ers=ers)
    unused = sorted(set(values) - used - used_by_ers)
    if strict and unused:
        owners = {flag: ", ".join(unit for unit, _ in flags[flag][1]) for flag in unused}
        raise ValueError("; ".join(f"{flag} is an option of {owners[flag]}, which this evaluation does not run"
                                   for flag in unused) + f" (it runs {', '.join(spec.unit_names)}"
                         + (f"; ERS: {', '.join(ers.unit_names)}" if ers else "") + ")")
    return spec
