"""The Internal RL page in a real browser: launch a tiny run through the job backend, see it finish in the live
list and appear on the curves. Runs its own app server with a temporary runs folder (``IRL_RUNS_DIR``), so
nothing lands in the repository's runs/. Fixtures and helpers: tests/browser_support.py.
"""
import time

import pytest

from browser_support import AppPage, start_app_server

pytest_plugins = ["browser_support"]


@pytest.fixture(params=["local", "ray"])
def rl_page(request, browser_context, app_checkpoints_root, tmp_path, monkeypatch):
    """The app with each job backend (IRL_JOBS_BACKEND): local processes, or Ray tasks on a local Ray the app starts."""
    monkeypatch.setenv("IRL_JOBS_BACKEND", request.param)
    monkeypatch.setenv("IRL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("IRL_THREADS", "1")
    try:
        server = start_app_server(app_checkpoints_root)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    app = AppPage.open(browser_context, server)
    app.backend = request.param
    yield app, tmp_path / "runs"
    app.page.close()
    server.stop()
    app.fail_on_problems()


def test_launch_a_tiny_run_and_see_it_on_the_curves(rl_page):
    app, runs = rl_page
    app.goto("internal-rl")
    app.select_sidebar("Checkpoint set", "tiny")
    app.assert_no_exception()
    page = app.page
    assert page.get_by_text("No internal-RL runs yet").first.is_visible()
    backend = page.get_by_text("job backend").first.inner_text()
    assert f"{app.backend} job backend" in backend, backend
    app.choose("Preset", "tiny (seconds; a smoke test)")
    page.get_by_role("button", name="Launch").click()
    app.wait()
    app.assert_no_exception()
    assert page.get_by_text("launched internal RL, seed 0").first.is_visible()
    deadline = time.time() + 180  # the live list refreshes every 2 s; the job itself takes seconds to a minute
    table = page.locator("[data-testid='stTable']").first
    while time.time() < deadline:
        if table.count() and "done" in table.inner_text():
            break
        assert "failed" not in (table.inner_text() if table.count() else ""), table.inner_text()
        page.wait_for_timeout(1000)
    assert "done" in table.inner_text(), f"the run did not finish: {table.inner_text()}"
    [run] = list((runs / "internal-rl").iterdir())
    assert f'"backend": "{app.backend}"' in (run / "job.json").read_text()
    app.goto("internal-rl")  # a fresh visit draws the finished run's curve
    app.select_sidebar("Checkpoint set", "tiny")
    legend = page.locator("[data-testid='stPlotlyChart']").first.locator(".legendtext")
    assert any("your runs" in t for t in legend.all_text_contents())
    app.screenshot(f"internal-rl-tiny-{app.backend}")
