"""The dashboard is one self-contained HTML file with every policy, status, truth and plot."""

from __future__ import annotations

import base64
import html
import json
import re
from html.parser import HTMLParser

from cje.viz import PLOT_FILES
from cje.viz.dashboard import build_dashboard
from tests.viz.conftest import PNG_MAGIC, with_statuses


class _Collector(HTMLParser):
    """Collects tags with their attributes, and the rows (data-policy, data-status) of each table."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.table_rows: dict[str, list[tuple[str | None, str | None]]] = {}
        self._table: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._table = a.get("id")
            self.table_rows[self._table] = []
        elif tag == "tr" and self._table and "data-status" in a:
            self.table_rows[self._table].append((a.get("data-policy"), a["data-status"]))


def _parse(text: str) -> _Collector:
    parser = _Collector()
    parser.feed(text)
    return parser


def test_dashboard_lists_every_policy_with_status_truth_and_reasons(rendered, arena_payload):
    text = rendered["diagnostics_dashboard.html"].read_text()
    meta = arena_payload["metadata"]
    doc = _parse(text)
    for table_id in ("estimates", "diagnostics"):
        rows = doc.table_rows[table_id]
        assert [p for p, _ in rows] == meta["target_policies"]
        assert [s for _, s in rows] == [meta["policies"][p]["status"] for p in meta["target_policies"]]
    for name in meta["target_policies"]:
        block = meta["policies"][name]
        assert f'{block["estimate"]:.3f}' in text
        assert f'{meta["ground_truth"][name]["truth"]:.3f}' in text
        for reason in block["reasons"]:
            assert html.escape(reason) in text
    for status in ("GOOD", "WARNING", "CRITICAL"):
        assert status in text
    assert "UNRELIABLE" in text
    assert meta["estimator"] in text and "oracle coverage 0.25" in text and "seed 0" in text


def test_dashboard_is_self_contained(rendered):
    text = rendered["diagnostics_dashboard.html"].read_text()
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""(?:src|href)\s*=\s*(?!["']?(?:data:|#))""", text, flags=re.I)
    doc = _parse(text)
    assert not [a for t, a in doc.tags if t in ("link", "iframe", "object", "embed")]
    assert not [a for t, a in doc.tags if t == "script" and "src" in a]
    images = [a["src"] for t, a in doc.tags if t == "img"]
    assert len(images) == len(PLOT_FILES)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    assert "<style>" in text and "<script>" in text


def test_dashboard_escapes_policy_names(arena_payload):
    hostile = '<img src=x onerror="alert(1)">'
    payload = json.loads(json.dumps(arena_payload).replace('"unhelpful"', json.dumps(hostile)))
    text = build_dashboard(payload, [])
    assert hostile not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text


def test_dashboard_counts_statuses(arena_payload):
    payload = with_statuses(arena_payload, {"clone": "GOOD", "parallel_universe_prompt": "WARNING"})
    doc = _parse(build_dashboard(payload, []))
    assert [s for _, s in doc.table_rows["estimates"]] == ["GOOD", "WARNING", "CRITICAL"]
    unreliable = [a.get("data-policy") for t, a in doc.tags if t == "tr" and a.get("class") == "unreliable"]
    assert unreliable == ["unhelpful", "unhelpful"]  # estimates and diagnostics tables
