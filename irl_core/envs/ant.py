"""Ant-pinpad (docs/paper.md §1.2): the classic MuJoCo ant on a 4×4 grid of coloured floor tiles and one wall.

Two front ends over one implementation:

* :class:`AntPinpadBatch` — ``n`` independent ant-pinpad episodes stepped together in one process (a list
  of ``MjData`` sharing one ``MjModel``; all grid logic is vectorised numpy). The expert is trained and the
  datasets are generated with it.
* :class:`AntPinpadEnv` — the gymnasium environment (``irl_core/AntPinpad-v0``): a batch of one plus
  rendering. Because both use the same code, the same seed gives the same episode in either.

Choices the paper leaves open (and why):

* **Model.** gymnasium's ``ant.xml`` (the classic ant: 8 hinge joints, gear 150, torques in [−1, 1]),
  extended with ``mujoco.MjSpec``: 16 floor tiles, a wall block and a border (all *visual only*, so the
  physics never depends on the layout), a top-down camera and a chase camera. The integrator is changed
  from RK4 to ``implicitfast`` at the same 0.01 s timestep: measured 3.6× more physics steps/s on one
  core (the expert must be trained on a 2-core machine) with the same gait qualitatively.
* **Control timestep.** ``FRAME_SKIP = 5`` physics steps of 0.01 s, i.e. 0.05 s (20 Hz), as gymnasium's
  Ant. With ``CELL_SIZE = 1.5`` m, a 3-colour task needs 100–200 control steps for the trained expert
  (see BENCHMARKS.md), which matches the ≈160 steps of the paper's Fig. 6; T = 500 leaves room.
* **Cell size.** 1.5 m, a little more than the ant's span (≈1.2 m with bent legs), so the torso centre
  (which alone decides cells) can stay inside a one-cell corridor while walking.
* **Grid coordinates.** Cell ``(r, c)`` spans ``[c, c+1) × [r, r+1)`` in *cell units* ``(u, v)``
  (``u`` = column axis, ``v`` = row axis, row 0 at the top of the top-down view). World coordinates:
  ``x = (u − G/2)·S``, ``y = (G/2 − v)·S``, so the grid is centred on the origin and "up" (row − 1) is +y.
* **Outside the grid.** Leaving the 4×4 grid counts as entering a wall (termination): the paper's grid has
  no outside, and a visible border marks it.
* **Start.** The start cell is an empty cell; the torso is placed uniformly in the central 70 % of the cell
  (a start on a cell boundary would make the first "entry" ambiguous), at height 0.75 (gymnasium's), with
  a uniform random yaw; joint angles and all velocities get uniform noise in ±0.1.
* **Observation** (``OBS_DIM = 41``, float32, no task or progress information):

  ====== ===== ===============================================================================
  slice  dims  content
  ====== ===== ===============================================================================
  0:27   27    symlog of the usual ant proprioception: ``qpos[2:]`` (torso z, quaternion, 8 joint
                angles) and ``qvel`` (14); contact forces are not included (as gymnasium's Ant-v5)
  27:29  2     global torso ``(x, y)`` divided by the grid half-width ``G·S/2`` (in [−1, 1] on the grid)
  29:37  8     ``(Δx, Δy)`` from the torso to the centre of colour 0, 1, 2, 3, divided by ``G·S``
  37:39  2     ``(Δx, Δy)`` from the torso to the centre of the wall cell, divided by ``G·S``
  39:41  2     the torso's local coordinate in its cell, ``2·frac(u, v) − 1`` ∈ [−1, 1]
  ====== ===== ===============================================================================

* **Reward** 1 on success only. **Termination** (``info["event"]``): ``"success"``, ``"wrong_colour"``
  (entering a colour other than the next one in the task), ``"wall"`` (the centre in the wall cell or
  outside the grid), ``"height"`` (torso z outside [0.2, 1.0]); **truncation** at T = 500 steps.

One module for one environment (about 490 lines): the MJCF arena, the batched simulator, the gymnasium
wrapper and the renderer share its constants and its termination rules, which are its contract.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from irl_core.envs.tasks import ANT_PRETRAIN_TASKS, TaskError, parse_task  # noqa: E402
from irl_core.palette import COLOURS, EMPTY, WALL, hex_to_rgba01  # noqa: E402

G = 4                 # grid side (cells)
N_COLOURS = 4         # O
N_WALLS = 1           # W
T_MAX = 500           # episode length limit (control steps)
CELL_SIZE = 1.5       # metres per cell
TIMESTEP = 0.01       # physics timestep (s)
FRAME_SKIP = 5        # physics steps per control step
CONTROL_DT = TIMESTEP * FRAME_SKIP
Z_RANGE = (0.2, 1.0)  # torso height outside this range terminates
INIT_NOISE = 0.1      # uniform joint-angle and velocity noise at reset
START_MARGIN = 0.15   # the start position avoids this fraction of the cell at each side
INIT_Z = 0.75

EMPTY_CODE, WALL_CODE = -1, -2
PROPRIO_DIM = 27
OBS_DIM = PROPRIO_DIM + 2 + 2 * N_COLOURS + 2 * N_WALLS + 2
COLOUR_OFFSETS = slice(PROPRIO_DIM + 2, PROPRIO_DIM + 2 + 2 * N_COLOURS)  # obs dims 29:37, (Δx, Δy) per colour
EVENTS = ("", "success", "wrong_colour", "wall", "height")
RENDER_SIZE = 480
CAMERAS = ("topdown", "chase")

_ANT_XML = Path(gym.__file__).resolve().parent / "envs" / "mujoco" / "assets" / "ant.xml"
_TILE_HALF_HEIGHT = 0.005
_WALL_HALF_HEIGHT = 0.45


def symlog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------
def build_model(cell_size: float = CELL_SIZE) -> mujoco.MjModel:
    """Gymnasium's classic ant plus visual-only tiles (``tile_r_c``), border and cameras."""
    if not _ANT_XML.exists():
        raise FileNotFoundError(f"gymnasium's ant model was not found at {_ANT_XML}")
    spec = mujoco.MjSpec.from_file(str(_ANT_XML))
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.timestep = TIMESTEP
    spec.visual.global_.offwidth = 1024
    spec.visual.global_.offheight = 1024
    spec.visual.quality.shadowsize = 2048
    # Lights sum to ≈1 on a floor seen from above, so the tiles render close to the palette's colours.
    spec.visual.headlight.ambient = [0.15, 0.15, 0.15]
    spec.visual.headlight.diffuse = [0.25, 0.25, 0.25]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    for light in spec.lights:
        light.diffuse = [0.6, 0.6, 0.6]
        light.specular = [0.05, 0.05, 0.05]
    spec.add_material(name="tile", specular=0.0, shininess=0.0, reflectance=0.0, emission=0.0)
    half = G * cell_size / 2
    world = spec.worldbody
    for geom in world.geoms:
        if geom.name == "floor":
            geom.rgba = [0.55, 0.55, 0.55, 1.0]
            geom.material = ""
    for r in range(G):
        for c in range(G):
            x, y = (c + 0.5) * cell_size - half, half - (r + 0.5) * cell_size
            world.add_geom(name=f"tile_{r}_{c}", type=mujoco.mjtGeom.mjGEOM_BOX,
                           size=[0.47 * cell_size, 0.47 * cell_size, _TILE_HALF_HEIGHT], pos=[x, y, 0.0],
                           rgba=list(hex_to_rgba01(EMPTY)), contype=0, conaffinity=0, material="tile")
    border_rgba = list(hex_to_rgba01(WALL))
    t = 0.05
    for name, pos, size in (("border_n", [0, half + t, 0.05], [half + 2 * t, t, 0.05]),
                            ("border_s", [0, -half - t, 0.05], [half + 2 * t, t, 0.05]),
                            ("border_e", [half + t, 0, 0.05], [t, half, 0.05]),
                            ("border_w", [-half - t, 0, 0.05], [t, half, 0.05])):
        world.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=size, pos=pos, rgba=border_rgba,
                       contype=0, conaffinity=0)
    # MuJoCo cameras look along their −z axis with +y up: this one sees the whole grid, row 0 at the top.
    height = (half + 0.4) / np.tan(np.deg2rad(22.5))
    world.add_camera(name="topdown", pos=[0, 0, height], quat=[1, 0, 0, 0], fovy=45)
    torso = next(b for b in spec.bodies if b.name == "torso")
    torso.add_camera(name="chase", mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM, pos=[0, -4.0, 3.2],
                     xyaxes=[1, 0, 0, 0, 0.625, 0.781], fovy=50)
    return spec.compile()


def cell_of(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell-unit coordinates → ``(row, col, inside)``; ``inside`` is False outside the grid."""
    row, col = np.floor(v).astype(np.int64), np.floor(u).astype(np.int64)
    inside = (row >= 0) & (row < G) & (col >= 0) & (col < G)
    return np.clip(row, 0, G - 1), np.clip(col, 0, G - 1), inside


def sample_layout(rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """A random layout ((4, 4) int8: −1 empty, −2 wall, 0..3 colour) and a distinct empty start cell."""
    cells = rng.permutation(G * G)[: N_COLOURS + N_WALLS + 1]
    layout = np.full(G * G, EMPTY_CODE, dtype=np.int8)
    layout[cells[:N_COLOURS]] = np.arange(N_COLOURS)
    layout[cells[N_COLOURS:N_COLOURS + N_WALLS]] = WALL_CODE
    start = int(cells[-1])
    return layout.reshape(G, G), (start // G, start % G)


def validate_layout(layout: np.ndarray) -> np.ndarray:
    layout = np.asarray(layout)
    if layout.shape != (G, G):
        raise ValueError(f"layout must have shape ({G}, {G}), got {layout.shape}")
    if set(np.unique(layout).tolist()) - {EMPTY_CODE, WALL_CODE, *range(N_COLOURS)}:
        raise ValueError(f"layout codes must be -1 (empty), -2 (wall) or colours 0..{N_COLOURS - 1}")
    for c in range(N_COLOURS):
        if (layout == c).sum() != 1:
            raise ValueError(f"layout must contain colour {c} exactly once")
    return layout.astype(np.int8)


# --------------------------------------------------------------------------------------------------
# Batched simulator
# --------------------------------------------------------------------------------------------------
class AntPinpadBatch:
    """``n`` ant-pinpad episodes stepped together (no auto-reset: call :meth:`reset_one` on finished ones).

    State arrays (numpy, updated after every step): ``qpos`` (n, 15), ``qvel`` (n, 14), ``layout``
    (n, 4, 4) int8, ``tasks`` (list of tuples), ``progress`` (n,) colours visited so far, ``cell`` (n, 2)
    current (row, col), ``t`` (n,) steps taken, ``colour_pos`` (n, 4, 2) and ``wall_pos`` (n, 2) world
    centres of the coloured cells and the wall.
    """

    def __init__(self, n: int, cell_size: float = CELL_SIZE, model: mujoco.MjModel | None = None):
        if n < 1:
            raise ValueError("n must be at least 1")
        self.n = n
        self.cell_size = float(cell_size)
        self.model = model if model is not None else build_model(self.cell_size)
        self.datas = [mujoco.MjData(self.model) for _ in range(n)]
        self.init_qpos = self.model.key_qpos[0].copy() if self.model.nkey else self._default_qpos()
        self.rngs = [np.random.default_rng(i) for i in range(n)]
        self.qpos = np.zeros((n, self.model.nq))
        self.qvel = np.zeros((n, self.model.nv))
        self.layout = np.full((n, G, G), EMPTY_CODE, dtype=np.int8)
        self.tasks: list[tuple[int, ...]] = [ANT_PRETRAIN_TASKS[0]] * n
        self.accept: list[tuple[tuple[int, ...], ...]] = [(ANT_PRETRAIN_TASKS[0],)] * n  # see reset_one(any_of=)
        self.progress = np.zeros(n, dtype=np.int64)
        self.cell = np.zeros((n, 2), dtype=np.int64)
        self.t = np.zeros(n, dtype=np.int64)
        self.colour_pos = np.zeros((n, N_COLOURS, 2))
        self.wall_pos = np.zeros((n, 2))

    def _default_qpos(self) -> np.ndarray:
        q = np.zeros(self.model.nq)
        q[:] = self.model.qpos0
        q[2] = INIT_Z
        return q

    # --- coordinates ---------------------------------------------------------------------------------
    def to_cells(self, xy: np.ndarray) -> np.ndarray:
        """World (..., 2) → cell units (u, v) (..., 2)."""
        half = G / 2
        return np.stack([xy[..., 0] / self.cell_size + half, half - xy[..., 1] / self.cell_size], axis=-1)

    def cell_centre(self, row, col) -> np.ndarray:
        half = G * self.cell_size / 2
        return np.stack([(np.asarray(col) + 0.5) * self.cell_size - half,
                         half - (np.asarray(row) + 0.5) * self.cell_size], axis=-1)

    # --- reset ---------------------------------------------------------------------------------------
    def seed(self, i: int, seed: int | None) -> None:
        self.rngs[i] = np.random.default_rng(seed)

    def reset_one(self, i: int, task: Sequence[int] | str | None = None, layout: np.ndarray | None = None,
                  start: tuple[int, int] | None = None, any_of: Sequence[Sequence[int]] | None = None) -> None:
        """New episode in slot ``i``: random layout/start unless given, random pretraining task unless given.

        ``any_of`` (tasks) makes the episode succeed on completing *any* of them: entering a colour is wrong
        only when the colours entered so far are a prefix of none, and ``tasks[i]`` follows the first task
        that still matches. This judges a policy that is not told its task (the ant base model alone)."""
        rng = self.rngs[i]
        if task is None:
            task = ANT_PRETRAIN_TASKS[int(rng.integers(len(ANT_PRETRAIN_TASKS)))]
        task = parse_task(task, "ant")
        self.accept[i] = (task,) if any_of is None else tuple(parse_task(t, "ant") for t in any_of)
        if layout is None:
            layout, rand_start = sample_layout(rng)
            start = start if start is not None else rand_start
        else:
            layout = validate_layout(layout)
            if start is None:
                empty = np.argwhere(layout == EMPTY_CODE)
                start = tuple(int(x) for x in empty[rng.integers(len(empty))])
        if layout[start] != EMPTY_CODE:
            raise ValueError(f"start cell {start} is not an empty cell of the layout")
        self.layout[i] = layout
        self.tasks[i] = task
        d = self.datas[i]
        mujoco.mj_resetData(self.model, d)
        qpos = self.init_qpos.copy()
        lo, hi = START_MARGIN, 1 - START_MARGIN
        uv = np.array([start[1] + rng.uniform(lo, hi), start[0] + rng.uniform(lo, hi)])
        half = G * self.cell_size / 2
        qpos[0], qpos[1] = uv[0] * self.cell_size - half, half - uv[1] * self.cell_size
        yaw = rng.uniform(0, 2 * np.pi)
        qpos[3:7] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        qpos[7:] += rng.uniform(-INIT_NOISE, INIT_NOISE, self.model.nq - 7)
        d.qpos[:] = qpos
        d.qvel[:] = rng.uniform(-INIT_NOISE, INIT_NOISE, self.model.nv)
        mujoco.mj_forward(self.model, d)
        self.qpos[i], self.qvel[i] = d.qpos, d.qvel
        self.progress[i] = 0
        self.t[i] = 0
        self.cell[i] = start
        for c in range(N_COLOURS):
            r_, c_ = np.argwhere(layout == c)[0]
            self.colour_pos[i, c] = self.cell_centre(r_, c_)
        r_, c_ = np.argwhere(layout == WALL_CODE)[0]
        self.wall_pos[i] = self.cell_centre(r_, c_)

    def set_xy(self, i: int, uv: Sequence[float]) -> None:
        """Teleport slot ``i``'s torso to cell units ``uv`` without an entry event (tests, debugging)."""
        half = G * self.cell_size / 2
        d = self.datas[i]
        d.qpos[0], d.qpos[1] = uv[0] * self.cell_size - half, half - uv[1] * self.cell_size
        mujoco.mj_forward(self.model, d)
        self.qpos[i] = d.qpos
        row, col, _ = cell_of(np.array(uv[0]), np.array(uv[1]))
        self.cell[i] = (int(row), int(col))

    # --- step ----------------------------------------------------------------------------------------
    def step(self, actions: np.ndarray, active: np.ndarray | None = None):
        """Advance every active slot by one control step.

        ``actions`` (n, 8) are clipped to [−1, 1]. Returns ``reward`` (n,), ``terminated`` (n,),
        ``truncated`` (n,), ``event`` (n,) index into :data:`EVENTS`. Inactive slots do not move.
        """
        actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        active = np.ones(self.n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        m = self.model
        for i in np.flatnonzero(active):
            d = self.datas[i]
            d.ctrl[:] = actions[i]
            for _ in range(FRAME_SKIP):
                mujoco.mj_step(m, d)
            self.qpos[i], self.qvel[i] = d.qpos, d.qvel
        return self._transition(active)

    def teleport_step(self, i: int, uv: Sequence[float], z: float | None = None):
        """Move slot ``i`` to cell units ``uv`` (and torso height ``z``) and apply the rules as if it had
        walked there, without physics (tests and debugging)."""
        half = G * self.cell_size / 2
        d = self.datas[i]
        d.qpos[0], d.qpos[1] = uv[0] * self.cell_size - half, half - uv[1] * self.cell_size
        if z is not None:
            d.qpos[2] = z
        mujoco.mj_forward(self.model, d)
        self.qpos[i] = d.qpos
        active = np.zeros(self.n, dtype=bool)
        active[i] = True
        return self._transition(active)

    def _transition(self, active: np.ndarray):
        n = self.n
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        event = np.zeros(n, dtype=np.int64)
        uv = self.to_cells(self.qpos[:, :2])
        row, col, inside = cell_of(uv[:, 0], uv[:, 1])
        code = self.layout[np.arange(n), row, col]
        entered = (row != self.cell[:, 0]) | (col != self.cell[:, 1])
        z = self.qpos[:, 2]
        for i in np.flatnonzero(active):
            self.t[i] += 1
            if not (Z_RANGE[0] <= z[i] <= Z_RANGE[1]):
                terminated[i], event[i] = True, EVENTS.index("height")
            elif not inside[i] or code[i] == WALL_CODE:
                terminated[i], event[i] = True, EVENTS.index("wall")
            elif entered[i] and code[i] >= 0:
                k = int(self.progress[i])
                seen = self.tasks[i][:k] + (int(code[i]),)
                matches = [t for t in self.accept[i] if len(t) > k and t[:k + 1] == seen]
                match = next((t for t in matches if len(t) == k + 1), matches[0] if matches else None)
                if match is not None:
                    self.tasks[i] = match
                    self.progress[i] += 1
                    if self.progress[i] == len(match):
                        terminated[i], event[i], reward[i] = True, EVENTS.index("success"), 1.0
                else:
                    terminated[i], event[i] = True, EVENTS.index("wrong_colour")
            self.cell[i] = (row[i], col[i])
        truncated = active & ~terminated & (self.t >= T_MAX)
        return reward, terminated, truncated, event

    # --- observation ---------------------------------------------------------------------------------
    def observe(self) -> np.ndarray:
        """The (n, OBS_DIM) float32 observation (layout in the module docstring)."""
        half = G * self.cell_size / 2
        xy = self.qpos[:, :2]                                              # (n, 2)
        proprio = symlog(np.concatenate([self.qpos[:, 2:], self.qvel], axis=1))  # (n, 27)
        rel_c = (self.colour_pos - xy[:, None, :]).reshape(self.n, -1) / (2 * half)  # (n, 8)
        rel_w = (self.wall_pos - xy) / (2 * half)                          # (n, 2)
        uv = self.to_cells(xy)
        local = 2 * (uv - np.floor(uv)) - 1                                # (n, 2)
        obs = np.concatenate([proprio, xy / half, rel_c, rel_w, local], axis=1)
        return obs.astype(np.float32)

    def uv(self) -> np.ndarray:
        """Torso positions in cell units (n, 2)."""
        return self.to_cells(self.qpos[:, :2])


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
class AntRenderer:
    """Renders one slot of a batch with its layout (tiles recoloured, wall tile raised) from a named camera."""

    def __init__(self, batch: AntPinpadBatch, width: int = RENDER_SIZE, height: int = RENDER_SIZE):
        self.batch = batch
        self.renderer = mujoco.Renderer(batch.model, height=height, width=width)
        m = batch.model
        self.tile_ids = np.array([[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"tile_{r}_{c}")
                                   for c in range(G)] for r in range(G)])
        self.tile_size = m.geom_size[self.tile_ids[0, 0]].copy()

    def apply_layout(self, layout: np.ndarray) -> None:
        m = self.batch.model
        for r in range(G):
            for c in range(G):
                g, code = self.tile_ids[r, c], int(layout[r, c])
                size = self.tile_size.copy()
                if code == WALL_CODE:
                    rgba = hex_to_rgba01(WALL)
                    size[:2] = self.batch.cell_size / 2
                    size[2] = _WALL_HALF_HEIGHT
                elif code >= 0:
                    rgba = hex_to_rgba01(COLOURS[code])
                else:
                    rgba = hex_to_rgba01(EMPTY)
                m.geom_rgba[g] = rgba
                m.geom_size[g] = size
                m.geom_rbound[g] = float(np.linalg.norm(size))

    def render(self, i: int = 0, camera: str = "topdown") -> np.ndarray:
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; expected one of {CAMERAS}")
        self.apply_layout(self.batch.layout[i])
        self.renderer.update_scene(self.batch.datas[i], camera=camera)
        return self.renderer.render().copy()  # (H, W, 3) uint8

    def close(self) -> None:
        self.renderer.close()


# --------------------------------------------------------------------------------------------------
# Gymnasium environment
# --------------------------------------------------------------------------------------------------
class AntPinpadEnv(gym.Env):
    """Gymnasium ant-pinpad. ``reset(seed=..., options={"task": "0-3-2", "layout": (4,4), "start": (r,c)})``.

    ``task`` (constructor or reset option) fixes the task; otherwise each reset draws one of the 16
    pretraining tasks. The task is never part of the observation; ``info`` carries ``task``, ``layout``,
    ``progress``, ``cell``, ``uv`` (cell units) and ``event``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(round(1 / CONTROL_DT))}

    def __init__(self, task: str | Sequence[int] | None = None, render_mode: str | None = None,
                 camera: str = "topdown", width: int = RENDER_SIZE, height: int = RENDER_SIZE,
                 cell_size: float = CELL_SIZE):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; expected one of {CAMERAS}")
        self.task = None if task is None else parse_task(task, "ant")
        self.render_mode = render_mode
        self.camera = camera
        self.batch = AntPinpadBatch(1, cell_size=cell_size)
        self._size = (width, height)
        self._renderer: AntRenderer | None = None
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (8,), np.float32)
        self._done = True
        self._seeded = False

    @property
    def model(self) -> mujoco.MjModel:
        return self.batch.model

    @property
    def data(self) -> mujoco.MjData:
        return self.batch.datas[0]

    def _info(self, event: int = 0) -> dict[str, Any]:
        b = self.batch
        return {"task": b.tasks[0], "layout": b.layout[0].copy(), "progress": int(b.progress[0]),
                "cell": tuple(int(x) for x in b.cell[0]), "uv": b.uv()[0].copy(), "event": EVENTS[event],
                "t": int(b.t[0])}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        if seed is not None:
            self.batch.seed(0, seed)
        elif not self._seeded:  # first reset without a seed: a fresh random stream (gymnasium's convention)
            self.batch.seed(0, int(self.np_random.integers(2**31)))
        self._seeded = True
        task = options.get("task", self.task)
        try:
            self.batch.reset_one(0, task=task, layout=options.get("layout"), start=options.get("start"))
        except ValueError as e:
            if isinstance(e, TaskError):
                raise
            raise ValueError(f"bad reset options: {e}") from None
        self._done = False
        return self.batch.observe()[0], self._info()

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        action = np.asarray(action, dtype=np.float64).reshape(1, -1)
        if action.shape != (1, 8):
            raise ValueError(f"action must have 8 entries, got shape {action.shape[1:]}")
        reward, term, trunc, event = self.batch.step(action)
        self._done = bool(term[0] or trunc[0])
        return self.batch.observe()[0], float(reward[0]), bool(term[0]), bool(trunc[0]), self._info(int(event[0]))

    def render(self, camera: str | None = None):
        if self.render_mode != "rgb_array" and camera is None:
            return None
        if self._renderer is None:
            self._renderer = AntRenderer(self.batch, *self._size)
        return self._renderer.render(0, camera or self.camera)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
