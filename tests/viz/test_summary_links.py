"""summary.html links every analysis's dashboard (relative links that resolve) and shows the run's cost."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import cje
from cje.cli import main
from cje.llm.client.calllog import Accounting, CallLog
from cje.llm.config import provider_config
from cje.viz.style import WCAG_AA_TEXT, contrast_ratio


def test_summary_links_every_dashboard_and_shows_cost(arena_logged, arena_fresh, tmp_path, capsys):
    root = tmp_path / "results"
    for estimator, plots in (("direct", True), ("calibrated-ips", True), ("naive", False)):
        result = cje.analyze(arena_logged, fresh_draws=arena_fresh, estimator=estimator, oracle_coverage=0.25)
        result.write(root / estimator / "coverage_0.25", plots=plots)
    # the run's cost, from a call log written by the real CallLog/Accounting
    cfg = {"providers": {"openai": {"kind": "openai", "base_url": "https://example.invalid/v1"}}}
    log, acct = CallLog(tmp_path / "api_calls.log"), Accounting()
    acct.add("judge:clone", "gpt-4.1-nano", provider_config(cfg, "openai"), True, 1200, 30, 0)
    log.write(event="stage_summary", stage="judge:clone", totals=acct.summary())
    assert main(["cost", "--log", str(tmp_path / "api_calls.log"), "--output", str(root / "cost.json")]) == 0
    site = tmp_path / "site"  # the page may live elsewhere: links are relative to its own folder
    html_path = site / "summary.html"
    assert main(["summarize", "--results-dir", str(root), "--output", str(site / "summary.csv"),
                 "--html", str(html_path)]) == 0
    capsys.readouterr()
    text = html_path.read_text()
    hrefs = re.findall(r'<a href="([^"]+)">dashboard</a>', text)
    assert len(hrefs) == 2
    for href in hrefs:
        assert not href.startswith(("/", "http"))
        target = (html_path.parent / unquote(href)).resolve()
        assert target.name == "diagnostics_dashboard.html" and target.is_file()
    assert {Path(unquote(h)).parts[-4] for h in hrefs} == {"direct", "calibrated-ips"}
    assert "none (analysed without --plots)" in text  # naive was written without --plots
    assert "What the run cost" in text and "judge" in text and "1,200" in text
    assert "provider &#x27;openai&#x27;: 1,230 tokens counted at $0" in text
    json.loads((root / "cost.json").read_text())
    # badges on this page reach WCAG AA too (white text on the status colour)
    for background in re.findall(r'class="badge [A-Z]+" style="background:(#[0-9A-Fa-f]{6})"', text):
        assert contrast_ratio("#ffffff", background) >= WCAG_AA_TEXT
