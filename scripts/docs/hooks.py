"""mkdocs hooks: pages whose content is generated when the site is built.

A page that holds one of the markers below gets it replaced by generated Markdown:
``<!-- generated: cli -->`` (the CLI reference, from the argparse parser),
``<!-- generated: results -->`` (tables from the suites' results.json) and
``<!-- generated: changelog -->`` (CHANGELOG.md at the repository root).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "src")]

import cli_reference  # noqa: E402
import results_tables  # noqa: E402

GENERATORS = {
    "<!-- generated: cli -->": cli_reference.cli_reference_markdown,
    "<!-- generated: results -->": results_tables.results_markdown,
    "<!-- generated: changelog -->": lambda: (ROOT / "CHANGELOG.md").read_text().split("\n", 1)[1],
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
