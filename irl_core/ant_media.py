"""Rendered ant-pinpad rollouts for the app: an H.264 video plus the torso's path, cached on disk and made in the
background (the app's Rollouts page; ``scripts/ant_gallery.py`` and ``scripts/bench_ant_render.py``).

A rollout is asked for with a :class:`RolloutRequest` (policy, task, layout seed, camera, resolution and a step
limit); :func:`make_request` validates user input into one and raises :class:`MediaError` with a one-line
message otherwise. :func:`render_rollout` plays the episode and writes ``video.mp4`` and ``rollout.json`` (the
record: layout, start, the torso's path in cell units, the colours entered with their time steps, the outcome,
the time spent in each phase). :class:`RolloutCache` keeps finished rollouts on disk; :class:`RenderQueue`
renders requests one at a time in a worker thread, with progress (both in :mod:`irl_core.ant_media_store`).

Choices (and why):

* **Same episode as the ``video`` command.** The environment is reset with the layout seed and the expert's
  action noise is seeded with it too, exactly as ``ant_data.record_video`` (``python -m irl_core video``) does,
  so a rollout here and that command give the same trajectory (``expert-mean`` is its ``--mean-action``).
  Frame ``k`` shows the state after ``k`` steps (frame 0 is the reset), so a video of an episode of ``L``
  steps has ``L + 1`` frames at 20 frames/s (one per control step) and time step ``k`` is at ``k / 20`` s.
* **Fast offscreen settings** (:class:`RenderSettings`), measured in BENCHMARKS.md ("Ant rendering"): here
  MuJoCo renders through EGL on Mesa's llvmpipe, a software rasteriser, where 4× multisampling and the
  2048² shadow map of ``envs/ant.py``'s model were most of the frame time. The app renders without
  multisampling, with a 1024² shadow map (512² for frames of at most 320 pixels; the shadows show when a leg
  is lifted), into an offscreen buffer of the frame's size. Pixels differ from the ``video`` command's; the
  trajectory does not.
* **Encoding overlaps rendering.** Frames go to the existing H.264 writer (``ant_data.encode_mp4``) from a
  generator as they are rendered, so ffmpeg encodes in its own process on the other core while MuJoCo renders.
* **Cache key**: policy, task, layout seed, camera, resolution and step limit, plus the sha256 of the expert's
  weights (another checkpoint set, or a retrained expert, never gets a stale video) and
  :data:`RENDER_VERSION`. The cache folder is ``$IRL_ANT_MEDIA_CACHE`` (default ``runs/ant_media/``) with a
  size limit of ``$IRL_ANT_MEDIA_CACHE_MB`` megabytes (default 256); after each new entry the entries used
  longest ago are deleted until the total fits (a hit counts as a use), never the newest one.
* **Background work in a thread.** One worker thread per process renders the queued requests in order (a 2-core
  machine gains nothing from two at once); a request already queued or running is not queued again. Jobs
  outlive the page and the browser session that asked for them; the result is on disk.

This module imports neither streamlit nor argparse.

One module (about 460 lines): the request, the actor that plays it and the renderer share the request's
fields and the record it produces (the cache, the queue and the gallery are in ``irl_core.ant_media_store``).
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from irl_core.envs import ant as A
from irl_core.paths import REPO_ROOT, repo_relative
from irl_core.envs.tasks import ANT_HELDOUT_TASK, ANT_PRETRAIN_TASKS, TaskError, format_task, parse_task

RENDER_VERSION = 2       # bump when the pixels or the record change, so old cache entries are not reused
RECORD_VERSION = 1
FPS = int(round(1 / A.CONTROL_DT))
SEED_MAX = 2**31 - 1
POLICIES: dict[str, str] = {
    "expert-sampled": "expert, sampling its Gaussian (as in dataset D)",
    "expert-mean": "expert, its mean action (as in D*)",
    "base-sampled": "ant base model alone, sampling its Gaussian",
    "base-mean": "ant base model alone, its mean action",
}
BASE_POLICIES = ("base-sampled", "base-mean")  # played by the set's ``base`` checkpoint (irl_core.ant_base)
CAMERA_LABELS: dict[str, str] = {"topdown": "top-down", "chase": "chase"}
RESOLUTIONS: tuple[tuple[int, int], ...] = ((160, 160), (320, 240), (480, 480), (640, 480))
OUTCOMES: dict[str, str] = {"success": "success", "wrong_colour": "wrong colour", "wall": "wall",
                            "height": "fell over", "timeout": "out of time", "stopped": "stopped at the step limit"}
DEFAULT_EXPERT = REPO_ROOT / "checkpoints" / "ant" / "expert"
_log = logging.getLogger(__name__)


class MediaError(ValueError):
    """Bad input or a missing artifact, with a one-line message meant for the user."""


# --------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RolloutRequest:
    """What to render. Build it with :func:`make_request`, which validates every field."""

    policy: str
    task: tuple[int, ...]
    seed: int
    camera: str = "topdown"
    width: int = 480
    height: int = 480
    max_steps: int = A.T_MAX
    inject: tuple[int, int] | None = None  # (colour, from step): the set's gt_controllers steer the base model
    any_task: bool = False  # success on completing any pretraining task (AntPinpadBatch.reset_one any_of)

    @property
    def mean_action(self) -> bool:
        return self.policy.endswith("-mean")

    @property
    def checkpoint_name(self) -> str:
        """The file of a checkpoint set that plays this policy: ``expert`` or ``base``."""
        return "base" if self.policy in BASE_POLICIES else "expert"

    def describe(self) -> str:
        steer = f" · controller for colour {self.inject[0]} from step {self.inject[1]}" if self.inject else ""
        judged = "any pretraining task" if self.any_task else f"task {format_task(self.task)}"
        return (f"{judged} · layout seed {self.seed} · {self.policy}{steer} · "
                f"{CAMERA_LABELS[self.camera]} · {self.width}×{self.height}")

    def fields(self) -> dict:
        d = asdict(self)
        d["task"] = format_task(self.task)
        if self.inject is None:
            del d["inject"]  # keys (and records) of unsteered rollouts are as before injection existed
        else:
            d["inject"] = list(self.inject)
        if not self.any_task:
            del d["any_task"]  # likewise for rollouts judged on their drawn task
        return d


def make_request(policy: str, task, seed, camera: str = "topdown", width: int = 480, height: int = 480,
                 max_steps: int = A.T_MAX, inject: tuple[int, int] | None = None,
                 any_task: bool = False) -> RolloutRequest:
    """A validated :class:`RolloutRequest`; :class:`MediaError` (one line) for anything out of range.

    ``task`` is a task string such as ``"0-3-2"`` or a sequence of colours. A colour outside 0..3 or a colour
    repeated back to back is refused (``envs.tasks.parse_task``); so is a layout seed outside 0..2³¹−1.
    ``any_task``: the episode succeeds on completing any pretraining task (for the base model, which is not
    told its task); ``task`` still seeds nothing but names the episode's drawn task.
    """
    if policy not in POLICIES:
        raise MediaError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    try:
        colours = parse_task(task, "ant")
    except TaskError as e:
        raise MediaError(str(e).splitlines()[0]) from None
    try:
        seed_i = int(seed)
        ok = seed_i == float(seed)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or not 0 <= seed_i <= SEED_MAX:
        raise MediaError(f"layout seed must be a whole number in 0..{SEED_MAX}, got {seed!r}")
    if camera not in A.CAMERAS:
        raise MediaError(f"unknown camera {camera!r}; choose one of {', '.join(A.CAMERAS)}")
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or not 16 <= v <= 1024 or v % 16:
            raise MediaError(f"video {name} must be a multiple of 16 in 16..1024, got {v!r}")
    if not isinstance(max_steps, (int, np.integer)) or not 1 <= max_steps <= A.T_MAX:
        raise MediaError(f"the step limit must be a whole number in 1..{A.T_MAX}, got {max_steps!r}")
    if inject is not None:
        if policy not in BASE_POLICIES:
            raise MediaError("a controller can only be injected into the ant base model (a base-… policy)")
        colour, t0 = inject
        if not (isinstance(colour, (int, np.integer)) and 0 <= colour < A.N_COLOURS):
            raise MediaError(f"the injected colour must be 0..{A.N_COLOURS - 1}, got {colour!r}")
        if not (isinstance(t0, (int, np.integer)) and 0 <= t0 < max_steps):
            raise MediaError(f"the injection step must be a whole number in 0..{max_steps - 1}, got {t0!r}")
        inject = (int(colour), int(t0))
    if not isinstance(any_task, (bool, np.bool_)):
        raise MediaError(f"any_task must be true or false, got {any_task!r}")
    return RolloutRequest(policy, colours, seed_i, camera, int(width), int(height), int(max_steps), inject,
                          bool(any_task))


def task_choices() -> list[tuple[str, str]]:
    """(label, task string) for the 16 pretraining tasks and the held-out task, in the paper's order."""
    out = [(f"{format_task(t)} (pretraining)", format_task(t)) for t in ANT_PRETRAIN_TASKS]
    out.append((f"{format_task(ANT_HELDOUT_TASK)} (held-out)", format_task(ANT_HELDOUT_TASK)))
    return out


# --------------------------------------------------------------------------------------------------
# The expert
# --------------------------------------------------------------------------------------------------
def expert_command(path) -> str:
    return f"python -m irl_core ant-expert --preset cpu --export {path}"


def check_expert(path=DEFAULT_EXPERT) -> Path:
    """``path`` (without suffix) if both of its files are there, else :class:`MediaError` naming the command."""
    path = Path(path)
    path = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    for suffix in (".safetensors", ".json"):
        if not path.with_suffix(suffix).exists():
            raise MediaError(f"the ant expert checkpoint {path.with_suffix(suffix)} is missing; "
                             f"make it with `{expert_command(path)}`")
    return path


def base_command(path) -> str:
    return (f"python -m irl_core ant-data --episodes 20000 --out runs/ant/data/D_seed0.npz && python -m irl_core "
            f"ant-pretrain --data runs/ant/data/D_seed0.npz --preset cpu --export {path}")


def controllers_command(base) -> str:
    base = Path(base)
    return (f"python -m irl_core ant-data --mean-action --episodes 2000 --seed 1 --out runs/ant/data/Dstar_seed1.npz "
            f"&& python -m irl_core ant-gt-controllers --base {base} --data runs/ant/data/Dstar_seed1.npz "
            f"--export {base.parent / 'gt_controllers'}")


def _require(path: Path, what: str, command: str) -> Path:
    path = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    for suffix in (".safetensors", ".json"):
        if not path.with_suffix(suffix).exists():
            raise MediaError(f"the {what} checkpoint {path.with_suffix(suffix)} is missing; make it with `{command}`")
    return path


def check_checkpoint(request: "RolloutRequest", path) -> Path:
    """The checkpoint that plays ``request``'s policy at ``path`` (without suffix), or :class:`MediaError`
    naming the command that makes it; with an injection, the set's ``gt_controllers`` beside it too."""
    if request.checkpoint_name == "expert":
        return check_expert(path)
    path = _require(Path(path), "ant base-model", base_command(path))
    if request.inject:
        _require(path.parent / "gt_controllers", "ant ground-truth controllers", controllers_command(path))
    return path


def policy_digest(request: "RolloutRequest", checkpoint: Path) -> str:
    """The sha256 of the weights that play ``request`` (and of the injected controllers'), for cache keys."""
    digest = file_sha256(checkpoint.with_suffix(".safetensors"))
    if request.inject:
        digest += ":" + file_sha256((checkpoint.parent / "gt_controllers").with_suffix(".safetensors"))
    return digest


def _actor(request: "RolloutRequest", checkpoint) -> tuple[Path, Callable]:
    """The checkpoint and ``act(batch) → actions`` of the request's policy for a one-slot batch; the base model's
    draws are seeded with the layout seed, as the expert's are."""
    path = check_checkpoint(request, checkpoint)
    if request.checkpoint_name == "expert":
        return path, load_expert(path, request.mean_action, request.seed).act
    import torch
    from irl_core.ant_base import BaseModelActor
    from irl_core.ant_pretrain import load_ant_base
    from irl_core.checkpoints import CheckpointError
    try:
        model = load_ant_base(path)
        if request.inject:
            from irl_core.ant_controllers import ControlledActor, load_ant_gt_controllers
            colour, t0 = request.inject
            actor = ControlledActor(model, load_ant_gt_controllers(path.parent / "gt_controllers"),
                                    lambda batch, i: colour if int(batch.t[i]) >= t0 else -1, not request.mean_action)
        else:
            actor = BaseModelActor(model, sample=not request.mean_action)
    except CheckpointError as e:
        raise MediaError(str(e).splitlines()[0]) from None
    actor.start(0, torch.Generator().manual_seed(request.seed))
    one = np.ones(1, dtype=bool)
    return path, lambda batch: actor.act(batch, one)


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_expert(path, mean_action: bool, seed: int):
    """The expert as ``record_video`` loads it (its noise generator seeded with the layout seed)."""
    from irl_core.checkpoints import CheckpointError
    from irl_core.experts.ant_expert import AntExpert
    path = check_expert(path)
    try:
        return AntExpert.load(path, deterministic=mean_action, seed=seed)
    except CheckpointError as e:
        raise MediaError(str(e).splitlines()[0]) from None


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderSettings:
    """Offscreen rendering and encoding settings (see the module docstring; the defaults are the app's).

    ``RenderSettings.model_defaults()`` is what ``envs/ant.py``'s model and the ``video`` command use (4×
    multisampling, a 2048² shadow map, a 1024² offscreen buffer, frames encoded after the episode): the
    benchmark's baseline.
    """

    offsamples: int = 0          # multisampling (MSAA) samples of the offscreen buffer
    shadowsize: int | None = None  # shadow map side (pixels); 0 turns shadows off; None: by frame size
    fit_buffer: bool = True      # offscreen buffer of the frame's size instead of the model's 1024²
    pipelined: bool = True       # encode while rendering (False: keep all frames, encode at the end)

    @classmethod
    def model_defaults(cls) -> "RenderSettings":
        return cls(offsamples=4, shadowsize=2048, fit_buffer=False, pipelined=False)

    def shadow_side(self, width: int, height: int) -> int:
        """The shadow map's side: as set, else 1024 above 320 pixels and 512 up to 320 (a 512² map looks the
        same at 320×240 and saves a quarter of the frame time; at 480×480 its shadows are visibly jagged)."""
        if self.shadowsize is not None:
            return self.shadowsize
        return 512 if max(width, height) <= 320 else 1024


def build_render_model(width: int, height: int, settings: RenderSettings = RenderSettings()):
    """``envs.ant.build_model()`` with ``settings`` applied to its visual options."""
    m = A.build_model()
    m.vis.quality.offsamples = settings.offsamples
    shadow = settings.shadow_side(width, height)
    if shadow:
        m.vis.quality.shadowsize = shadow
    else:  # no shadow pass at all
        m.light_castshadow[:] = 0
    if settings.fit_buffer:
        m.vis.global_.offwidth, m.vis.global_.offheight = width, height
    else:
        m.vis.global_.offwidth = max(m.vis.global_.offwidth, width)
        m.vis.global_.offheight = max(m.vis.global_.offheight, height)
    return m


class _Phases:
    """Wall-clock seconds spent in named phases (``with phases("render"): ...``)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        return _Phase(self, name)

    def add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt


class _Phase:
    def __init__(self, owner: _Phases, name: str):
        self.owner, self.name = owner, name

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.owner.add(self.name, time.perf_counter() - self.t0)


def render_rollout(request: RolloutRequest, checkpoint, out_dir, settings: RenderSettings = RenderSettings(),
                   progress: Callable[[int], None] | None = None, expert_sha256: str | None = None) -> dict:
    """Play ``request`` with the expert at ``checkpoint``, write ``out_dir/video.mp4`` and ``out_dir/rollout.json``;
    returns the record (see :func:`read_record`). ``progress(t)`` is called after every step."""
    from irl_core.ant_data import encode_mp4
    from irl_core.checkpoints import atomic_write_json

    t_start = time.perf_counter()
    phases = _Phases()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with phases("setup"):
        checkpoint, act = _actor(request, checkpoint)
        batch = A.AntPinpadBatch(1, model=build_render_model(request.width, request.height, settings))
        batch.seed(0, request.seed)  # as AntPinpadEnv.reset(seed=...) and record_video
        batch.reset_one(0, task=request.task, any_of=ANT_PRETRAIN_TASKS if request.any_task else None)
        renderer = A.AntRenderer(batch, request.width, request.height)
    layout, start = batch.layout[0].copy(), tuple(int(x) for x in batch.cell[0])
    uv = [batch.uv()[0].copy()]
    progress_log: list[int] = []  # colours entered before each step (the colour sought is read once the task is known)
    entries: list[dict] = []
    end = {"event": "stopped"}

    def frames() -> Iterator[np.ndarray]:
        with phases("render"):
            frame = renderer.render(0, request.camera)
        yield frame
        for t in range(1, request.max_steps + 1):
            k = int(batch.progress[0])
            progress_log.append(k)
            with phases("policy"):
                action = act(batch)
            with phases("physics"):
                _, term, trunc, event = batch.step(action)
            uv.append(batch.uv()[0].copy())
            name = A.EVENTS[int(event[0])]
            if int(batch.progress[0]) > k:
                entries.append({"t": t, "colour": int(batch.tasks[0][k]), "correct": True})
            elif name == "wrong_colour":
                r, c = (int(x) for x in batch.cell[0])
                entries.append({"t": t, "colour": int(layout[r, c]), "correct": False})
            with phases("render"):
                frame = renderer.render(0, request.camera)
            yield frame
            if progress is not None:
                progress(t)
            if term[0] or trunc[0]:
                end["event"] = name if term[0] else "timeout"
                break

    video = out_dir / "video.mp4"
    try:
        t0 = time.perf_counter()
        if settings.pipelined:
            n = encode_mp4(frames(), video, fps=FPS)
        else:
            kept = list(frames())
            t0 = time.perf_counter()
            n = encode_mp4(kept, video, fps=FPS)
        inside = sum(phases.seconds.get(k, 0.0) for k in ("render", "policy", "physics")) if settings.pipelined else 0.0
        phases.add("encode", time.perf_counter() - t0 - inside)
    finally:
        renderer.close()
    length = len(uv) - 1
    followed = batch.tasks[0]  # the drawn task, or with any_task the one the episode ended following
    sought = [int(followed[min(k, len(followed) - 1)]) for k in progress_log]
    record = {
        "version": RECORD_VERSION, "render_version": RENDER_VERSION, **request.fields(),
        "checkpoint": repo_relative(checkpoint),
        "checkpoint_sha256": expert_sha256 or file_sha256(checkpoint.with_suffix(".safetensors")),
        "layout": layout.tolist(), "start": list(start),
        "uv": np.round(np.asarray(uv, dtype=np.float64), 4).tolist(),
        **({"followed": format_task(followed)} if request.any_task else {}),
        "sought": sought, "entries": entries, "outcome": end["event"], "length": length, "frames": n,
        "fps": FPS, "video": video.name,
        "settings": {**asdict(settings), "shadowsize": settings.shadow_side(request.width, request.height)},
        "seconds": {k: round(v, 4) for k, v in phases.seconds.items()},
        "wall_s": round(time.perf_counter() - t_start, 4),
    }
    atomic_write_json(out_dir / "rollout.json", record)
    return record


def short_path(path) -> Path:
    """``path`` relative to the working directory when it lies inside it (still valid, and shorter in messages
    and commands), else unchanged."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return path


def simulate(request: RolloutRequest, checkpoint=DEFAULT_EXPERT) -> dict:
    """The episode of ``request`` without rendering: ``{"outcome", "length"}`` (to pick gallery and benchmark
    seeds quickly; same trajectory as :func:`render_rollout`)."""
    _, act = _actor(request, checkpoint)
    batch = A.AntPinpadBatch(1)
    batch.seed(0, request.seed)
    batch.reset_one(0, task=request.task, any_of=ANT_PRETRAIN_TASKS if request.any_task else None)
    for t in range(1, request.max_steps + 1):
        _, term, trunc, event = batch.step(act(batch))
        if term[0] or trunc[0]:
            return {"outcome": A.EVENTS[int(event[0])] if term[0] else "timeout", "length": t}
    return {"outcome": "stopped", "length": request.max_steps}


_RECORD_KEYS = ("policy", "task", "seed", "camera", "width", "height", "layout", "start", "uv", "entries",
                "outcome", "length", "fps", "video")


def read_record(path) -> dict:
    """A ``rollout.json`` record, checked; :class:`MediaError` (one line) when missing or malformed.

    Keys: the request's fields (``task`` as a string), ``layout`` (4×4 codes), ``start`` (row, col), ``uv``
    ((L+1)×2 torso positions in cell units, one per frame), ``sought`` (L colours sought before each step; with
    ``any_task``, of the task the episode ended following, ``followed``),
    ``entries`` (``{"t", "colour", "correct"}`` for every coloured cell entered, in order), ``outcome`` (a key of
    :data:`OUTCOMES`), ``length`` L, ``frames`` (L+1), ``fps``, ``video`` (file name beside the record),
    ``settings``, ``seconds`` (per phase) and ``wall_s``.
    """
    from irl_core.checkpoints import CheckpointError, read_json
    try:
        rec = read_json(path)
    except CheckpointError as e:
        raise MediaError(str(e).splitlines()[0]) from None
    missing = [k for k in _RECORD_KEYS if not isinstance(rec, dict) or k not in rec]
    if missing:
        raise MediaError(f"{path}: not a rollout record (missing {', '.join(missing)})")
    uv = np.asarray(rec["uv"], dtype=float)
    if uv.ndim != 2 or uv.shape != (rec["length"] + 1, 2) or np.asarray(rec["layout"]).shape != (A.G, A.G):
        raise MediaError(f"{path}: the path has shape {uv.shape}, expected ({rec['length'] + 1}, 2) "
                         f"for {rec['length']} steps")
    if rec["outcome"] not in OUTCOMES:
        raise MediaError(f"{path}: unknown outcome {rec['outcome']!r}")
    return rec
