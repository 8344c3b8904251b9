"""Headless Debian chromium opens the dashboard from disk with the network off: renders, no errors, sorts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cje.viz.dashboard import build_dashboard
from tests.system_packages import require_commands, unavailable
from tests.viz.conftest import decoded_png, with_statuses

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _chromium() -> str:
    """Path of the system chromium; skip with the install command, fail under CI=true."""
    path = require_commands("chromium", package="chromium", why="the dashboard's browser tests")["chromium"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("the playwright package is missing", "pip install -e '.[test]'")
    return path


@pytest.fixture(scope="module")
def browser():
    path = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class OfflinePage:
    """A page in an offline context that records console errors, page errors and any non-file request."""

    def __init__(self, browser):
        self.context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})
        self.errors: list[str] = []
        self.remote_requests: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file://", "data:")):
            route.continue_()
        else:
            self.remote_requests.append(url)
            route.abort()

    def open(self, path: Path):
        self.page.goto(path.resolve().as_uri(), wait_until="load")
        return self.page

    def close(self):
        self.context.close()


def _column(page, table: str, attr: str = "data-policy") -> list[str]:
    return page.eval_on_selector_all(f"#{table} tbody tr", f"rows => rows.map(r => r.getAttribute('{attr}'))")


def test_dashboard_renders_offline_and_sorts(browser, rendered, arena_payload, tmp_path):
    meta = arena_payload["metadata"]
    session = OfflinePage(browser)
    try:
        page = session.open(rendered["diagnostics_dashboard.html"])
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 300)")
        assert page.evaluate("document.images.length") == 3
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        pixels = decoded_png(shot)
        assert pixels.shape[1] >= 1400 and pixels.shape[0] > 2000 and pixels[..., :3].std() > 0.05
        if os.environ.get("CJE_SCREENSHOT_DIR"):
            shutil.copy(shot, Path(os.environ["CJE_SCREENSHOT_DIR"]) / "dashboard.png")

        assert _column(page, "estimates") == meta["target_policies"]
        truths = {p: t["truth"] for p, t in meta["ground_truth"].items()}
        by_truth = sorted(truths, key=truths.get)
        assert by_truth != meta["target_policies"]  # the click below must change the order
        page.locator("#estimates thead th", has_text="truth").first.click()
        assert _column(page, "estimates") == by_truth
        estimates = {p: meta["policies"][p]["estimate"] for p in meta["target_policies"]}
        ascending = sorted(estimates, key=estimates.get)
        assert ascending != by_truth
        header = page.locator("#estimates thead th", has_text="estimate").first
        header.click()
        assert _column(page, "estimates") == ascending
        assert header.get_attribute("aria-sort") == "ascending"
        header.click()
        assert _column(page, "estimates") == ascending[::-1]
        assert header.get_attribute("aria-sort") == "descending"
        page.locator("#estimates thead th", has_text="policy").first.click()
        assert _column(page, "estimates") == sorted(meta["target_policies"])
        assert session.errors == [] and session.remote_requests == []
    finally:
        session.close()


def test_dashboard_filters_by_status_and_text(browser, arena_payload, tmp_path):
    payload = with_statuses(arena_payload, {"clone": "GOOD", "parallel_universe_prompt": "WARNING"})
    path = tmp_path / "dashboard.html"
    path.write_text(build_dashboard(payload, []))
    session = OfflinePage(browser)
    try:
        page = session.open(path)

        def visible(table: str) -> list[str]:
            return page.eval_on_selector_all(
                f"#{table} tbody tr", "rows => rows.filter(r => r.style.display !== 'none')"
                                      ".map(r => r.getAttribute('data-policy'))")

        assert page.inner_text("#estimates-count") == "3 of 3 rows shown"
        page.select_option("#filter-status", "GOOD")
        assert visible("estimates") == ["clone"] and visible("diagnostics") == ["clone"]
        assert page.inner_text("#estimates-count") == "1 of 3 rows shown"
        page.select_option("#filter-status", "")
        page.fill("#filter-text", "judge-score overlap")  # a reason only unhelpful has
        assert visible("estimates") == ["unhelpful"]
        page.fill("#filter-text", "")
        status_header = page.locator("#estimates thead th", has_text="status").first
        status_header.click()
        assert _column(page, "estimates", "data-status") == ["GOOD", "WARNING", "CRITICAL"]
        status_header.click()
        assert _column(page, "estimates", "data-status") == ["CRITICAL", "WARNING", "GOOD"]
        assert session.errors == [] and session.remote_requests == []
    finally:
        session.close()


def test_summary_page_renders_offline_and_sorts(browser, tmp_path):
    from tests.viz.test_summary import make_payload, write

    from cje.cli import main

    root = tmp_path / "results"
    write(root, "A/c1", make_payload("A", 0.1, 0, {"p": 0.25, "q": 0.45, "r": 0.85}, 0.1))
    write(root, "B/c1", make_payload("B", 0.1, 0, {"p": 0.3, "q": 0.2, "r": 0.7}, 0.1, status={"q": "CRITICAL"}))
    html = tmp_path / "summary.html"
    assert main(["summarize", "--results-dir", str(root), "--output", str(tmp_path / "s.csv"),
                 "--html", str(html)]) == 0
    session = OfflinePage(browser)
    try:
        page = session.open(html)
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 300)")
        page.locator("#accuracy thead th", has_text="RMSE").first.click()
        rmse = page.eval_on_selector_all("#accuracy tbody tr td:nth-child(7)",
                                         "cells => cells.map(c => Number(c.getAttribute('data-sort')))")
        assert rmse == sorted(rmse) and len(rmse) == 2
        page.select_option("#filter-status", "CRITICAL")
        shown = page.eval_on_selector_all("#runs tbody tr", "rows => rows.filter(r => r.style.display !== 'none')"
                                                           ".length")
        assert shown == 1
        assert session.errors == [] and session.remote_requests == []
    finally:
        session.close()
