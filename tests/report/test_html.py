"""Page helpers: number formatting, escaping, tables."""

from __future__ import annotations

import math

import pandas as pd

from cellmae.report.html import Section, esc, format_number, page_html, slug, table_html


def test_format_number() -> None:
    assert format_number(1284.8, 3) == "1,285"
    assert format_number(0.4299, 3) == "0.43"
    assert format_number(0.00012, 3) == "1.20e-04"
    assert format_number(math.nan) == "–"
    assert format_number(12_000) == "12,000"
    assert format_number(True) == "yes"
    assert format_number("CORUM") == "CORUM"


def test_table_marks_column_maxima_and_escapes() -> None:
    df = pd.DataFrame({"method": ["<b>a</b>", "b"], "CORUM": [0.2, 0.5], "n": [3, 1]})
    html = table_html(df, highlight_max=["CORUM"])
    assert '<td class="num best">0.500</td>' in html
    assert '<td class="num">0.200</td>' in html
    assert "&lt;b&gt;a&lt;/b&gt;" in html and "<b>a</b>" not in html
    assert table_html(pd.DataFrame()) == '<p class="empty">No rows.</p>'


def test_page_links_every_section() -> None:
    secs = [Section("Relationship recall", ["<p>x</p>"]), Section("Table of numbers")]
    page = page_html('a "title"', "meta & more", secs, version="0")
    assert '<a href="#relationship-recall">' in page and '<section id="relationship-recall">' in page
    assert "<title>a &quot;title&quot;</title>" in page and "meta &amp; more" in page
    assert slug("  Best-recalled complexes!") == "best-recalled-complexes"
    assert esc("<'>") == "&lt;&#x27;&gt;"
