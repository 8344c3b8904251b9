"""WCAG AA (4.5:1) contrast of every text colour on the dashboard, the summary page and the plots' status labels."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from cje.viz import html as page_html
from cje.viz.dashboard import build_dashboard
from cje.viz.style import (OKABE_ITO, STATUS_COLOURS, STATUS_TEXT_COLOURS, WCAG_AA_TEXT, blend, contrast_ratio,
                           relative_luminance)
from tests.viz.conftest import with_statuses

STATUSES = ("GOOD", "WARNING", "CRITICAL")


def test_contrast_ratio_known_values():
    # WCAG reference points: black/white 21:1, identical colours 1:1, #767676 on white is the classic 4.54:1
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#777777") == pytest.approx(1.0)
    assert contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert contrast_ratio("#ffffff", "#767676") == contrast_ratio("#767676", "#ffffff")
    assert relative_luminance("#fff") == pytest.approx(1.0)
    assert blend("#000000", "#ffffff", 0.5) == "#808080"


def test_the_okabe_ito_status_colours_alone_would_fail_as_text():
    """Why the text variants exist: the marker colours are below 4.5:1 on white."""
    assert all(contrast_ratio(STATUS_COLOURS[s], "#ffffff") < WCAG_AA_TEXT for s in STATUSES)
    assert contrast_ratio(OKABE_ITO["orange"], "#ffffff") < 2.5


class _Badges(HTMLParser):
    def __init__(self):
        super().__init__()
        self.badges: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and "badge" in (a.get("class") or ""):
            background = re.search(r"background:\s*(#[0-9a-fA-F]{6})", a.get("style", "")).group(1)
            self.badges.append((a["class"].split()[-1], background))


def test_status_badges_on_the_dashboard_reach_aa(arena_payload):
    payload = with_statuses(arena_payload, {"clone": "GOOD", "parallel_universe_prompt": "WARNING"})
    parser = _Badges()
    parser.feed(build_dashboard(payload, []))
    seen = {status for status, _ in parser.badges}
    assert seen == set(STATUSES)
    badge_text = re.search(r"\.badge\{[^}]*color:(#[0-9a-fA-F]{6})", page_html.page_css()).group(1)
    for status, background in parser.badges:
        ratio = contrast_ratio(badge_text, background)
        assert ratio >= WCAG_AA_TEXT, f"{status} badge: {ratio:.2f}:1"


def test_every_page_text_colour_reaches_aa_on_every_background_it_is_drawn_on():
    colours = page_html.PAGE_COLOURS
    for fg, bg in page_html.TEXT_ON_BACKGROUND:
        text = colours[fg]
        if fg == "header_text":  # header paragraphs are drawn at reduced opacity
            text = blend(text, colours[bg], page_html.HEADER_TEXT_OPACITY)
        ratio = contrast_ratio(text, colours[bg])
        assert ratio >= WCAG_AA_TEXT, f"{fg} on {bg}: {ratio:.2f}:1"


def test_the_stylesheet_uses_only_checked_colours():
    used = {c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}\b", page_html.page_css())}
    allowed = {c.lower() for c in page_html.PAGE_COLOURS.values()} | {page_html.BADGE_TEXT.lower()}
    assert used <= allowed, used - allowed


@pytest.mark.parametrize("status", STATUSES)
def test_status_text_in_plots_reaches_aa(status):
    # tick labels and panel titles are drawn on the white figure; CRITICAL rows of the forest plot are
    # shaded with the vermillion at alpha 0.08 (the label sits beside it, but check the shade too)
    shade = blend(STATUS_COLOURS["CRITICAL"], "#ffffff", 0.08)
    for background in ("#ffffff", shade, page_html.PAGE_COLOURS["unreliable_bg"]):
        ratio = contrast_ratio(STATUS_TEXT_COLOURS[status], background)
        assert ratio >= WCAG_AA_TEXT, f"{status} text on {background}: {ratio:.2f}:1"
    assert page_html.STATUS_CSS[status] == STATUS_TEXT_COLOURS[status]
