"""Building blocks of the self-contained HTML pages (dashboard and sweep summary).

Every page is one file: inline CSS and vanilla JavaScript, images as base64
``data:`` URIs, no external resource of any kind, so it works opened from disk
with no network. Tables with class ``sortable`` sort by clicking (or pressing
Enter on) a header; each cell's ``data-sort`` holds the sort key (numbers sort
numerically, empty keys always last). Rows of tables with class ``filterable``
are filtered by the page's text box (``#filter-text``, matched against the row
text) and status menu (``#filter-status``, matched against the row's
``data-status``).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Sequence

__all__ = ["esc", "cell", "table", "image_figure", "status_badge", "filter_controls", "page", "STATUS_CSS",
           "BADGE_TEXT", "PAGE_COLOURS", "TEXT_ON_BACKGROUND", "HEADER_TEXT_OPACITY", "page_css"]

from cje.viz.style import STATUS_TEXT_COLOURS

# Badge background per status; the badge text is white (>= 4.5:1 on each, tests/viz/test_accessibility.py).
STATUS_CSS = dict(STATUS_TEXT_COLOURS)
BADGE_TEXT = "#ffffff"
UNKNOWN_STATUS_CSS = "#555555"

# Every colour of the pages' CSS; _CSS below uses only these names.
PAGE_COLOURS = {
    "text": "#1a1a1a", "page_bg": "#fafafa", "section_bg": "#ffffff", "border": "#dddddd",
    "rule": "#e3e3e3", "header_bg": "#0b3d5c", "header_text": "#ffffff", "th_bg": "#f0f3f6",
    "th_hover": "#dde6ee", "unreliable_bg": "#fdf0e8", "muted": "#595959", "caption": "#444444",
    "warn": "#8a3b00", "link": "#0b5394",
}
# (text colour, background) pairs that occur on the pages; each must reach WCAG AA 4.5:1.
# header paragraphs are drawn at opacity 0.9 (their effective colour is checked too).
TEXT_ON_BACKGROUND = [
    (fg, bg) for fg in ("text", "muted", "caption", "warn", "link")
    for bg in ("page_bg", "section_bg", "th_bg", "th_hover", "unreliable_bg")
] + [("header_text", "header_bg")]
HEADER_TEXT_OPACITY = 0.9

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:%(text)s;background:%(page_bg)s}
header{background:%(header_bg)s;color:%(header_text)s;padding:14px 24px}
header h1{margin:0 0 4px 0;font-size:1.35em}
header p{margin:2px 0;font-size:.9em;opacity:%(header_opacity)s}
main{padding:12px 24px 40px 24px;max-width:1500px}
section{background:%(section_bg)s;border:1px solid %(border)s;border-radius:6px;padding:10px 16px;margin:14px 0}
h2{font-size:1.1em;margin:4px 0 8px 0}
table{border-collapse:collapse;font-size:.86em;margin:6px 0}
th,td{border-bottom:1px solid %(rule)s;padding:4px 8px;text-align:right;vertical-align:top}
th{background:%(th_bg)s;position:sticky;top:0}
td{white-space:nowrap}
td.text,th.text{text-align:left}
td.wrap{white-space:normal;min-width:16em}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:hover{background:%(th_hover)s}
th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
tr.unreliable td{background:%(unreliable_bg)s}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;color:%(badge_text)s;font-weight:600;font-size:.85em}
.reasons{margin:0;padding-left:16px;text-align:left;font-size:.95em}
.controls{display:flex;gap:14px;align-items:center;flex-wrap:wrap;font-size:.9em}
.controls input{padding:4px 6px;min-width:240px}
.muted{color:%(muted)s;font-size:.85em}
.warn{color:%(warn)s}
a{color:%(link)s}
.decision{font-size:1.02em;margin:6px 0}
figure{margin:10px 0;display:inline-block;max-width:100%%}
figure img{max-width:100%%;height:auto;border:1px solid %(border)s}
figcaption{font-size:.85em;color:%(caption)s;max-width:1100px}
""" % {**PAGE_COLOURS, "badge_text": BADGE_TEXT, "header_opacity": HEADER_TEXT_OPACITY}

_JS = """
(function(){
  function key(cell){
    var v = cell.getAttribute('data-sort');
    if (v === null) v = cell.textContent.trim();
    if (v === '') return {empty:true};
    var n = Number(v);
    return isNaN(n) ? {s:v.toLowerCase()} : {n:n};
  }
  function compare(a, b){
    if (a.empty || b.empty) return a.empty && b.empty ? 0 : (a.empty ? 1 : -1);
    if (a.n !== undefined && b.n !== undefined) return a.n - b.n;
    var x = a.n !== undefined ? String(a.n) : a.s, y = b.n !== undefined ? String(b.n) : b.s;
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  function sortBy(th){
    var table = th.closest('table'), body = table.tBodies[0];
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.getAttribute('aria-sort') !== 'ascending';
    Array.prototype.forEach.call(th.parentNode.children, function(h){ h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(r1, r2){
      var a = key(r1.cells[idx]), b = key(r2.cells[idx]);
      if (a.empty || b.empty) return compare(a, b);
      return asc ? compare(a, b) : compare(b, a);
    });
    rows.forEach(function(r){ body.appendChild(r); });
  }
  function applyFilter(){
    var text = document.getElementById('filter-text');
    var status = document.getElementById('filter-status');
    var q = text ? text.value.trim().toLowerCase() : '';
    var s = status ? status.value : '';
    document.querySelectorAll('table.filterable').forEach(function(table){
      var shown = 0, total = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function(row){
        var ok = (!q || row.textContent.toLowerCase().indexOf(q) >= 0) &&
                 (!s || row.getAttribute('data-status') === s);
        row.style.display = ok ? '' : 'none';
        total += 1; if (ok) shown += 1;
      });
      var counter = document.getElementById(table.id + '-count');
      if (counter) counter.textContent = shown + ' of ' + total + ' rows shown';
    });
  }
  document.addEventListener('DOMContentLoaded', function(){
    document.querySelectorAll('table.sortable th').forEach(function(th){
      th.setAttribute('tabindex', '0');
      if (!th.title) th.title = 'click to sort';
      th.addEventListener('click', function(){ sortBy(th); });
      th.addEventListener('keydown', function(e){ if (e.key === 'Enter') sortBy(th); });
    });
    ['filter-text', 'filter-status'].forEach(function(id){
      var el = document.getElementById(id);
      if (el) { el.addEventListener('input', applyFilter); el.addEventListener('change', applyFilter); }
    });
    applyFilter();
  });
})();
"""


def page_css() -> str:
    """The pages' inline stylesheet (every colour from :data:`PAGE_COLOURS`).

    Returns
    -------
    str
        CSS text.
    """
    return _CSS


def esc(value: Any) -> str:
    """HTML-escape ``str(value)`` (quotes included).

    Parameters
    ----------
    value : object
        Anything.

    Returns
    -------
    str
        The escaped text.
    """
    return html.escape(str(value), quote=True)


def cell(text: Any, sort: Any = None, cls: str = "", raw_html: bool = False) -> str:
    """One ``<td>``: ``text`` (escaped unless ``raw_html``), ``sort`` the sort key (None/NaN = empty).

    Parameters
    ----------
    text : object
        The cell's content.
    sort : object, default=None
        The sort key (booleans sort as 0/1).
    cls : str, default=''
        A CSS class.
    raw_html : bool, default=False
        ``text`` is trusted HTML.

    Returns
    -------
    str
        The ``<td>`` element.
    """
    if sort is None or (isinstance(sort, float) and not math.isfinite(sort)):
        key = ""
    elif isinstance(sort, bool):
        key = str(int(sort))
    else:
        key = str(sort)
    body = str(text) if raw_html else esc(text)
    attr = f' class="{cls}"' if cls else ""
    return f'<td{attr} data-sort="{esc(key)}">{body}</td>'


def table(table_id: str, headers: Sequence[str | tuple[str, str]], rows: Sequence[tuple[str, dict]],
          filterable: bool = False, text_columns: Sequence[int] = (0,)) -> str:
    """A sortable table.

    ``text_columns`` are left-aligned. ``filterable`` tables obey the page's filter
    controls and get a row counter (``#{table_id}-count``).

    Parameters
    ----------
    table_id : str
        The table's id.
    headers : sequence of str or (str, str)
        Names or (name, tooltip).
    rows : sequence of (str, dict)
        (cells html, tr attributes).
    filterable : bool, default=False
        Obey the filter controls.
    text_columns : sequence of int, default=(0,)
        Left-aligned columns.

    Returns
    -------
    str
        The ``<table>`` element (and its row counter when filterable).
    """
    classes = "sortable" + (" filterable" if filterable else "")
    ths = []
    for i, h in enumerate(headers):
        name, tip = (h, "") if isinstance(h, str) else h
        cls = ' class="text"' if i in text_columns else ""
        tip_attr = f' title="{esc(tip)}; click to sort"' if tip else ""
        ths.append(f"<th{cls}{tip_attr}>{esc(name)}</th>")
    trs = []
    for cells, attrs in rows:
        attr = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items())
        trs.append(f"<tr{attr}>{cells}</tr>")
    counter = f'<div class="muted" id="{esc(table_id)}-count"></div>' if filterable else ""
    return (f'<table id="{esc(table_id)}" class="{classes}"><thead><tr>{"".join(ths)}</tr></thead>'
            f'<tbody>{"".join(trs)}</tbody></table>{counter}')


def status_badge(status: str) -> str:
    """A coloured status pill (colour and text; text carries the meaning).

    Parameters
    ----------
    status : str
        GOOD / WARNING / CRITICAL (others get a neutral colour).

    Returns
    -------
    str
        A ``<span>`` element.
    """
    colour = STATUS_CSS.get(status, UNKNOWN_STATUS_CSS)
    return f'<span class="badge {esc(status)}" style="background:{colour}">{esc(status)}</span>'


def image_figure(path: str | Path, alt: str, caption: str) -> str:
    """A ``<figure>`` embedding the PNG at ``path`` as a base64 data URI.

    Parameters
    ----------
    path : str or Path
        The PNG.
    alt : str
        Its alt text.
    caption : str
        Its caption.

    Returns
    -------
    str
        The ``<figure>`` element.
    """
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def filter_controls(statuses: Sequence[str] = ("GOOD", "WARNING", "CRITICAL")) -> str:
    """The text box and status menu that filter every ``filterable`` table on the page.

    Parameters
    ----------
    statuses : sequence of str, default=('GOOD', 'WARNING', 'CRITICAL')
        The menu's statuses.

    Returns
    -------
    str
        The controls' HTML.
    """
    options = '<option value="">all statuses</option>' + "".join(
        f'<option value="{esc(s)}">{esc(s)} only</option>' for s in statuses)
    return ('<div class="controls"><label>Filter rows: <input id="filter-text" type="search" '
            'placeholder="policy, reason, ..."></label>'
            f'<label>Status: <select id="filter-status">{options}</select></label>'
            '<span class="muted">Click a column header to sort.</span></div>')


def page(title: str, header_lines: Sequence[str], body: str) -> str:
    """A complete HTML document with the inline CSS and JS; ``body`` is trusted HTML.

    Parameters
    ----------
    title : str
        The page title.
    header_lines : sequence of str
        Lines under the title (escaped).
    body : str
        Trusted HTML.

    Returns
    -------
    str
        The HTML document.
    """
    lines = "".join(f"<p>{esc(line)}</p>" for line in header_lines)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1>{lines}</header><main>{body}</main>"
            f"<script>{_JS}</script></body></html>\n")
