"""What the app's sidebar chooses (environment, checkpoint set, device) and how pages read the choice.

Light on purpose: importing this module imports neither torch nor streamlit (streamlit is imported inside
the functions that draw or read widgets), so ``app.py`` can draw its sidebar before any page pulls in
torch (paths and the shipped sets come from the equally light ``irl_core.paths``).

* A **checkpoint set** is a folder of artifacts for one environment: ``base.{json,safetensors}``, other
  checkpoints beside it (``gt_controllers``, ``metacontroller``…) and ``reports/`` (JSON reports, ``.npz``
  exports). The catalogue lists the shipped sets first (``<root>/grid5``, the laptop 5×5 world whose base model
  steers, which the app opens on, then ``<root>/grid``, the paper's 7×7 world, whose
  CPU-trained base model is not steerable; ``<root>/ant`` for the ant), then every other
  folder under the checkpoints root that holds a ``base.json``. Users pick from it; they never type paths.
* A gridworld set's **world** (``grid7`` or ``grid5``) is read from its ``base.json``
  (``config.world``; a set without one is named after its world, or is the paper's ``grid7``).
* The **checkpoints root** is ``$IRL_CHECKPOINTS_DIR`` when set, else ``checkpoints/`` of the repository;
  it is read at call time, so tests can point the app at a temporary folder.
* Pages call :func:`current` (which works without the sidebar too, e.g. a page run alone by AppTest).
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from irl_core.paths import REPO_ROOT, SHIPPED_SETS, checkpoints_root
ENVIRONMENTS: dict[str, str] = {"grid": "Gridworld-pinpad", "ant": "Ant-pinpad"}
GRID_ONLY = "Ant-pinpad: grid only for now. Choose *Gridworld-pinpad* in the sidebar to see this page."
# st.session_state keys (also the sidebar widgets' keys)
ENV_KEY, SET_KEY, DEVICE_KEY = "irl_env", "irl_checkpoint_set", "irl_device"
SWITCHING_SOURCE_KEY = "switching_source"  # the Switching page's export: "" the shipped one, else a sweep point's path
_SCAN_DEPTH = 3  # how deep below the root the catalogue looks for base.json
# what a set may hold, shown under the sidebar's choice: (file, label)
_CONTENTS = (("base.json", "base model"), ("gt_controllers.json", "GT controllers"),
             ("metacontroller.json", "metacontroller"), ("expert.json", "ant expert"))


@dataclass(frozen=True)
class Page:
    """One page of the app (``st.Page`` arguments)."""

    file: str       # relative to the repository root
    title: str
    icon: str
    url_path: str   # "" for the default page


_PAGES = (
    Page("app_pages/grid/overview.py", "Overview", ":material/home:", ""),
    Page("app_pages/grid/base_model.py", "Linear probes", ":material/layers:", "probes"),
    Page("app_pages/grid/switching.py", "Switching", ":material/timeline:", "switching"),
    Page("app_pages/grid/rate_distortion.py", "Rate–distortion", ":material/scatter_plot:", "rate-distortion"),
    Page("app_pages/grid/steering.py", "Steering", ":material/joystick:", "steering"),
    Page("app_pages/grid/internal_rl.py", "Internal RL", ":material/trending_up:", "internal-rl"),
)


_ANT_PAGES = (
    Page("app_pages/ant/overview.py", "Overview", ":material/home:", ""),
    Page("app_pages/ant/rollouts.py", "Rollouts", ":material/movie:", "ant-rollouts"),
)


def pages(env: str = "grid") -> list[Page]:
    """The menu of environment ``env`` in order: the ant's pages for ``"ant"``, else the grid's (a page whose
    file is not there yet is left out). Both menus have a default page at ``/``, so switching the sidebar's
    environment lands on that environment's overview."""
    chosen = _ANT_PAGES if env == "ant" else _PAGES
    return [p for p in chosen if (REPO_ROOT / p.file).exists()]


@dataclass(frozen=True)
class CheckpointSet:
    """A folder of artifacts for one environment (see the module docstring)."""

    path: Path
    env: str
    label: str
    shipped: bool = False

    @property
    def reports_dir(self) -> Path:
        return self.path / "reports"

    def contents(self) -> list[str]:
        """What the folder holds, e.g. ``["base model", "reports: probes, switching"]`` (empty if missing)."""
        if not self.path.is_dir():
            return []
        out = [label for name, label in _CONTENTS if (self.path / name).exists()]
        if self.reports_dir.is_dir():
            names = sorted({p.stem for p in self.reports_dir.iterdir() if p.suffix in (".json", ".npz")})
            if names:
                out.append("reports: " + ", ".join(names))
        return out


def _env_of(base_json: Path, root: Path) -> str:
    """The environment of a set: from the checkpoint's kind, else from the first folder below the root."""
    try:
        kind = str(json.loads(base_json.read_text()).get("kind", ""))
    except (OSError, ValueError, AttributeError):
        kind = ""
    if "ant" in kind:
        return "ant"
    if "grid" in kind:
        return "grid"
    first = base_json.parent.relative_to(root).parts[:1]
    return "ant" if first == ("ant",) else "grid"


def _base_jsons(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("reports", "__pycache__"))
        if depth >= _SCAN_DEPTH:
            dirs[:] = []
        if "base.json" in files:
            found.append(Path(folder) / "base.json")
    return found


# the shipped sets of each environment, in menu order (listed even when missing, so that pages can say what to make)
# what each shipped set is, in the menu (the first shipped set of an environment is what the app opens on)
SHIPPED_LABELS: dict[str, str] = {
    "grid5": "grid5: the 5×5 laptop world (shipped)",
    "grid": "grid: the paper's 7×7 world, CPU-pretrained, not steerable (shipped)",
    "ant": "ant (shipped)",
}


def catalogue(env: str = "grid", root: str | Path | None = None) -> list[CheckpointSet]:
    """Checkpoint sets of ``env``: the shipped ones (:data:`SHIPPED_SETS`, listed even when missing, so that
    pages can say what to make), then any other folder under the root holding a ``base.json``."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}; choose one of {list(ENVIRONMENTS)}")
    root = Path(root) if root is not None else checkpoints_root()
    shipped = [root / name for name in SHIPPED_SETS[env]]
    sets = [CheckpointSet(path, env, SHIPPED_LABELS.get(path.name, f"{path.name} (shipped)"), shipped=True)
            for path in shipped]
    if root.is_dir():
        for base_json in _base_jsons(root):
            folder = base_json.parent
            if folder in shipped or _env_of(base_json, root) != env:
                continue
            rel = folder.relative_to(root)
            sets.append(CheckpointSet(folder, env, str(rel) if str(rel) != "." else root.name))
    return sets


@functools.lru_cache(maxsize=1)
def devices() -> tuple[str, ...]:
    """``("cpu",)``, plus ``"cuda"`` when torch sees a GPU. torch is only imported where an NVIDIA driver is
    present, so that the sidebar stays fast on CPU machines."""
    if not (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()):
        return ("cpu",)
    try:
        import torch
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    except Exception:  # a broken CUDA install must not break the app
        return ("cpu",)


@dataclass(frozen=True)
class Selection:
    """The sidebar's choice, as pages see it."""

    env: str
    checkpoint_set: CheckpointSet
    device: str

    @property
    def set_dir(self) -> Path:
        return self.checkpoint_set.path

    @property
    def grid(self) -> bool:
        return self.env == "grid"

    @property
    def world(self):
        """The :class:`~irl_core.envs.worlds.GridWorld` of a gridworld set (see the module docstring)."""
        return set_world(self.set_dir)


def set_world(set_dir: str | Path):
    """The world of the gridworld checkpoint set in ``set_dir``: its base model's ``config.world``, else the
    world the folder is named after, else ``grid7``."""
    from irl_core.envs.worlds import WORLDS, get_world
    set_dir = Path(set_dir)
    try:
        name = json.loads((set_dir / "base.json").read_text()).get("config", {}).get("world")
    except (OSError, ValueError, AttributeError):
        name = None
    if name in WORLDS:
        return get_world(name)
    return get_world(set_dir.name if set_dir.name in WORLDS else "grid7")


def chosen_world(s: CheckpointSet) -> str:
    """``grid5``: the laptop 5×5 world … : the world's name and what it is, for the sidebar."""
    w = set_world(s.path)
    return f"{w.name}: {w.title}"


def resolve(state) -> Selection:
    """The selection stored in ``state`` (a mapping such as st.session_state), with defaults for anything
    missing or no longer valid (a set that disappeared, a device that is not there)."""
    env = state.get(ENV_KEY, "grid")
    env = env if env in ENVIRONMENTS else "grid"
    sets = catalogue(env)
    chosen = state.get(SET_KEY)
    ck = next((s for s in sets if str(s.path) == chosen), sets[0])
    device = state.get(DEVICE_KEY, "cpu")
    return Selection(env, ck, device if device in devices() else "cpu")


def current() -> Selection:
    """The selection of this session (defaults when the sidebar has not run, e.g. a page tested alone)."""
    import streamlit as st
    return resolve(st.session_state)


def current_grid() -> Selection:
    """:func:`current` for a gridworld page: with an ant set selected (a deep link to a grid page), the page says
    so in one line and stops there."""
    import streamlit as st
    sel = current()
    if not sel.grid:
        st.info(GRID_ONLY)
        st.stop()
    return sel


def sidebar() -> Selection:
    """Draw the environment / checkpoint set / device choices in the sidebar; returns the selection."""
    import streamlit as st
    state = st.session_state
    if state.get(ENV_KEY) not in ENVIRONMENTS:
        state[ENV_KEY] = "grid"
    with st.sidebar:
        env = st.selectbox("Environment", list(ENVIRONMENTS), format_func=ENVIRONMENTS.get, key=ENV_KEY)
        sets = catalogue(env)
        paths = [str(s.path) for s in sets]
        if state.get(SET_KEY) not in paths:
            state[SET_KEY] = paths[0]
        labels = {str(s.path): s.label for s in sets}
        st.selectbox("Checkpoint set", paths, format_func=labels.get, key=SET_KEY,
                     help="The shipped set, or another folder with a base.json under the checkpoints root "
                          f"({checkpoints_root()}).")
        chosen = next(s for s in sets if str(s.path) == state[SET_KEY])
        held = chosen.contents()
        if env == "grid":
            st.caption(f"World **{chosen_world(chosen)}**")
        st.caption(" · ".join(held) if held else "This set is empty: its pages say which command fills it.")
        options = list(devices())
        if state.get(DEVICE_KEY) not in options:
            state[DEVICE_KEY] = options[0]
        st.selectbox("Device", options, key=DEVICE_KEY, help="Where pages that run a model compute (cuda when "
                                                            "torch sees a GPU).")
    return resolve(state)
