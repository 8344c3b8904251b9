"""The notebook view of a result (``Result._repr_html_``): the decision, then the estimates table.

A fragment, not a page: its few style rules are scoped to ``.cje-result`` so
they never restyle the notebook, and badge colours are the same WCAG-AA pairs as
the dashboard's (:data:`cje.viz.html.STATUS_CSS` with white text).
"""

from __future__ import annotations

from cje.results.decision import level_label
from cje.viz.dashboard import decision_html
from cje.viz.html import BADGE_TEXT, PAGE_COLOURS, cell, esc, status_badge, table
from cje.viz.style import config_caption, fmt

__all__ = ["result_html"]

_STYLE = (".cje-result .badge{display:inline-block;padding:1px 7px;border-radius:9px;font-weight:600;"
          f"color:{BADGE_TEXT}}}.cje-result td,.cje-result th{{padding:2px 8px;text-align:right}}"
          ".cje-result td.text,.cje-result th.text{text-align:left}"
          f".cje-result .muted{{color:{PAGE_COLOURS['muted']}}}")


def result_html(payload: dict) -> str:
    """HTML fragment: configuration line, decision block (best policy, each target vs base), estimates.

    Parameters
    ----------
    payload : dict
        The estimates.json payload.

    Returns
    -------
    str
        An HTML fragment for notebooks.
    """
    meta = payload["metadata"]
    level = level_label((meta.get("inference") or {}).get("level"))
    rows = []
    for name in meta["target_policies"]:
        r = meta["policies"][name]
        ci = "" if r["ci_lower"] is None else f"[{r['ci_lower']:.3f}, {r['ci_upper']:.3f}]"
        cells = (cell(name, name, "text") + cell(status_badge(r["status"]), r["status"], raw_html=True, cls="text")
                 + cell("withheld" if r["estimate"] is None else fmt(r["estimate"]), r["estimate"])
                 + cell(ci, r["ci_lower"]) + cell(fmt(r["se"], ".4f", ""), r["se"])
                 + cell(r["n_used"], r["n_used"]))
        rows.append((cells, {"data-policy": name, "data-status": r["status"]}))
    estimates = table("estimates", ["policy", "status", "estimate", f"{level} CI", "SE", "rows used"], rows,
                      text_columns=(0, 1))
    return (f'<div class="cje-result"><style>{_STYLE}</style>'
            f"<p class='muted'>{esc(config_caption(payload))}</p>{decision_html(payload)}{estimates}</div>")
