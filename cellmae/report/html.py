"""The report page: a fixed template, escaped values, tables and embedded figures.

A string.Template stands in for Jinja because the page is one fixed layout; every value that
comes from a file goes through :func:`esc` (or :func:`table_html`), so a perturbation called
``<script>`` renders as text.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from string import Template

import pandas as pd


def esc(value: object) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape(str(value), quote=True)


def slug(text: str) -> str:
    """An id-safe anchor name for a heading."""
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(p for p in out.split("-") if p) or "section"


def data_uri(png: bytes, mime: str = "image/png") -> str:
    """A base64 data URI, so the page carries its images and works offline."""
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def figure_html(png: bytes, caption: str, *, alt: str | None = None, width: str | None = None) -> str:
    """An embedded PNG with its caption."""
    style = f' style="max-width:{esc(width)}"' if width else ""
    return (
        f'<figure><img src="{data_uri(png)}" alt="{esc(alt or caption)}"{style}>'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def format_number(value: object, digits: int = 4) -> str:
    """Numbers with a fixed number of significant digits; everything else as text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        if abs(value) >= 10 ** digits:  # large numbers (seconds, counts) read best without exponents
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits - 1}f}"
    return str(value)


def table_html(df: pd.DataFrame, *, caption: str | None = None, highlight_max: Sequence[str] = (),
               max_rows: int = 200) -> str:
    """A plain HTML table; the best value of each column in ``highlight_max`` is bold."""
    if df is None or df.empty:
        return '<p class="empty">No rows.</p>'
    shown = df.head(max_rows)
    best: dict[str, float] = {}
    for col in highlight_max:
        if col in shown.columns:
            vals = pd.to_numeric(shown[col], errors="coerce")
            if vals.notna().any():
                best[col] = float(vals.max())
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    rows = []
    for _, row in shown.iterrows():
        cells = []
        for col in shown.columns:
            val = row[col]
            text = esc(format_number(val.item() if hasattr(val, "item") else val))
            numeric = isinstance(val, int | float) and not isinstance(val, bool)
            is_best = col in best and numeric and not pd.isna(val) and float(val) == best[col]
            cls = ' class="num best"' if is_best else (' class="num"' if numeric else "")
            cells.append(f"<td{cls}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    more = (f'<p class="note">Showing {max_rows} of {len(df)} rows.</p>' if len(df) > max_rows else "")
    return f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>{more}'


def paragraph(text: str, cls: str | None = None) -> str:
    """An escaped paragraph."""
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


@dataclass
class Section:
    """One report section: a title and already-rendered HTML parts."""

    title: str
    parts: list[str] = field(default_factory=list)
    intro: str | None = None

    @property
    def anchor(self) -> str:
        return slug(self.title)

    def render(self) -> str:
        intro = paragraph(self.intro, "intro") if self.intro else ""
        return f'<section id="{self.anchor}"><h2>{esc(self.title)}</h2>{intro}{"".join(self.parts)}</section>'


_PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="cellmae $version">
<title>$title</title>
<link rel="icon" href="data:,">
<style>
:root { --fg:#1d232a; --muted:#5b6570; --line:#d9dee3; --accent:#2a6f97; --bg:#fbfcfd; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { padding:24px 32px 12px; border-bottom:1px solid var(--line); background:#fff; }
header h1 { margin:0 0 4px; font-size:24px; }
header .meta { color:var(--muted); font-size:13px; }
nav { padding:8px 32px; border-bottom:1px solid var(--line); background:#fff; position:sticky; top:0; z-index:1; }
nav a { margin-right:16px; color:var(--accent); text-decoration:none; font-size:13px; white-space:nowrap; }
main { padding:8px 32px 48px; max-width:1400px; }
section { margin-top:28px; }
h2 { font-size:19px; border-bottom:2px solid var(--accent); padding-bottom:4px; }
h3 { font-size:16px; margin:18px 0 6px; }
p.intro, p.note, figcaption, caption { color:var(--muted); font-size:13px; }
p.empty { color:var(--muted); font-style:italic; }
figure { margin:12px 0; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); background:#fff; }
.table-wrap { overflow-x:auto; }
table { border-collapse:collapse; margin:8px 0; font-size:13px; }
caption { text-align:left; padding:4px 0; }
th, td { border:1px solid var(--line); padding:4px 8px; text-align:left; }
th { background:#eef2f5; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
td.best { font-weight:700; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:12px 0; }
.card { background:#fff; border:1px solid var(--line); border-radius:6px; padding:10px 14px; min-width:170px; }
.card .v { font-size:22px; font-weight:600; }
.card .k { color:var(--muted); font-size:12px; }
.row { display:flex; flex-wrap:wrap; gap:16px; align-items:flex-start; }
.row figure img { max-width:560px; }
details { margin:8px 0; font-size:13px; }
summary { cursor:pointer; color:var(--accent); }
.warn { background:#fff6e5; border:1px solid #f0c36d; padding:8px 12px; border-radius:4px; font-size:13px; }
</style>
</head>
<body>
<header><h1>$title</h1><div class="meta">$meta</div></header>
<nav>$nav</nav>
<main>
$body
</main>
</body>
</html>
"""
)


def cards_html(items: Iterable[tuple[str, str]]) -> str:
    """Headline numbers as a row of cards: (label, already formatted value)."""
    cards = "".join(f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>' for k, v in items)
    return f'<div class="cards">{cards}</div>'


def page_html(title: str, meta: str, sections: Sequence[Section], *, version: str) -> str:
    """The whole page: header, a navigation bar to every section, the sections."""
    nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(s.render() for s in sections)
    return _PAGE.substitute(title=esc(title), meta=esc(meta), nav=nav, body=body, version=esc(version))
