"""Fixtures for the app's tests: tiny checkpoint sets, a live ``streamlit run app.py`` server, and Chromium.

Use it from a test module with::

    pytest_plugins = ["browser_support"]

which registers the fixtures below once for the whole session (several modules may name it; the server
and the browser are still started once).

Fixtures
    ``tiny_app_set`` (session)        a checkpoint-set folder made from the tiny presets: ``base.*``,
                                      ``metacontroller.*``, ``reports/switching.npz`` (8 episodes) and
                                      ``reports/discovery.json`` (3 tiny sweep points with examples).
    ``app_checkpoints_root`` (session) a checkpoints root holding the shipped ``grid`` and ``ant`` sets
                                      (symlinks to ``checkpoints/``) and the tiny set as ``tiny``.
    ``app_server`` (session)          an :class:`AppServer` (``.url``, ``.root``, ``.log``) running
                                      ``streamlit run app.py`` headless on a free localhost port with
                                      ``IRL_CHECKPOINTS_DIR=app_checkpoints_root``; stopped at the end.
    ``browser`` (session)             Playwright's Chromium (``/usr/bin/chromium`` or ``$IRL_CHROMIUM``,
                                      ``--no-sandbox``). If it is missing the tests FAIL with how to install it.
    ``browser_context`` (session)     one context (viewport 1440×1000) shared by the tests' pages.
    ``app_page`` (function)           an :class:`AppPage` on a new page (a new Streamlit session). It
                                      records console errors, page errors and requests to non-local hosts,
                                      and fails the test at teardown if there were any. ``allow_console(regex)``
                                      excuses an expected message; ``goto`` excuses the two 404s that
                                      Streamlit's own base-path probe causes on a deep link such as
                                      ``/probes`` (streamlit issue #7074).

:class:`AppPage` methods: ``goto(url_path="")`` opens a page of the app and waits for its script to finish;
``wait()`` waits for the script after an interaction (the ``stApp`` element's
``data-test-script-state='notRunning'``); ``select_sidebar(label, option)`` picks an option of a sidebar
selectbox and ``choose(label, option)`` of any selectbox; ``screenshot(name)`` saves the whole page as
``test-artifacts/screenshots/<name>.png``; ``assert_no_exception()``; ``problems()`` lists what the
teardown would fail on; ``.page`` is the Playwright page. ``start_app_server(root)`` starts another server
(e.g. on a checkpoints root of a test's own; call ``.stop()`` when done).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = os.environ.get("IRL_CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = "install it with `apt-get update && apt-get install -y chromium` (README's test command does this)"
RUNNING = "[data-testid='stApp'][data-test-script-state='running']"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


# --- tiny artifacts ---------------------------------------------------------------------------------------
def make_tiny_set(base_checkpoint: Path, folder: Path, work: Path) -> Path:
    """A checkpoint set made with the tiny presets (seconds on one CPU thread); returns ``folder``.

    ``base_checkpoint`` is a tiny base model (conftest's ``tiny_base``); ``work`` holds the training runs.
    """
    from irl_core.checkpoints import atomic_write_json
    from irl_core.discovery import discovery_preset, export_switching, train
    from irl_core.sweeps import SWITCHING_DIR, add_switching_exports, collect_results, point_name, sweep_table
    from irl_core.pretrain import load_base_model
    from irl_core.runs import Run

    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".safetensors"):
        shutil.copyfile(Path(base_checkpoint).with_suffix(suffix), (folder / "base").with_suffix(suffix))
    base_path = folder / "base"
    base = load_base_model(base_path)
    run = Run(work / "metacontroller")
    train(base, discovery_preset("tiny", alpha=0.1), run, seed=0, progress=False, base_checkpoint=str(base_path))
    for suffix in (".json", ".safetensors"):
        shutil.copyfile((run.checkpoint_dir / "metacontroller").with_suffix(suffix),
                        (folder / "metacontroller").with_suffix(suffix))
    export_switching(folder / "metacontroller", folder / "reports" / "switching.npz", episodes=8, seed=0)
    sweep = work / "sweep"
    points = [("frozen", 0.0), ("frozen", 0.5), ("cotrained", 0.1)]
    for variant, alpha in points:
        train(base, discovery_preset("tiny", alpha=alpha, variant=variant, steps=2),
              Run(sweep / "points" / point_name(variant, alpha, 0)), seed=0, progress=False,
              base_checkpoint=str(base_path))
    rows = collect_results(sweep, examples=4)
    add_switching_exports(rows, sweep, folder / "reports" / SWITCHING_DIR, progress=False, episodes=8)
    table = sweep_table(rows, base_path, "tiny", {"steps": 2}, ran=len(points))
    atomic_write_json(folder / "reports" / "discovery.json", table)
    return folder


@pytest.fixture(scope="session")
def tiny_app_set(tiny_base, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_app_set")
    return make_tiny_set(tiny_base, root / "tiny", root / "work")


@pytest.fixture(scope="session")
def app_checkpoints_root(tiny_app_set, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkpoints_root")
    for env in ("grid5", "grid", "ant"):
        if (ROOT / "checkpoints" / env).exists():
            (root / env).symlink_to(ROOT / "checkpoints" / env, target_is_directory=True)
    (root / "tiny").symlink_to(tiny_app_set, target_is_directory=True)
    return root


# --- the app server ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    """A ``streamlit run app.py`` process started by :func:`start_app_server`."""

    url: str
    root: Path | None
    log: Path
    process: subprocess.Popen

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_app_server(checkpoints_root: Path | None = None, timeout: float = 90.0,
                     extra_args: tuple[str, ...] = ()) -> AppServer:
    """Start the app headless on a free localhost port and wait until it answers its health check.

    Everything else comes from the repository's ``.streamlit/config.toml``, so the tests check the app as
    users run it (e.g. that it sends no usage statistics); ``extra_args`` adds ``--section.option=value``s.
    """
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / f"streamlit-{port}.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if checkpoints_root is not None:
        env["IRL_CHECKPOINTS_DIR"] = str(checkpoints_root)
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.port={port}",
           "--server.address=127.0.0.1", "--server.fileWatcherType=none", *extra_args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = AppServer(f"http://127.0.0.1:{port}", checkpoints_root, log, proc)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"streamlit did not answer on {server.url} within {timeout:.0f} s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def app_server(app_checkpoints_root):
    yield from serving(app_checkpoints_root)


def serving(root):
    """A fixture body: the app served on checkpoints root ``root`` (a start failure fails the test in one line)."""
    try:
        server = start_app_server(root)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


def page_on(context, server):
    """A fixture body: one page (its own Streamlit session) on ``server``, failing the test on console errors."""
    app = AppPage.open(context, server)
    yield app
    app.page.close()
    app.fail_on_problems()


# --- the browser ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        found = shutil.which("chromium")
        if not found:
            pytest.fail(f"Chromium not found at {CHROMIUM}: the browser tests need it; {INSTALL_HINT}", pytrace=False)
        chromium = found
    else:
        chromium = CHROMIUM
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need the playwright package: pip install -r requirements-dev.txt", pytrace=False)
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
    except Exception as e:  # noqa: BLE001 - report any launch failure as a test failure with the cause
        pw.stop()
        pytest.fail(f"could not start Chromium ({chromium}): {e}", pytrace=False)
    yield b
    b.close()
    pw.stop()


@dataclass
class AppPage:
    """A browser page on the app, recording what a clean app must not produce."""

    page: object
    server: AppServer
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    _allowed: list[re.Pattern] = field(default_factory=list)

    @classmethod
    def open(cls, context, server: AppServer) -> "AppPage":
        """A new page in ``context`` on ``server``, recording console errors, page errors and outside requests."""
        app = cls(context.new_page(), server)
        app.page.on("console", app._on_console)
        app.page.on("pageerror", lambda e: app.console_errors.append(f"page error: {e}"))
        app.page.on("request", app._on_request)
        return app

    def fail_on_problems(self) -> None:
        """Fail the test if the browser saw console errors, page errors or requests to outside hosts."""
        problems = self.problems()
        if problems:
            pytest.fail("the browser saw:\n" + "\n".join(problems), pytrace=False)

    def allow_console(self, pattern: str) -> None:
        """Excuse console errors matching ``pattern`` (a regular expression)."""
        self._allowed.append(re.compile(pattern))

    def _on_console(self, msg) -> None:
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} ({msg.location.get('url', '')})")

    def _on_request(self, request) -> None:
        host = urlparse(request.url).hostname or ""
        if request.url.startswith(("http:", "https:", "ws:", "wss:")) and host not in LOCAL_HOSTS:
            self.external_requests.append(request.url)

    def wait(self, timeout: float = 60_000) -> None:
        """Wait for the app's script to finish after an interaction (or a navigation)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        try:  # a rerun may take a moment to start; a quick one may already be over
            self.page.wait_for_selector(RUNNING, timeout=1500)
        except PlaywrightTimeout:
            pass
        self.page.wait_for_selector(IDLE, timeout=timeout)
        self.page.wait_for_timeout(300)  # let the last deltas paint

    def goto(self, url_path: str = "") -> None:
        if url_path:  # Streamlit probes <url>/<page>/_stcore/… first on a deep link (streamlit issue #7074)
            self.allow_console(rf"404 \(Not Found\) \({re.escape(self.server.url)}/{re.escape(url_path)}"
                               r"/_stcore/(health|host-config)\)")
        self.page.goto(f"{self.server.url}/{url_path}", wait_until="domcontentloaded")
        self.page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
        self.wait()

    def assert_no_exception(self) -> None:
        boxes = self.page.locator("[data-testid='stException']")
        if boxes.count():
            pytest.fail("the app shows an exception:\n" + boxes.first.inner_text(), pytrace=False)

    def select_sidebar(self, label: str, option: str) -> None:
        """Choose ``option`` in the sidebar selectbox labelled ``label``."""
        self.choose(label, option, self.page.locator("[data-testid='stSidebar']"))

    def choose(self, label: str, option: str, within=None) -> None:
        """Choose ``option`` in the selectbox labelled ``label`` (anywhere, or ``within`` a locator)."""
        scope = within if within is not None else self.page
        scope.get_by_role("combobox", name=label, exact=True).click()
        self.page.get_by_role("option", name=option, exact=True).click()
        self.wait()

    def screenshot(self, name: str) -> Path:
        """The whole page (Streamlit scrolls inside its main block, so the viewport grows to fit it for the shot)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        try:  # on a busy machine charts and lazily loaded widgets can still show Streamlit's placeholders
            self.page.wait_for_function("() => !document.querySelector(\"[data-testid='stSkeleton']\")",
                                        timeout=20_000)
        except Exception:  # noqa: BLE001 — a shot of a page still drawing is worth keeping; tests assert elsewhere
            pass
        size = dict(self.page.viewport_size)
        height = self.page.evaluate(
            "() => Math.max(...['stMain', 'stAppViewContainer', 'stSidebarContent'].map(id => {"
            " const e = document.querySelector(`[data-testid='${id}']`); return e ? e.scrollHeight : 0; }))")
        if height > size["height"]:
            self.page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
            self.page.wait_for_timeout(600)
        self.page.screenshot(path=str(path), full_page=True)
        if height > size["height"]:
            self.page.set_viewport_size(size)
        return path

    def problems(self) -> list[str]:
        errors = [e for e in self.console_errors if not any(p.search(e) for p in self._allowed)]
        return [f"console error: {e}" for e in errors] + [f"request to outside: {u}" for u in self.external_requests]


@pytest.fixture(scope="session")
def browser_context(browser):
    """One browser context for the session: its HTTP cache spares every test from parsing Plotly's bundle anew
    (several seconds on a busy CPU). Each test still gets its own page, hence its own Streamlit session."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    yield context
    context.close()


@pytest.fixture
def app_page(browser_context, app_server):
    yield from page_on(browser_context, app_server)
