"""The app in a real browser (Playwright + Debian's Chromium): every page opens by its URL with a clean console,
nothing is loaded from outside, widgets and chart selections work. Screenshots go to test-artifacts/screenshots/.

Fixtures: tests/browser_support.py (a missing Chromium fails these tests with how to install it).
"""
import re
from pathlib import Path

import pytest

from irl_core.app_state import pages
from irl_core.reports import load_switching

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["browser_support"]

# a heading each known page shows whatever its checkpoint set holds
HEADINGS = {"": "Emergent temporal abstractions", "probes": "Linear probes", "switching": "Switching",
            "rate-distortion": "Rate–distortion"}


def _name(url_path: str) -> str:
    return url_path or "overview"


@pytest.mark.parametrize("url_path", [p.url_path for p in pages()], ids=_name)
def test_every_page_opens_by_its_url(app_page, url_path):
    """A direct URL (e.g. /probes) opens that page on the shipped set; the console stays clean."""
    app_page.goto(url_path)
    app_page.assert_no_exception()
    h1 = app_page.page.locator("h1").first
    assert h1.is_visible()
    if url_path in HEADINGS:
        assert HEADINGS[url_path] in h1.inner_text()
    active = app_page.page.locator("[data-testid='stSidebarNav'] a[aria-current='page']")
    if active.count():
        assert active.first.get_attribute("href").rstrip("/").endswith(url_path)
    app_page.screenshot(_name(url_path))


def test_switching_slider_moves_the_agent(app_page):
    """On the tiny set: moving the time slider moves the marker on the timeline and the agent on the grid."""
    app_page.goto("switching")
    app_page.select_sidebar("Checkpoint set", "tiny")
    app_page.assert_no_exception()
    page = app_page.page
    step_text = page.get_by_text(re.compile(r"^Step \d+:")).first
    assert step_text.inner_text().startswith("Step 0:")
    agent_before = page.locator("[data-testid='stPlotlyChart']").nth(1).inner_html()
    thumb = page.get_by_role("slider", name="Step t")
    thumb.focus()
    for _ in range(3):
        thumb.press("ArrowRight")
    app_page.wait()
    app_page.assert_no_exception()
    assert page.get_by_text(re.compile(r"^Step 3:")).first.is_visible()
    assert page.locator("[data-testid='stPlotlyChart']").nth(1).inner_html() != agent_before
    app_page.screenshot("switching-tiny")


def test_switching_episode_label_follows_the_chosen_metacontroller(app_page):
    """On the shipped grid5 set: choosing a sweep point relabels the episode shown with that point's switches
    (one key for every export kept the label of the one chosen before: "3 switches" on a point that switches once)."""
    app_page.goto("switching")
    page = app_page.page
    episode = page.get_by_role("combobox", name="Episode", exact=True)
    before = episode.input_value()
    page.get_by_role("combobox", name="Metacontroller", exact=True).click()
    page.keyboard.type("frozen · α=0.3 · seed 0")  # the list is long: filter it, as a user would
    page.get_by_role("option", name="α sweep point: frozen · α=0.3 · seed 0", exact=True).click()
    app_page.wait()
    app_page.assert_no_exception()
    sw = load_switching(path=ROOT / "checkpoints/grid5/reports/sweep_switching/frozen_alpha0.3_seed0.npz")
    shown = episode.input_value()
    n, c = int(sw["switches"][0]), int(sw["changes"][0])
    said = f" {n} {'switch' if n == 1 else 'switches'} / {c} {'subgoal change' if c == 1 else 'subgoal changes'}"
    assert shown.startswith("#0 ") and said in shown, (shown, said)
    assert shown != before, "the shipped metacontroller and this point label episode #0 alike: pick another point"


def test_rate_distortion_point_click_shows_its_switching(app_page):
    """On the tiny set: clicking a point of the co-trained chart selects it (plotly on_select)."""
    app_page.goto("rate-distortion")
    app_page.select_sidebar("Checkpoint set", "tiny")
    app_page.assert_no_exception()
    page = app_page.page
    subheader = page.locator("h3").filter(has_text="α =").first
    assert "Frozen" in subheader.inner_text()
    app_page.screenshot("rate-distortion-tiny")
    cotrained = page.locator("[data-testid='stPlotlyChart']").nth(1)
    cotrained.scroll_into_view_if_needed()
    cotrained.locator(".scatterlayer .trace .points path").first.click(force=True)
    app_page.wait()
    app_page.assert_no_exception()
    assert "Co-trained" in page.locator("h3").filter(has_text="α =").first.inner_text()
    app_page.screenshot("rate-distortion-tiny-selected")


def test_ant_environment_switches_to_the_ant_menu(app_page):
    """From a grid page, choosing the ant lands on the ant's overview (its pages: tests/test_browser_ant.py)."""
    app_page.goto("switching")
    app_page.select_sidebar("Environment", "Ant-pinpad")
    app_page.page.get_by_role("heading", name="Ant-pinpad", exact=True).wait_for()
    app_page.assert_no_exception()
