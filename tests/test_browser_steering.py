"""The Steering page in a real browser: clicking and dragging on the latent map (a custom component v2) steers
the agent. Runs its own app server on a temporary checkpoints root (tiny base model, GT controllers, a
metacontroller whose decoder makes U depend strongly on z, and its latent map), so that a new code visibly
changes the rollout whatever the shipped set holds. Fixtures and helpers: tests/browser_support.py.
"""
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest_plugins = ["browser_support"]

# the map's SVG geometry (assets/latent_map/map.js): viewBox and plot-area margins
W, H, ML, MR, MT, MB = 520, 420, 16, 16, 40, 28
RESULT = ".st-key-steer_result"


def _set(folder: Path, tiny_base: Path) -> dict:
    """Fill ``folder`` with a checkpoint set; returns the latent map."""
    from irl_core.checkpoints import atomic_write_json
    from irl_core.controllers import GTControllers, save_gt_controllers
    from irl_core.discovery import discovery_preset, save_metacontroller
    from irl_core.metacontroller import MetaController, MetaControllerConfig
    from irl_core.pretrain import load_base_model
    from irl_core.latent_map import file_digest, latent_map

    folder.mkdir(parents=True)
    for s in (".json", ".safetensors"):
        shutil.copyfile(Path(tiny_base).with_suffix(s), (folder / "base").with_suffix(s))
    base = load_base_model(folder / "base")
    layer = base.n_layers // 2
    torch.manual_seed(0)
    gt = GTControllers(base.cfg.d_model, layer, rank=4, hidden=8)
    meta = MetaController(MetaControllerConfig(d_model=base.cfg.d_model, rank=4, decoder_init_std=1.0))
    with torch.no_grad():
        torch.nn.init.normal_(gt.hyper.out.weight)
        meta.decoder.out.weight.mul_(3.0)
    save_gt_controllers(folder / "gt_controllers", gt.eval(), {})
    save_metacontroller(folder / "metacontroller", meta.eval(), base, layer, discovery_preset("tiny"),
                        {"base_checkpoint": str(folder / "base")})
    rep = latent_map(base, meta.eval(), layer, episodes=16)
    rep["metacontroller_sha256"] = file_digest(folder / "metacontroller.safetensors")
    atomic_write_json(folder / "reports" / "latent_map.json", rep)
    return rep


def _frac_to_xy(rep: dict, fx: float, fy: float) -> tuple[float, float]:
    """The map point at fraction (fx, fy) of the plot area (fy from the top)."""
    (x0, x1), (y0, y1) = rep["bounds"]["x"], rep["bounds"]["y"]
    return x0 + fx * (x1 - x0), y1 - fy * (y1 - y0)


def _screen(box: dict, fx: float, fy: float) -> tuple[float, float]:
    vx, vy = ML + fx * (W - ML - MR), MT + fy * (H - MT - MB)
    return box["x"] + vx / W * box["width"], box["y"] + vy / H * box["height"]


@pytest.fixture(scope="module")
def steer_server(tiny_base, tmp_path_factory):
    from irl_core.discovery import load_metacontroller
    from irl_core.latent_map import Projection
    from irl_core.steering import steer

    from browser_support import serving
    root = tmp_path_factory.mktemp("steer_root")
    rep = _set(root / "steer", tiny_base)  # a set of its own, chosen in the sidebar (the app opens on grid5)
    # the page's defaults: layout seed 0, held-out task, t0 = 0, greedy, keep going after a wrong colour
    meta, model, layer, _ = load_metacontroller(root / "steer" / "metacontroller", base=root / "steer" / "base")
    proj = Projection.from_dict(rep["projection"])
    runs = {f: steer(model, layer, proj.to_code(_frac_to_xy(rep, *f)), meta=meta, end_on_wrong=False).actions
            for f in ((0.5, 0.5), (0.9, 0.1), (0.1, 0.9))}
    origin = steer(model, layer, proj.to_code([0.0, 0.0]), meta=meta, end_on_wrong=False).actions
    assert runs[(0.9, 0.1)] != origin and runs[(0.1, 0.9)] != runs[(0.9, 0.1)], \
        "test set-up: the chosen map points should give different rollouts"
    servers = serving(root)
    server = next(servers)
    server.rep = rep
    yield server
    next(servers, None)  # stops it


@pytest.fixture
def steer_page(browser, steer_server):
    from browser_support import AppPage
    context = browser.new_context(viewport={"width": 1440, "height": 2300})
    app = AppPage.open(context, steer_server)
    yield app
    context.close()
    app.fail_on_problems()


def _steered_actions(page) -> str:
    """The action arrows of the steered panel (the first 'Actions:' caption of the result)."""
    return page.locator(RESULT).get_by_text(re.compile(r"^Actions: ")).first.inner_text()


def _wait_change(app, before: str, timeout: float = 60_000) -> float:
    """Wait until the steered rollout differs from ``before``; returns the seconds it took."""
    t = time.perf_counter()
    app.page.wait_for_function(
        """b => { const r = document.querySelector('.st-key-steer_result');
                  if (!r) return false;
                  const c = [...r.querySelectorAll('[data-testid="stCaptionContainer"]')]
                      .map(e => e.innerText).find(s => s.startsWith('Actions: '));
                  return c !== undefined && c !== b; }""", arg=before, timeout=timeout)
    return time.perf_counter() - t


def test_click_and_drag_on_the_latent_map_steer_the_agent(steer_page):
    app, page, rep = steer_page, steer_page.page, steer_page.server.rep
    app.goto("steering")
    app.select_sidebar("Checkpoint set", "steer")
    app.assert_no_exception()
    page.get_by_text("Latent code z (metacontroller)", exact=True).click()
    app.wait()
    app.assert_no_exception()
    svg = page.locator(".lm-svg")
    svg.wait_for()
    assert svg.locator("circle").count() >= len(rep["points"]), "every segment code is drawn"
    readout = page.locator(".lm-read")
    assert readout.inner_text().startswith("(x, y) = (0.00, 0.00)")
    before = _steered_actions(page)
    panels = page.locator(f"{RESULT} [data-testid='stPlotlyChart']")
    fig_before = panels.first.inner_html()

    # a click: the marker jumps there, the code is sent back, the rollout is recomputed and redrawn
    box = svg.bounding_box()
    t_click = time.perf_counter()
    page.mouse.click(*_screen(box, 0.9, 0.1))
    seconds = _wait_change(app, before)
    app.wait()
    idle = time.perf_counter() - t_click
    app.assert_no_exception()
    x, y = _frac_to_xy(rep, 0.9, 0.1)
    m = re.match(r"\(x, y\) = \((-?[\d.]+), (-?[\d.]+)\)", readout.inner_text())
    assert m and abs(float(m[1]) - x) < 0.03 * np.ptp(rep["bounds"]["x"])
    assert abs(float(m[2]) - y) < 0.03 * np.ptp(rep["bounds"]["y"])
    after_click = _steered_actions(page)
    assert after_click != before
    assert panels.first.inner_html() != fig_before, "the steered rollout's figure was redrawn"
    app.screenshot("steering-latent-map")

    # a drag: the marker follows the pointer; the code is sent once, on release
    box = svg.bounding_box()
    page.mouse.move(*_screen(box, 0.9, 0.1))
    page.mouse.down()
    for i in range(1, 9):
        page.mouse.move(*_screen(box, 0.9 - 0.1 * i, 0.1 + 0.1 * i))
    page.mouse.up()
    drag_seconds = _wait_change(app, after_click)
    app.wait()
    app.assert_no_exception()
    x, y = _frac_to_xy(rep, 0.1, 0.9)
    m = re.match(r"\(x, y\) = \((-?[\d.]+), (-?[\d.]+)\)", readout.inner_text())
    assert m and abs(float(m[1]) - x) < 0.03 * np.ptp(rep["bounds"]["x"])
    from browser_support import ARTIFACTS
    (ARTIFACTS / "steering_latency.json").write_text(json.dumps(
        {"click_to_new_rollout_s": round(seconds, 3), "click_to_idle_s": round(idle, 3),
         "drag_release_to_new_rollout_s": round(drag_seconds, 3),
         "note": "tiny base model (2 layers); page defaults (greedy, held-out task, t0 = 0, 30 diagnostic steps "
                 "after the paper's end); headless Chromium on the test machine"},
        indent=2) + "\n")
    print(f"latency: click → new rollout {seconds:.2f} s, → app idle {idle:.2f} s; drag release → new rollout "
          f"{drag_seconds:.2f} s")
