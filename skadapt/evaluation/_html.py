"""Writing the HTML reports: one offline file per page, one stylesheet, no JavaScript.

Tables are rendered here rather than by ``DataFrame.to_html``: the index becomes an ordinary first
column (pandas puts the index's name on a row of its own under the header), numbers are formatted
and right-aligned, and every table sits in a box that scrolls sideways instead of widening the page.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from skadapt.evaluation._style import STYLE


class Raw(str):
    """A table cell or fragment that is already HTML (a thumbnail): written as it is."""


def number(value, digits: int = 3, whole: bool = False) -> str:
    """A number as a person reads it: integers (and floats when ``whole``) without decimals, other
    floats with ``digits`` decimals (significant digits when tiny or huge), NaN as ``n/a``.

    >>> number(0.95312), number(1.0), number(12.0, whole=True), number(0.000123), number(1e7)
    ('0.953', '1.000', '12', '0.000123', '1e+07')
    """
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if whole and value.is_integer():
        return f"{value:,.0f}"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 10**6):
        return f"{value:.{digits}g}"
    return f"{value:,.{digits}f}"


_NUMERIC_TEXT = re.compile(r"^[-+]?\d[\d,]*(\.\d+)?( ± [-+]?\d[\d,]*(\.\d+)?)?$")


def cell(value, whole: bool = False) -> tuple[str, str]:
    """The HTML of one table cell and its CSS class (``num``, ``text`` or none)."""
    if isinstance(value, Raw):
        return str(value), ""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a", "num"
    if isinstance(value, numbers.Number | np.number):
        return number(value, whole=whole), "num"
    text = str(value)
    if _NUMERIC_TEXT.match(text):
        return html.escape(text), "num"
    return html.escape(text), ("text" if len(text) > 30 else "")


def _whole(column: pd.Series) -> bool:
    """Whether a float column holds only whole numbers (counts that became floats)."""
    if not pd.api.types.is_float_dtype(column.dtype):
        return False
    values = column.dropna().to_numpy()
    return bool(len(values)) and bool(np.all(np.mod(values, 1) == 0))


def table(frame: pd.DataFrame, *, index: bool = True, caption: str | None = None) -> str:
    """``frame`` as a scrollable, formatted HTML table; the index (when kept) is the first column."""
    if index:
        names = [name if name is not None else "" for name in frame.index.names]
        frame = frame.reset_index()
        frame.columns = [*names, *frame.columns[len(names):]]
    numeric = [pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
               for dtype in frame.dtypes]
    head = "".join(f"<th class='num'>{html.escape(str(c))}</th>" if is_num else
                   f"<th>{html.escape(str(c))}</th>" for c, is_num in zip(frame.columns, numeric))
    whole = [_whole(frame.iloc[:, i]) for i in range(frame.shape[1])]
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for value, is_whole in zip(values, whole):
            content, css = cell(value, is_whole)
            cells.append(f"<td class='{css}'>{content}</td>" if css else f"<td>{content}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption_html = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f"<div class='table-wrap'><table>{caption_html}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def png_img(png: bytes, alt: str, css: str | None = None) -> Raw:
    """An ``<img>`` carrying ``png`` inline (base64), so that the page works as one file."""
    encoded = base64.b64encode(png).decode("ascii")
    css_attr = f" class='{css}'" if css else ""
    return Raw(f"<img{css_attr} alt='{html.escape(alt, quote=True)}' "
               f"src='data:image/png;base64,{encoded}'>")


def figure(png: bytes, alt: str, caption: str | None = None) -> str:
    caption_html = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{png_img(png, alt)}{caption_html}</figure>"


def cards(values: Iterable[tuple[str, str]]) -> str:
    """Headline numbers, each a small box: (label, formatted value)."""
    boxes = "".join(f"<div class='card'><div class='value'>{html.escape(value)}</div>"
                    f"<div class='label'>{html.escape(label)}</div></div>"
                    for label, value in values)
    return f"<div class='cards'>{boxes}</div>"


def paragraph(text: str, css: str | None = None) -> str:
    css_attr = f" class='{css}'" if css else ""
    return f"<p{css_attr}>{html.escape(text)}</p>"


def anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def now() -> str:
    """The current time in UTC, to the minute, for a report's header."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def page(title: str, meta: Sequence[tuple[str, str]], sections: Sequence[tuple[str, str]],
         intro: str = "") -> str:
    """A whole HTML page: the title, the header of what/which data/when/version, a table of
    contents and the sections (title, HTML body), with the stylesheet inside."""
    from skadapt import __version__

    rows = "".join(f"<dt>{html.escape(key)}</dt><dd>{html.escape(value)}</dd>"
                   for key, value in meta)
    toc = " ".join(f"<a href='#{anchor(name)}'>{html.escape(name)}</a>" for name, _ in sections)
    body = "\n".join(f"<section id='{anchor(name)}'><h2>{html.escape(name)}</h2>\n{content}"
                     "</section>" for name, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<header class='meta'><dl>{rows}</dl></header>\n{intro}\n"
        f"<nav class='toc'>{toc}</nav>\n{body}\n"
        f"<footer>Written by skadapt {html.escape(__version__)}.</footer>\n</body></html>\n"
    )
