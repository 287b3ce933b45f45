"""The command-line flags of an attack specification, built from metadata rather than written out.

Each :class:`~robustdml.robustness.spec.AttackSpec` field made with ``setting(...)`` and each unit option
made with ``option(...)`` (:mod:`robustdml.attacks.units`) carries its flag, default, help and check; this
module turns them into argparse flags and back into a spec. A unit option's flag is shared by every unit
that has an option with that flag (``--candidates`` sets the margin and the targeted member alike) and is
an error when no attack of the spec (or of its ERS profile) has it, so a typed option never silently does
nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

from robustdml.attacks import members as M
from robustdml.options import number, number_list, whole_number
from robustdml.robustness import spec as S
from robustdml.robustness.unit_flags import flag_options, unit_flags


def _argument(parser, flag: str, item: dataclasses.Field, default: Any, suffix: str = "") -> None:
    kind = item.metadata.get("kind") or ("int" if isinstance(item.default, int) else
                                         "choice" if hasattr(item.metadata["check"], "choices") else "number")
    shown = f" (default {default})" if default is not None else ""
    if kind == "off":
        parser.add_argument(flag, action="store_true", help=item.metadata["help"])
        return
    extra: Dict[str, Any] = {"choices": item.metadata["check"].choices} if kind == "choice" else \
        {"type": whole_number if kind == "int" else number}
    parser.add_argument(flag, default=None, help=item.metadata["help"] + shown + suffix, **extra)


def add_spec_flags(parser, max_queries: int) -> None:
    """Every flag of an attack specification; ``max_queries`` is this command's CPU-sized default."""
    parser.add_argument("--attacks", default=S.AUTO,
                        help=f"comma-separated (default {S.AUTO}: the ensemble "
                             f"{', '.join(cls.name for cls in M.AUTO)} with early stop); any of: "
                             f"{', '.join(S.attack_names())}")
    parser.add_argument("--eps", type=number_list, default=list(S.DEFAULT_EPS),
                        help=f"comma-separated radii in pixel units, 8/255 ok (default {','.join(map(str, S.DEFAULT_EPS))})")
    for item in dataclasses.fields(S.AttackSpec):
        if item.metadata.get("flag"):
            default = max_queries if item.name == "max_queries" else item.default
            _argument(parser, item.metadata["flag"], item, default)
    for flag, (item, owners) in sorted(unit_flags().items()):
        _argument(parser, flag, item, item.default, suffix=f"; option of {', '.join(u for u, _ in owners)}")
    parser.add_argument("--ers", action="store_true", help="also run the published ERS profile (PGD 32 x 3/255 from "
                                                           "the clean image at 8/255 or 77/255)")
    parser.add_argument("--ers-steps", type=whole_number, help="override the ERS profile's steps (no longer the "
                                                               "published ERS)")
    parser.add_argument("--ers-eps", type=number, help="override the ERS profile's eps (no longer the published ERS)")


def _given(args, flag: str) -> Any:
    return getattr(args, flag.lstrip("-").replace("-", "_"), None)


def spec_from_args(args, image_size: int, max_queries: int) -> S.AttackSpec:
    """The spec the flags in ``args`` describe (``image_size`` picks the ERS profile's eps)."""
    values: Dict[str, Any] = {"attacks": tuple(a.strip() for a in args.attacks.split(",") if a.strip()),
                              "eps": tuple(args.eps)}
    for item in dataclasses.fields(S.AttackSpec):
        flag = item.metadata.get("flag")
        if not flag:
            continue
        given = _given(args, flag)
        if item.metadata["kind"] == "off":
            values[item.name] = not given
        elif item.name == "max_queries":
            values[item.name] = (max_queries if given is None else given) or None
        elif given is not None:
            values[item.name] = given
    spec = S.AttackSpec(**values)
    if args.ers:
        spec = dataclasses.replace(spec, ers=S.ers_spec(image_size, steps=args.ers_steps, eps=args.ers_eps))
    given = {flag: _given(args, flag) for flag in unit_flags() if _given(args, flag) is not None}
    return flag_options(spec, given, source="flag")
