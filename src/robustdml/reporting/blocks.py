"""The pieces a report is made of, and how they render to Markdown and to one responsive HTML page.

A report is a list of blocks. Text in ``Paragraph``, ``Bullets``, captions and table cells may use
four bits of inline markup, the same in both outputs: ``**bold**``, ``*italic*``, ```code``` and
``[text](relative/link)``. A link's target must be a path or an in-page ``#anchor`` (as :func:`link`
writes them): link syntax with a scheme or another host, e.g. typed into a run label, is shown as typed,
so no ``javascript:`` href can reach the page, in the HTML and the Markdown alike.
Suites add their own sections as lists of these blocks (see ``Suite.sections``).

Tables say which of their columns have a best value (``Column(best="max")``): the renderers bold
it, so no builder has to. Cells are plain strings or :class:`Cell` (a value to compare, an optional
second line such as a confidence interval).
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union


@dataclass
class Heading:
    text: str
    level: int = 2
    anchor: str = ""


@dataclass
class Paragraph:
    text: str
    style: str = ""          # "" | "small" | "warning"


@dataclass
class Bullets:
    items: List[str]


@dataclass
class Box:
    """A framed group of blocks (the key findings; ``style="warning"`` for failed checks)."""
    blocks: List["Block"]
    style: str = ""
    anchor: str = ""


@dataclass
class Cell:
    text: str
    value: Optional[float] = None   # what "best" compares; None: not compared
    note: str = ""                  # a second, smaller line (e.g. the 95% interval)


@dataclass
class Column:
    name: str
    group: str = ""     # consecutive columns with the same group share one header cell above them
    best: str = ""      # "max" | "min": bold the best value of the column ("": none)
    left: bool = False  # left-aligned (text) instead of right-aligned (numbers)


@dataclass
class Table:
    columns: List[Column]
    rows: List[List[Union[str, Cell]]]
    caption: str = ""

    def without_empty_columns(self) -> "Table":
        """The table without columns in which no row has anything ("" or "-")."""
        keep = [i for i in range(len(self.columns))
                if any(_text(row[i]).strip() not in ("", "-") for row in self.rows)]
        return Table([self.columns[i] for i in keep], [[row[i] for i in keep] for row in self.rows], self.caption)

    def best_rows(self, index: int) -> set:
        """Rows holding the best value of column ``index`` (none when it has no direction or < 2 values)."""
        direction = self.columns[index].best
        values = [(row[index].value, r) for r, row in enumerate(self.rows)
                  if isinstance(row[index], Cell) and row[index].value is not None]
        if not direction or len(values) < 2:
            return set()
        best = (max if direction == "max" else min)(value for value, _ in values)
        return {r for value, r in values if abs(value - best) < 1e-12}

    def header_names(self) -> List[str]:
        """Flat column names, ``group: name`` where grouped (Markdown, results.json)."""
        return [f"{c.group}: {c.name}" if c.group else c.name for c in self.columns]

    def text_rows(self) -> List[List[str]]:
        return [[_cell_text(cell) for cell in row] for row in self.rows]


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Grid:
    """Blocks side by side where the page is wide enough (a table and its plot, two plots),
    stacked on a phone."""
    blocks: List["Block"]


@dataclass
class Code:
    text: str


@dataclass
class Details:
    """A collapsible section (closed unless ``open``): long material most readers skip."""
    summary: str
    blocks: List["Block"]
    open: bool = False


@dataclass
class Legend:
    """Colour swatches with their meaning, e.g. the gallery borders. Name the colour in the meaning
    ("green: right class"): the Markdown output has no swatches, and not every reader sees colour."""
    items: List[Tuple[str, str]]   # (CSS colour, meaning)


Block = Union[Heading, Paragraph, Bullets, Box, Table, Figure, Grid, Code, Details, Legend]


def _text(cell: Union[str, Cell]) -> str:
    return cell.text if isinstance(cell, Cell) else str(cell)


def _cell_text(cell: Union[str, Cell]) -> str:
    return f"{cell.text} {cell.note}".strip() if isinstance(cell, Cell) else str(cell)


def relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies below it, else as given."""
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return str(path)


_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def link(text: str, path: Path, base: Path) -> str:
    """Inline markup for a link from a page in ``base`` to ``path`` (spaces, brackets and colons escaped)."""
    return f"[{text}]({quote(relative(path, base))})"


def _safe_href(href: str) -> bool:
    """A path or an in-page anchor, as link() writes them (it escapes ':'): never a scheme (``javascript:``,
    ``data:``) nor another host (``//host``), which only link syntax typed into a label or a path can hold."""
    return ":" not in href and not href.startswith("//")


def _markdown_text(text: str) -> str:
    """``text`` for Markdown: link syntax with an unsafe target, and raw HTML tags, are escaped (shown as typed)."""
    text = _LINK.sub(lambda m: m.group(0) if _safe_href(m.group(2)) else
                     m.group(0).replace("[", "\\[").replace("]", "\\]"), text)
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


# ----------------------------------------------------------------------------------------- Markdown
def to_markdown(blocks: Sequence[Block], base: Path) -> str:
    return "\n".join(_markdown(blocks, Path(base))).rstrip() + "\n"


def _markdown(blocks: Sequence[Block], base: Path) -> List[str]:
    lines: List[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = [f'<a id="{block.anchor}"></a>', ""] if block.anchor else []
            lines += anchor + ["#" * block.level + " " + _markdown_text(block.text), ""]
        elif isinstance(block, Paragraph):
            lines += [("> ⚠ " if block.style == "warning" else "") + _markdown_text(block.text), ""]
        elif isinstance(block, Bullets):
            lines += [f"- {_markdown_text(item)}" for item in block.items] + [""]
        elif isinstance(block, Box):
            inner = _markdown(block.blocks, base)
            lines += [f"> {line}".rstrip() for line in inner[:-1]] + [""]
        elif isinstance(block, Table):
            best = [block.best_rows(c) for c in range(len(block.columns))]
            rows = [[f"**{_text(cell)}** {_note(cell)}".strip() if r in best[c] else _cell_text(cell)
                     for c, cell in enumerate(row)] for r, row in enumerate(block.rows)]
            lines += ["| " + " | ".join(block.header_names()) + " |", "|" + " --- |" * len(block.columns)]
            lines += ["| " + " | ".join(_markdown_text(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
            lines += ["", _markdown_text(block.caption), ""] if block.caption else [""]
        elif isinstance(block, Figure):
            lines += [f"![{_markdown_text(plain(block.caption))}]({relative(block.path, base)})", "",
                      _markdown_text(block.caption), ""]
        elif isinstance(block, Grid):
            lines += _markdown(block.blocks, base)
        elif isinstance(block, Code):
            lines += ["```", block.text, "```", ""]
        elif isinstance(block, Details):
            lines += [f"<details{' open' if block.open else ''}><summary>{html.escape(block.summary)}</summary>", ""]
            lines += _markdown(block.blocks, base) + ["</details>", ""]
        elif isinstance(block, Legend):
            lines += [_markdown_text("; ".join(meaning for _, meaning in block.items)) + ".", ""]
        else:
            raise TypeError(f"not a report block: {block!r}")
    return lines


def _note(cell) -> str:
    return cell.note if isinstance(cell, Cell) else ""


# ----------------------------------------------------------------------------------------- HTML
_CODE = re.compile(r"`([^`]+)`")
_INLINE = [(re.compile(r"\*\*(.+?)\*\*"), r"<b>\1</b>"), (re.compile(r"\*([^*\s][^*]*?)\*"), r"<i>\1</i>")]


def _link_html(match: "re.Match") -> str:
    """Link syntax (of the escaped text) as an <a> when its target is safe, else as typed."""
    if not _safe_href(html.unescape(match.group(2))):
        return match.group(0).replace("[", "&#91;")  # shown as typed; not matched again by the bold/italic rules
    return f"<a href='{match.group(2)}'>{match.group(1)}</a>"


STYLE = """
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1b1b1b;
     max-width:1180px;margin:0 auto;padding:10px 16px 40px}
h1{font-size:1.45em;margin:.2em 0 .3em}
h2{font-size:1.15em;margin:1.5em 0 .4em;padding-bottom:.15em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1em 0 .3em}
p,li,figcaption,summary{overflow-wrap:anywhere}
p{margin:.45em 0}
ul{margin:.3em 0;padding-left:1.3em}
li{margin:.2em 0}
.box{border:1px solid #9bb3c9;background:#f4f8fc;border-radius:6px;padding:.3em 1em .5em;margin:.6em 0}
.box h2{border:0;margin-top:.4em}
.warning{border:1px solid #c62828;background:#fff2f2;border-radius:6px;padding:.4em .8em;margin:.5em 0}
.small{font-size:.88em;color:#333}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0}
table{border-collapse:collapse;font-size:14px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d4d4d4;padding:3px 8px;text-align:right;vertical-align:top;white-space:nowrap}
th{background:#f1f3f5;font-weight:600;white-space:normal;min-width:4.2em}
th.l,td.l{text-align:left}
tr>:first-child{position:sticky;left:0;background:#fff;text-align:left}
tr>th:first-child{background:#f1f3f5}
td .ci{display:block;font-size:.8em;color:#555}
td.wrap{white-space:normal;min-width:14em;overflow-wrap:anywhere}
.caption{font-size:.85em;color:#444;margin:.2em 0 .8em;max-width:60em}
.grid{display:flex;flex-wrap:wrap;gap:6px 22px;align-items:flex-start}
.grid>div{flex:1 1 380px;min-width:0;max-width:100%}
.grid>div.fit{flex:0 1 auto;width:min-content}
.grid>div.grow{max-width:660px}
figure{margin:.5em 0;max-width:660px}
img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85em;color:#444}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:13px;max-width:100%}
code{font-size:.92em}
details{margin:.3em 0;border:1px solid #e2e2e2;border-radius:5px;padding:.2em .7em}
summary{cursor:pointer;font-weight:600}
.legend span{display:inline-block;width:.95em;height:.95em;border:3px solid;margin:0 .3em -.15em .6em}
@media (max-width:600px){body{font-size:14px;padding:6px 10px 30px}.box{padding:.2em .7em .4em}
  ul{padding-left:1.1em}table{font-size:13px}th,td{padding:2px 5px}}
@media print{.scroll{overflow:visible}details{border:0}}
"""


def plain(text: str) -> str:
    """``text`` without its inline markup (for alt texts)."""
    return re.sub(r"\[([^\]]+)\]\([^)\s]+\)", r"\1", text).replace("**", "").replace("*", "").replace("`", "")


def inline_html(text: str) -> str:
    """Escape ``text`` and turn its inline markup into HTML (nothing inside `code` is marked up)."""
    parts = _CODE.split(text)   # even positions: prose, odd: code spans
    out = []
    for index, part in enumerate(parts):
        part = html.escape(part)
        if index % 2:
            out.append(f"<code>{part}</code>")
            continue
        part = _LINK.sub(_link_html, part)
        for pattern, replacement in _INLINE:
            part = pattern.sub(replacement, part)
        out.append(part)
    return "".join(out)


def to_html(blocks: Sequence[Block], base: Path, title: str) -> str:
    head = ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style></head>\n<body>")
    return "\n".join([head, *_html(blocks, Path(base)), "</body></html>"]) + "\n"


def _html(blocks: Sequence[Block], base: Path) -> List[str]:
    parts: List[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = f" id='{html.escape(block.anchor)}'" if block.anchor else ""
            parts.append(f"<h{block.level}{anchor}>{inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            css = f" class='{block.style}'" if block.style else ""
            parts.append(f"<p{css}>{inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{inline_html(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Box):
            anchor = f" id='{html.escape(block.anchor)}'" if block.anchor else ""
            parts += [f"<section class='{block.style or 'box'}'{anchor}>", *_html(block.blocks, base), "</section>"]
        elif isinstance(block, Table):
            parts.append(_table_html(block))
        elif isinstance(block, Figure):
            src = html.escape(relative(block.path, base))
            parts.append(f"<figure><img src='{src}' alt='{html.escape(plain(block.caption))}'>"
                         f"<figcaption>{inline_html(block.caption)}</figcaption></figure>")
        elif isinstance(block, Grid):
            parts.append("<div class='grid'>")
            for child in block.blocks:
                parts += [f"<div class='{'fit' if isinstance(child, Table) else 'grow'}'>", *_html([child], base),
                          "</div>"]
            parts.append("</div>")
        elif isinstance(block, Code):
            parts.append(f"<pre>{html.escape(block.text)}</pre>")
        elif isinstance(block, Details):
            parts += [f"<details{' open' if block.open else ''}><summary>{inline_html(block.summary)}</summary>",
                      *_html(block.blocks, base), "</details>"]
        elif isinstance(block, Legend):
            parts.append("<p class='legend small'>" + "".join(
                f"<span style='border-color:{html.escape(colour)}'></span>{inline_html(meaning)}"
                for colour, meaning in block.items) + "</p>")
        else:
            raise TypeError(f"not a report block: {block!r}")
    return parts


def _table_html(table: Table) -> str:
    columns = table.columns
    grouped = any(c.group for c in columns)
    align = lambda c: " class='l'" if c.left else ""  # noqa: E731
    head: List[str] = []
    if grouped:
        top, sub, i = [], [], 0
        while i < len(columns):
            group = columns[i].group
            span = 1
            while group and i + span < len(columns) and columns[i + span].group == group:
                span += 1
            if group:
                top.append(f"<th colspan='{span}' class='l'>{inline_html(group)}</th>")
                sub += [f"<th>{inline_html(c.name)}</th>" for c in columns[i:i + span]]
            else:
                top.append(f"<th rowspan='2'{align(columns[i])}>{inline_html(columns[i].name)}</th>")
            i += span
        head = ["<tr>" + "".join(top) + "</tr>", "<tr>" + "".join(sub) + "</tr>"]
    else:
        head = ["<tr>" + "".join(f"<th{align(c)}>{inline_html(c.name)}</th>" for c in columns) + "</tr>"]
    best = [table.best_rows(i) for i in range(len(columns))]
    body = []
    for r, row in enumerate(table.rows):
        cells = []
        for c, cell in enumerate(row):
            text = inline_html(_text(cell))
            if r in best[c]:
                text = f"<b>{text}</b>"
            if _note(cell):
                text += f"<span class='ci'>{inline_html(_note(cell))}</span>"
            css = " ".join(name for name, wanted in (("l", columns[c].left),
                                                     ("wrap", columns[c].left and len(_text(cell)) > 40)) if wanted)
            cells.append(f"<td class='{css}'>{text}</td>" if css else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<p class='caption'>{inline_html(table.caption)}</p>" if table.caption else ""
    return "<div class='scroll'><table>" + "".join(head + body) + "</table></div>" + caption
