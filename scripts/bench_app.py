"""Measure the app's page load times and the Steering page's latency in headless Chromium; print a Markdown section.

    python scripts/bench_app.py [--reps 3] [--clicks 8] [--threads N] > bench_app.md

Starts ``streamlit run app.py`` on the shipped checkpoints (``checkpoints/``) and times, in a real browser:

* the server start (process start → ``/_stcore/health`` answers OK);
* every page of ``irl_core.app_state.pages()``: *cold* = the first visit of that page, in a new browser
  context (empty HTTP cache, new Streamlit session; the server's caches hold what earlier pages loaded), and
  *warm* = ``--reps`` further visits in new pages of that context (median); a visit is timed from
  ``page.goto`` to the app being idle after the page's script ran, and to the page's last DOM change;
* the same visits of two tiny reference apps (a title; a title and one Plotly chart), each on its own
  server: the floor that Streamlit and Plotly's bundle set for a new tab, with nothing of this app;
* page changes from the sidebar's menu within one session (``--reps`` rounds through the pages), as a user
  moves through the app;
* the Steering page: ``--clicks`` clicks on different points of the latent map (latent-code mode), each timed
  from the click to the steered rollout panel's text changing, to the app being idle and to the last DOM
  change; beside it the library call ``irl_core.steering.steer`` for the same kind of rollout (page
  defaults), so the page's overhead shows. Without a metacontroller and latent map it changes the ground-truth
  subgoal instead. The same clicks again on a temporary set whose codes change the rollout (the shipped base
  model with a random, strongly z-dependent metacontroller: :func:`steerable_root`), since no code of the
  shipped metacontroller changes an action and the steered figure is then never redrawn.

Needs Chromium (``/usr/bin/chromium`` or ``$IRL_CHROMIUM``) and playwright (requirements-dev.txt).
Markdown goes to stdout, progress to stderr. ``--threads`` sets OMP_NUM_THREADS for the server (and torch's
threads for the in-process library timing); by default neither is set. The section gives the load average
before and after the run; ``--note TEXT`` adds a sentence (e.g. that other jobs shared the machine).
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser_support import ARTIFACTS, CHROMIUM, IDLE, INSTALL_HINT, AppServer, free_port  # noqa: E402
from irl_core.app_state import catalogue, pages  # noqa: E402

SET = catalogue("grid", ROOT / "checkpoints")[0].path  # the set the app opens on (grid5)
W, H, ML, MR, MT, MB = 520, 420, 16, 16, 40, 28  # the latent map's SVG geometry (assets/latent_map/map.js)
RESULT = ".st-key-steer_result"
# true once the app is idle after a script run: idle, and either a run was seen or the page's title is drawn
AFTER_RUN_JS = """() => { const a = document.querySelector("[data-testid='stApp']");
  const s = a && a.getAttribute('data-test-script-state');
  if (s === 'running') window.__benchRan = true;
  return s === 'notRunning' && (window.__benchRan || !!document.querySelector("[data-testid='stMain'] h1")); }"""
# the browser keeps drawing after the script's end (e.g. a new page parses Plotly's bundle before it shows the
# elements): every page records its last DOM change, and a page counts as drawn after QUIET ms without one
QUIET = 1000
OBSERVE_JS = """window.__benchLast = performance.now();
new MutationObserver(() => { window.__benchLast = performance.now(); })
  .observe(document, { subtree: true, childList: true, characterData: true });
new MutationObserver((ms) => { for (const m of ms) if (m.oldValue === 'running' ||
    m.target.getAttribute('data-test-script-state') === 'running') window.__benchRan = true; })
  .observe(document, { subtree: true, attributes: true, attributeOldValue: true,
                       attributeFilter: ['data-test-script-state'] });"""
# after a click that starts a run (e.g. a menu link): a run was seen and the app is idle again
RAN_JS = """() => { const a = document.querySelector("[data-testid='stApp']");
  return !!window.__benchRan && a.getAttribute('data-test-script-state') === 'notRunning'; }"""
QUIET_JS = f"() => performance.now() - window.__benchLast > {QUIET} && performance.now() - window.__benchLast"
# after a click: every animation frame, is the steered rollout's figure (the result's first Plotly chart) drawn
# anew? window.__benchFigure = ms from the start of the watch to the first frame that shows a new drawn chart
FIGURE_WATCH_JS = """() => { const chart = () => document.querySelector(
    ".st-key-steer_result [data-testid='stPlotlyChart']");
  const c0 = chart(), before = c0 ? c0.innerHTML : '', t0 = performance.now();
  window.__benchFigure = null;
  const tick = () => { const c = chart();
    if (c && c.querySelector('.main-svg') && c.innerHTML !== before) { window.__benchFigure = performance.now() - t0; return; }
    if (performance.now() - t0 < 120000) requestAnimationFrame(tick); };
  requestAnimationFrame(tick); }"""
# after a click: 'changed' once the result panel's text differs from the argument, 'idle' if a run ended without
CHANGE_JS = """before => { const r = document.querySelector('.st-key-steer_result');
  if (r && r.innerText !== before) return 'changed';
  const s = document.querySelector("[data-testid='stApp']").getAttribute('data-test-script-state');
  if (s === 'running') window.__benchRan = true;
  return window.__benchRan && s === 'notRunning' ? 'idle' : false; }"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def start_server(threads: int | None, timeout: float = 120.0, script: Path | None = None,
                 root: Path = ROOT / "checkpoints") -> tuple[AppServer, float]:
    """``streamlit run app.py`` on the checkpoints root ``root`` (as browser_support.start_app_server, but with
    our OMP_NUM_THREADS), or ``streamlit run SCRIPT``; returns the server and the seconds from process start to
    a healthy answer."""
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"bench-app-streamlit{'-' + script.stem if script else ''}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", IRL_CHECKPOINTS_DIR=str(root))
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "streamlit", "run", str(script or "app.py"), "--server.headless=true", f"--server.port={port}",
           "--server.address=127.0.0.1", "--server.fileWatcherType=none"]
    t = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = AppServer(f"http://127.0.0.1:{port}", root, log_path, proc)
    while time.perf_counter() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return server, time.perf_counter() - t
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"streamlit did not answer on {server.url} within {timeout:.0f} s:\n{server.log_tail()}")


def visit(context, url: str) -> tuple[float, float, object, int]:
    """Open ``url`` in a new page of ``context``: (seconds from goto to the app idle after the run, to the last
    DOM change, the page, the number of exceptions shown)."""
    page = context.new_page()
    t = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function(AFTER_RUN_JS, polling=20, timeout=180_000)
    idle = time.perf_counter() - t
    quiet_ms = page.wait_for_function(QUIET_JS, polling=100, timeout=180_000).json_value()
    drawn = max(idle, time.perf_counter() - t - quiet_ms / 1000)
    return idle, drawn, page, page.locator("[data-testid='stException']").count()


def navigation(browser, url: str, reps: int) -> dict[str, list[tuple[float, float]]]:
    """Page changes from the sidebar's menu in one session, as a user moves through the app: ``reps`` rounds
    through every page in menu order (the first round, from a fresh tab, counts too); per page title the
    seconds from the click to the app idle after the new page's script and to the last DOM change."""
    context = new_context(browser)
    out: dict[str, list[tuple[float, float]]] = {p.title: [] for p in pages()}
    try:
        *_, page, _ = visit(context, url)
        order = pages()[1:] + pages()[:1]  # start on the Overview, end back on it
        for _ in range(reps):
            for p in order:
                link = page.locator("[data-testid='stSidebarNav'] a").filter(has_text=p.title).first
                page.evaluate("() => { window.__benchRan = false; }")
                t = time.perf_counter()
                link.click()
                page.wait_for_function(RAN_JS, polling=20, timeout=180_000)
                idle = time.perf_counter() - t
                quiet_ms = page.wait_for_function(QUIET_JS, polling=100, timeout=180_000).json_value()
                out[p.title].append((idle, max(idle, time.perf_counter() - t - quiet_ms / 1000)))
        log("menu: " + ", ".join(f"{k} {stats([x[1] for x in v], n=False)}" for k, v in out.items()))
    finally:
        context.close()
    return out


def page_loads(browser, url: str, reps: int) -> tuple[list[float], list[list[float]], int]:
    """A cold visit of ``url`` in a new context, then ``reps`` warm ones: ([idle, drawn], [[idle, drawn]…],
    the most exceptions a visit showed)."""
    context = new_context(browser)
    try:
        *cold, page, errors = visit(context, url)
        warm = []
        for _ in range(reps):
            page.close()
            *seconds, page, e = visit(context, url)
            warm.append(seconds)
            errors = max(errors, e)
    finally:
        context.close()
    return cold, warm, errors


# the floor that Streamlit and Plotly's bundle set, with nothing of this app: the same visits of two tiny apps
REFERENCE_APPS = {
    "a title only": 'import streamlit as st\nst.title("Reference")\nst.write("nothing else")\n',
    "a title and one Plotly chart": ('import plotly.graph_objects as go\nimport streamlit as st\nst.title("Reference")\n'
                                     'st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2], y=[0, 1, 0])))\n'),
}


# runs one page script and appends its seconds to $BENCH_TIMES (in a finally: a page may end in st.stop())
SCRIPT_TIMER = """import os, time
path = os.environ["BENCH_PAGE"]
code = compile(open(path).read(), path, "exec")
t = time.perf_counter()
try:
    exec(code, {"__name__": "__main__", "__file__": path})
finally:
    with open(os.environ["BENCH_TIMES"], "a") as f:
        f.write(f"{time.perf_counter() - t}\\n")
"""


def script_times(reps: int) -> dict[str, tuple[float, float]]:
    """Per page title: (seconds of the page script's first run in a fresh process's session, median of ``reps``
    reruns), the page script alone on the server side (streamlit's AppTest, no browser, page defaults)."""
    from streamlit.testing.v1 import AppTest
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        timer, times = Path(tmp) / "timer.py", Path(tmp) / "times.txt"
        timer.write_text(SCRIPT_TIMER)
        os.environ["IRL_CHECKPOINTS_DIR"] = str(ROOT / "checkpoints")
        for p in pages():
            os.environ.update(BENCH_PAGE=str(ROOT / p.file), BENCH_TIMES=str(times))
            times.write_text("")
            at = AppTest.from_file(str(timer), default_timeout=300)
            for _ in range(reps + 1):
                at.run()
            seconds = [float(x) for x in times.read_text().split()]
            out[p.title] = (seconds[0], statistics.median(seconds[1:]))
            log(f"{p.title}: script {seconds[0]:.2f} s first, {out[p.title][1] * 1000:.0f} ms warm")
    return out


def reference_loads(browser, threads: int | None, reps: int) -> list[tuple[str, list, list, int]]:
    """:func:`page_loads` of each of REFERENCE_APPS, each on its own server."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, source) in enumerate(REFERENCE_APPS.items()):
            script = Path(tmp) / f"reference_{i}.py"
            script.write_text(source)
            server, _ = start_server(threads, script=script)
            try:
                rows.append((name, *page_loads(browser, server.url, reps)))
            finally:
                server.stop()
            log(f"reference ({name}): cold {rows[-1][1][0]:.2f} s, warm {stats([w[1] for w in rows[-1][2]])}")
    return rows


def new_context(browser, height: int = 1000):
    context = browser.new_context(viewport={"width": 1440, "height": height})
    context.add_init_script(OBSERVE_JS)
    return context


def fracs(n: int) -> list[tuple[float, float]]:
    """``n`` well-spread points of the map's plot area, as fractions (x from the left, y from the top)."""
    return [(0.1 + 0.8 * ((0.5 + i * 0.618034) % 1), 0.1 + 0.8 * ((0.25 + i * 0.381966) % 1)) for i in range(n)]


def steered_actions(page) -> str:
    """The steered panel's action arrows (the result's first 'Actions:' caption, without its timing)."""
    return page.locator(RESULT).get_by_text(re.compile(r"^Actions: ")).first.inner_text().split(" · ")[0]


def click_times(page, clicks: list) -> list[tuple[float | None, float, float, bool, float | None]]:
    """For each ``click()`` (a callable): seconds to the result panel's change (None: no change), to the app idle
    and to the last DOM change; whether the steered rollout's actions changed; and the seconds until the
    steered figure was drawn anew (None: it was not)."""
    out = []
    for click in clicks:
        before, actions = page.locator(RESULT).inner_text(), steered_actions(page)
        page.evaluate("() => { window.__benchRan = false; }")
        page.evaluate(FIGURE_WATCH_JS)
        t = time.perf_counter()
        click()
        how = page.wait_for_function(CHANGE_JS, arg=before, timeout=180_000).json_value()
        changed = time.perf_counter() - t if how == "changed" else None
        page.wait_for_selector(IDLE, timeout=180_000)
        idle = time.perf_counter() - t
        quiet_ms = page.wait_for_function(QUIET_JS, polling=100, timeout=180_000).json_value()
        figure_ms = page.evaluate("() => window.__benchFigure")
        out.append((changed, idle, max(idle, time.perf_counter() - t - quiet_ms / 1000),
                    steered_actions(page) != actions, None if figure_ms is None else figure_ms / 1000))
        log(f"  click: change {changed if changed is None else round(changed, 2)} s, idle {idle:.2f} s, "
            f"drawn {out[-1][2]:.2f} s, new actions: {out[-1][3]}, figure redrawn after {out[-1][4]} s")
    return out


def steering(browser, url: str, n: int, set_dir: Path = SET) -> tuple[str, list, list]:
    """(mode, per-click times, controls for the library timing) on the Steering page of the server's grid set
    ``set_dir``."""
    context = new_context(browser, 2300)
    try:
        *_, page, _ = visit(context, f"{url}/steering")
        latent = page.get_by_text("Latent code z (metacontroller)", exact=True)
        if ((set_dir / "metacontroller.json").exists() and (set_dir / "reports" / "latent_map.json").exists()
                and latent.count()):
            latent.click()
            svg = page.locator(".lm-svg")
            svg.wait_for(timeout=180_000)  # drawn by the run the click started; then let that run finish
            page.wait_for_selector(IDLE, timeout=180_000)
            page.wait_for_function(QUIET_JS, polling=100, timeout=180_000)  # the layout has settled
            box = svg.bounding_box()
            points = fracs(n)
            screen = [(box["x"] + (ML + fx * (W - ML - MR)) / W * box["width"],
                       box["y"] + (MT + fy * (H - MT - MB)) / H * box["height"]) for fx, fy in points]
            return "latent", click_times(page, [lambda p=p: page.mouse.click(*p) for p in screen]), points
        from irl_core.palette import SUBGOAL_NAMES
        order = [1, 2, 3, 0][:n]  # the page starts on subgoal 0; a value seen before would come from its cache
        group = page.locator("[data-testid='stRadio']").filter(has_text="Subgoal held fixed")
        return "gt", click_times(page, [lambda g=g: group.get_by_text(SUBGOAL_NAMES[g], exact=True).click()
                                        for g in order]), order
    finally:
        context.close()


def steerable_root(tmp: Path) -> Path:
    """A checkpoints root whose grid set holds the shipped base model and a metacontroller with random weights
    whose decoder makes U depend strongly on z (decoder_init_std 1, output weights ×3, as in
    tests/test_browser_steering.py), with its latent map. On the shipped set no point of the map changes a
    single action when its metacontroller cannot steer the base model (the 7×7 set), so the page never redraws the
    steered rollout; here most clicks do, and the clicks time a rollout that is recomputed *and* redrawn. The folder
    is named as the set the app opens on, so that the app opens on it."""
    import torch
    from irl_core.checkpoints import atomic_write_json
    from irl_core.discovery import discovery_preset, save_metacontroller
    from irl_core.metacontroller import MetaController, MetaControllerConfig
    from irl_core.pretrain import load_base_model
    from irl_core.latent_map import file_digest, latent_map
    folder = tmp / SET.name
    folder.mkdir(parents=True)
    for suffix in (".json", ".safetensors"):
        shutil.copyfile((SET / "base").with_suffix(suffix), (folder / "base").with_suffix(suffix))
    base = load_base_model(folder / "base")
    layer = base.n_layers // 2
    torch.manual_seed(0)
    meta = MetaController(MetaControllerConfig(d_model=base.cfg.d_model, rank=16, decoder_init_std=1.0)).eval()
    with torch.no_grad():
        meta.decoder.out.weight.mul_(3.0)
    save_metacontroller(folder / "metacontroller", meta, base, layer, discovery_preset("tiny"),
                        {"base_checkpoint": str(folder / "base"), "note": "random weights, for scripts/bench_app.py"})
    rep = latent_map(base, meta, layer, episodes=64)
    rep["metacontroller_sha256"] = file_digest(folder / "metacontroller.safetensors")
    atomic_write_json(folder / "reports" / "latent_map.json", rep)
    return tmp


def library_times(mode: str, controls: list, reps: int = 10, set_dir: Path = SET) -> list[float]:
    """Seconds per ``irl_core.steering.steer`` call with the page's defaults (layout 0, held-out task, t0 = 0,
    greedy, 30 diagnostic steps after the paper's end) on ``set_dir``'s models, loaded once."""
    from irl_core.latent_map import Projection
    from irl_core.steering import steer
    if mode == "latent":
        import json
        from irl_core.discovery import load_metacontroller
        meta, model, layer, _ = load_metacontroller(set_dir / "metacontroller", base=set_dir / "base")
        rep = json.loads((set_dir / "reports" / "latent_map.json").read_text())
        proj, (x0, x1), (y0, y1) = Projection.from_dict(rep["projection"]), rep["bounds"]["x"], rep["bounds"]["y"]
        specs = [proj.to_code([x0 + fx * (x1 - x0), y1 - fy * (y1 - y0)]) for fx, fy in controls]
        kw = {"meta": meta}
    else:
        from irl_core.controllers import load_gt_controllers
        from irl_core.pretrain import load_base_model
        model, gt = load_base_model(set_dir / "base"), load_gt_controllers(set_dir / "gt_controllers")[0]
        layer, specs, kw = gt.layer, controls, {"gt": gt}
    steer(model, layer, specs[0], end_on_wrong=False, diagnostic_steps=30, **kw)  # warm-up
    out = []
    for i in range(reps):
        t = time.perf_counter()
        steer(model, layer, specs[i % len(specs)], end_on_wrong=False, diagnostic_steps=30, **kw)
        out.append(time.perf_counter() - t)
    return out


def click_table(title: str, mode: str, clicks: list, lib: list[float]) -> list[str]:
    """Markdown lines: the per-click latencies of :func:`steering`, and the library's time for the same rollouts."""
    changed = [c[0] for c in clicks if c[0] is not None]
    redrawn = [c for c in clicks if c[3]]
    what = (f"latent-code mode: {len(clicks)} clicks on different points of the latent map" if mode == "latent" else
            f"the latent-code mode could not be selected, so the ground-truth controller mode: {len(clicks)} changes "
            "of the subgoal held fixed")
    out = [f"{title} ({what}; page defaults: layout seed 0, held-out task, t₀ = 0, greedy, 30 diagnostic steps; "
           f"{len(redrawn)} of {len(clicks)} clicks changed the steered actions):", "",
           "| measure | median (range) |", "|---|---|",
           f"| click → steered rollout panel's content changes | {stats(changed)} |",
           f"| click → app idle | {stats([c[1] for c in clicks])} |",
           f"| click → drawn (last DOM change) | {stats([c[2] for c in clicks])} |"]
    figure = [c[4] for c in clicks if c[4] is not None]
    if figure:
        out += [f"| click → the steered rollout's figure drawn anew (clicks that changed it) | {stats(figure)} |"]
    out += [f"| library call `irl_core.steering.steer(...)`, same kind of rollout, models loaded | {stats(lib)} |"]
    if len(changed) < len(clicks):
        out += ["", f"{len(clicks) - len(changed)} of {len(clicks)} clicks left the panel's text unchanged "
                "(the new code gave the same rollout and timing text); they count only for the idle time."]
    return out


def stats(xs: list[float], n: bool = True) -> str:
    """Median (min–max) of seconds."""
    if not xs:
        return "—"
    return f"{statistics.median(xs):.2f} s ({min(xs):.2f}–{max(xs):.2f}{f', n = {len(xs)}' if n else ''})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="warm visits per page (median)")
    ap.add_argument("--clicks", type=int, default=8, help="clicks on the latent map")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the server")
    ap.add_argument("--note", default="", help="a sentence to add to the section, e.g. about other jobs")
    args = ap.parse_args()
    if args.reps < 1 or args.clicks < 1:
        ap.error("--reps and --clicks must be at least 1")
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not chromium:
        log(f"error: Chromium not found at {CHROMIUM} (or as `chromium` on PATH); {INSTALL_HINT}")
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        log("error: the playwright package is missing: pip install -r requirements-dev.txt")
        return 2
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    started, load_before = datetime.datetime.now(datetime.timezone.utc), os.getloadavg()[0]
    rows, server, pw, browser = [], None, None, None
    steer_tmp = tempfile.TemporaryDirectory(prefix="bench-app-")  # removed at the end, or at exit on an error
    log("page scripts alone (AppTest)…")
    scripts = script_times(args.reps + 2)
    try:
        log("starting the app server…")
        server, server_s = start_server(args.threads)
        log(f"  healthy after {server_s:.2f} s")
        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        for p in pages():
            cold, warm, errors = page_loads(browser, f"{server.url}/{p.url_path}", args.reps)
            rows.append((p, cold, warm, errors))
            log(f"{p.title}: cold {cold[0]:.2f} / {cold[1]:.2f} s, warm {stats([w[1] for w in warm])}")
        log("menu navigation…")
        menu = navigation(browser, server.url, args.reps)
        log("steering…")
        mode, clicks, controls = steering(browser, server.url, args.clicks)
        server.stop()
        server = None
        log("steering a set whose codes change the rollout…")
        steerable = steerable_root(Path(steer_tmp.name)) / SET.name
        server, _ = start_server(args.threads, root=steerable.parent)
        s_mode, s_clicks, s_controls = steering(browser, server.url, args.clicks, steerable)
        server.stop()
        server = None
        log("reference apps…")
        references = reference_loads(browser, args.threads, args.reps)
    finally:
        if browser is not None:
            browser.close()
        if pw is not None:
            pw.stop()
        if server is not None:
            server.stop()
    log("library steer() calls…")
    lib = library_times(mode, controls)
    s_lib = library_times(s_mode, s_controls, set_dir=steerable)
    steer_tmp.cleanup()

    from irl_core.machine import describe_machine
    cmd = shlex.join(["python", "scripts/bench_app.py", *sys.argv[1:]])
    out = [f"## App load time and steering latency (measured {started:%Y-%m-%d %H:%M} UTC)", "",
           f"Machine: {describe_machine()}. Server: `streamlit run app.py` headless on localhost, "
           f"OMP_NUM_THREADS={args.threads or 'unset'}; browser: headless Chromium ({chromium}) through Playwright.",
           "", f"Command: `{cmd}`", "",
           f"App server start (process start → health check OK): **{server_s:.2f} s**.", "",
           "| page | cold: app idle | cold: drawn | warm: app idle | warm: drawn | page script: first / rerun | "
           "exceptions shown |", "|---|---|---|---|---|---|---|"]
    out += [f"| {p.title} (/{p.url_path}) | {cold[0]:.2f} s | {cold[1]:.2f} s | {stats([w[0] for w in warm], n=False)} | "
            f"{stats([w[1] for w in warm], n=False)} | {scripts[p.title][0]:.2f} s / {scripts[p.title][1] * 1000:.0f} ms | "
            f"{errors} |" for p, cold, warm, errors in rows]
    out += [f"| *reference: {name}* | {cold[0]:.2f} s | {cold[1]:.2f} s | {stats([w[0] for w in warm], n=False)} | "
            f"{stats([w[1] for w in warm], n=False)} | — | {errors} |" for name, cold, warm, errors in references]
    out += ["", "Cold: the first visit of the page in a new browser context (empty HTTP cache, new session); "
            "pages are visited in menu order, so the server's model caches hold what earlier pages loaded. Warm: "
            f"median (range) of {args.reps} visits in new pages of the same context (new sessions, warm caches). "
            "Timed from `page.goto` to *app idle* (`data-test-script-state='notRunning'` after the page's script "
            f"ran) and to *drawn* (the page's last DOM change, found by waiting {QUIET} ms without one): the "
            "browser may still be drawing after the script's end, e.g. a new page parses Plotly's bundle before "
            "it shows the page's elements. The *reference* rows are two tiny apps on their own servers, timed "
            "the same way: what Streamlit itself and a first Plotly chart cost a new tab on this machine. *Page "
            "script*: the page's script alone, run by Streamlit's AppTest in this process before the server starts "
            "(no browser; page defaults): its first run (pages in menu order in one process, so what earlier pages "
            f"imported or cached is loaded) and the median of {args.reps + 2} reruns.", ""]
    out += ["Moving through the app from the sidebar's menu, as a user does (one session, so the browser has "
            f"Streamlit's and Plotly's code loaded; each page entered {args.reps} times, in menu order): click → "
            "app idle / drawn, median (range):", "",
            "| page | menu click: app idle | menu click: drawn |", "|---|---|---|"]
    out += [f"| {title} | {stats([x[0] for x in v], n=False)} | {stats([x[1] for x in v], n=False)} |"
            for title, v in menu.items()]
    out += [""]
    out += click_table("Steering page on the shipped set", mode, clicks, lib)
    changed = sum(bool(c[3]) for c in clicks)
    shipped = (f"On the shipped set {changed} of {len(clicks)} clicks changed the steered actions, so the steered "
               "figure was redrawn after those." if changed else
               "The shipped metacontroller does not steer this base model: no point of its map changes a single "
               "action, so above only the panel's text (code, timing) changes and the steered figure is not redrawn.")
    out += ["", shipped + " The same clicks on a set whose codes change the rollout by construction (the shipped base "
            "model; a metacontroller with random weights whose decoder makes U depend strongly on z, and its latent "
            "map; made by `steerable_root` in this script):", ""]
    out += click_table("Steering page on that set", s_mode, s_clicks, s_lib)
    out += ["", f"Load average (1 min) before the run {load_before:.2f}, after it {os.getloadavg()[0]:.2f}, "
            f"on {os.cpu_count()} logical cores (the benchmark's own server, browser and this process count too)."
            + (f" {args.note}" if args.note else "")]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
