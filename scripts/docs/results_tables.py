"""Results tables generated from the benchmark suites' ``results.json`` files (never typed by hand).

Where the numbers come from, in order: ``docs/results/*.json`` (copies committed by ``make demo`` and
by whoever publishes a suite's results) and ``reports/*/results.json`` (what ``robustdml benchmark``
wrote in this checkout). A suite with neither says "not yet run".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("defenses", "robrank-fashion", "mdprop", "natural-robustness", "attack-rate", "perturbation-target",
          "synthetic")


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def find_results(root: Path = ROOT) -> Dict[str, Path]:
    """name -> results.json, committed copies first, then this checkout's reports."""
    found: Dict[str, Path] = {}
    for path in sorted((root / "reports").glob("*/results.json")):
        found[path.parent.name] = path
    for path in sorted((root / "docs" / "results").glob("*.json")):
        found[path.stem] = path
    return found


def table_markdown(path: Path, columns: Optional[List[int]] = None) -> List[str]:
    """The main table of one results.json (its ``header`` and ``rows``), as Markdown lines."""
    try:
        data = json.loads(path.read_text())
        header, rows = data["header"], data["rows"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [f"*{path.name} could not be read as a suite's results ({type(error).__name__}: {error}).*"]
    keep = columns if columns is not None else list(range(len(header)))
    out = ["| " + " | ".join(_cell(header[i]) for i in keep) + " |", "|" + " --- |" * len(keep)]
    out += ["| " + " | ".join(_cell(row[i]) for i in keep) + " |" for row in rows]
    return out


def _protocol_line(path: Path) -> str:
    try:
        spec = json.loads(path.read_text()).get("protocol", {}).get("spec", {})
    except (OSError, ValueError, AttributeError):
        return ""
    if not spec:
        return ""
    eps = ", ".join(f"{value:g}" for value in spec.get("eps", []))
    return (f"Attack: `{','.join(spec.get('attacks', []))}`, {spec.get('engine')} {spec.get('steps')} steps x "
            f"{spec.get('restarts')} restart(s), eps {eps}, {spec.get('max_queries') or 'all'} attacked queries.")


def results_markdown(root: Path = ROOT) -> str:
    found = find_results(root)
    out = ["The tables on this page are generated from each suite's `results.json` when the documentation is "
           "built: from `docs/results/NAME.json` (copies published with the repository) or, failing that, from "
           "`reports/NAME/results.json` in the checkout that built the docs. Intervals are 95% "
           "Clopper-Pearson intervals over the attacked queries.", ""]
    names = list(dict.fromkeys([*(name for name in found if name not in SUITES), *SUITES]))
    for name in names:
        out += [f"## {name}", ""]
        path = found.get(name)
        if path is None:
            out += [f"Not yet run here: `robustdml benchmark {name}` writes `reports/{name}/results.json`.", ""]
            continue
        line = _protocol_line(path)
        out += [*([line, ""] if line else []), *table_markdown(path), "",
                f"Source: `{path.relative_to(root)}`.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(results_markdown())
