"""HTML of the report's pages: plain, static, escaped; one small script sorts the video table.

No external resources (fonts, scripts, styles): the report is read from disk, often on a
machine without internet, and a page must not raise console errors there.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CSS = """body{font-family:sans-serif;max-width:1140px;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}td.l{text-align:left}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em}.failed{color:#a00}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:.92em}dl.meta dt{color:#555}
dl.meta dd{margin:0;font-family:monospace}th.sort{cursor:pointer;user-select:none}th.sort:hover{background:#e4e4e4}
th.sort::after{content:" \\2195";color:#999}nav a{margin-right:1.2em}img.fig{display:block;max-width:100%;height:auto}
.small{font-size:.9em;color:#444}.row{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.row img.fig{flex:1 1 360px;max-width:620px;min-width:0}"""

# Sorts the table with class "sortable" by a clicked column, using each cell's data-v.
SORT_JS = """document.querySelectorAll('table.sortable').forEach(function(t){
t.querySelectorAll('th.sort').forEach(function(th,col){th.addEventListener('click',function(){
var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';
rows.sort(function(x,y){var a=x.cells[col].dataset.v,c=y.cells[col].dataset.v,fa=parseFloat(a),fc=parseFloat(c);
var r=(isNaN(fa)||isNaN(fc))?String(a).localeCompare(String(c)):fa-fc;return asc?r:-r;});
rows.forEach(function(r){b.appendChild(r);});});});});"""


@dataclass
class Cell:
    """A table cell: shown text, optional link, sort key (defaults to the text), CSS class."""

    text: str
    href: str | None = None
    sort: Any = None
    cls: str = ""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def cell_html(c: Any) -> str:
    if not isinstance(c, Cell):
        c = Cell(str(c))
    inner = esc(c.text) if c.href is None else f"<a href='{esc(c.href)}'>{esc(c.text)}</a>"
    attrs = f" data-v='{esc(c.text if c.sort is None else c.sort)}'"
    if c.cls:
        attrs += f" class='{esc(c.cls)}'"
    return f"<td{attrs}>{inner}</td>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, sortable: bool = False, tid: str = "") -> str:
    """An HTML table; with ``sortable`` a click on a header sorts by that column."""
    th = "".join(f"<th{' class=sort' if sortable else ''}>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell_html(c) for c in r) + "</tr>" for r in rows)
    attrs = (f" id='{esc(tid)}'" if tid else "") + (" class='sortable'" if sortable else "")
    return f"<table{attrs}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def meta_list(items: Sequence[tuple[str, str]]) -> str:
    return "<dl class='meta'>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


def page(title: str, body: Sequence[str], *, script: bool = False) -> str:
    """A complete HTML document; ``script`` adds the table-sorting script at the end."""
    js = f"<script>{SORT_JS}</script>" if script else ""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + f"\n{js}</body></html>\n"
    )


def img(src: str, alt: str, size: tuple[int, int]) -> str:
    """An image with its pixel size, so the page does not jump while it loads."""
    return f"<img class='fig' src='{esc(src)}' alt='{esc(alt)}' width='{size[0]}' height='{size[1]}'>"
