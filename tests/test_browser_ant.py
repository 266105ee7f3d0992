"""The ant pages in headless Chromium: the sidebar's environment switch shows the ant's menu; the Rollouts page
plays a shipped video at once, renders a short small rollout in the background (a progress bar, then an H.264
video that the browser really decodes) beside the path plot, and the time slider and the video move the plot's
marker together. Runs its own app server on a checkpoints root holding only the shipped ant set, with an empty
render cache (so the rollout is really rendered). Fixtures and helpers: tests/browser_support.py.
"""
import json
from pathlib import Path

import pytest

pytest_plugins = ["browser_support"]
ROOT = Path(__file__).resolve().parent.parent
VIDEO = ".st-key-ant_video video"
PLOT = ".st-key-ant_path .js-plotly-plot"
STEPS, SIZE = 30, "160×160"


@pytest.fixture(scope="module")
def ant_server(tmp_path_factory):
    from browser_support import serving
    root = tmp_path_factory.mktemp("ant_root")
    (root / "ant").symlink_to(ROOT / "checkpoints" / "ant", target_is_directory=True)
    cache = tmp_path_factory.mktemp("ant_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IRL_ANT_MEDIA_CACHE", str(cache))  # read by the server when it starts
        servers = serving(root)
        server = next(servers)
    server.cache = cache
    yield server
    next(servers, None)  # stops it


@pytest.fixture
def ant_page(browser_context, ant_server):
    from browser_support import page_on
    yield from page_on(browser_context, ant_server)


def _video_state(page) -> dict:
    return page.locator(VIDEO).evaluate(
        "v => ({ready: v.readyState, duration: v.duration, width: v.videoWidth, height: v.videoHeight,"
        " error: v.error ? v.error.code : null, time: v.currentTime, paused: v.paused,"
        " mp4: v.canPlayType('video/mp4; codecs=\"avc1.64001e\"')})")


def _wait_playable(page, timeout: float = 30_000) -> dict:
    """Wait until the video has decoded data, then play it (muted) and wait until its time advances."""
    page.wait_for_function(f"() => {{ const v = document.querySelector('{VIDEO}'); return v && (v.readyState >= 2 || v.error); }}",
                           timeout=timeout)
    state = _video_state(page)
    assert state["error"] is None, f"the browser could not load the video: {state}"
    page.locator(VIDEO).evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function(f"() => document.querySelector('{VIDEO}').currentTime > 0.3", timeout=timeout)
    return _video_state(page)


def _marker(page) -> tuple[float, float]:
    return tuple(page.locator(PLOT).evaluate(
        "gd => { const t = gd.data.find(d => d.name === 'ant'); return [t.x[0], t.y[0]]; }"))


def _slider_to(page, k: int) -> None:
    page.locator(".ts-range").evaluate(f"r => {{ r.value = '{k}'; r.dispatchEvent(new Event('input')); }}")


def test_the_ant_menu_gallery_and_a_rendered_rollout(ant_page):
    app, page = ant_page, ant_page.page
    app.goto()
    app.select_sidebar("Environment", "Ant-pinpad")
    app.assert_no_exception()
    page.get_by_role("heading", name="Ant-pinpad", exact=True).wait_for()
    nav = page.locator("[data-testid='stSidebarNav']")
    assert nav.get_by_text("Rollouts", exact=True).count() == 1
    assert nav.get_by_text("Linear probes", exact=True).count() == 0, "the grid's pages leave the menu"
    app.screenshot("ant-overview")

    # the shipped gallery: a video at once, no rendering
    nav.get_by_text("Rollouts", exact=True).click()
    app.wait()
    app.assert_no_exception()
    state = _wait_playable(page)
    assert state["width"] == 480 and state["duration"] > 5, state
    assert page.locator(PLOT).count() == 1
    app.screenshot("ant-gallery")

    # a new rollout: small, a few dozen steps, rendered in the background
    page.get_by_text("New rollout", exact=True).click()
    app.wait()
    app.choose("Resolution", SIZE)
    steps = page.get_by_role("spinbutton", name="Step limit")
    steps.fill(str(STEPS))
    steps.press("Enter")
    app.wait()
    assert page.get_by_text("Not rendered yet").count() == 1
    page.get_by_role("button", name="Render").click()
    page.wait_for_selector(VIDEO, timeout=120_000)
    app.wait()
    app.assert_no_exception()
    state = _wait_playable(page)
    assert state["width"] == 160 and state["height"] == 160, state
    assert abs(state["duration"] - (STEPS + 1) / 20) < 0.11, state   # one frame per step, frame 0 the reset
    assert state["mp4"] in ("probably", "maybe")

    # the path plot, and its marker following the video's frames and the time slider
    entries = [p for p in Path(app.server.cache).iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1, "the rollout is in the (empty at start) cache"
    rec = json.loads((entries[0] / "rollout.json").read_text())
    assert rec["length"] == STEPS and rec["width"] == 160 and rec["outcome"] == "stopped"
    page.wait_for_function("() => document.querySelector('.st-key-ant_video video').ended", timeout=30_000)
    page.wait_for_timeout(300)
    assert page.locator(".ts-range").evaluate("r => Number(r.value)") == STEPS, "the slider followed the video"
    assert _marker(page) == pytest.approx(tuple(rec["uv"][STEPS]), abs=1e-6)
    _slider_to(page, 10)
    page.wait_for_timeout(300)
    assert _marker(page) == pytest.approx(tuple(rec["uv"][10]), abs=1e-6)
    state = _video_state(page)
    assert state["paused"] and abs(state["time"] - 10.5 / 20) < 0.03, state
    assert "t = 10 / 30" in page.locator(".ts-read").inner_text()
    assert page.get_by_text("Outcome: stopped at the step limit").count() == 1
    app.screenshot("ant-rollout")
