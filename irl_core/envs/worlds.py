"""The gridworlds as parameters: one :class:`GridWorld` description per variant, two shipped.

* ``grid7`` — the paper's gridworld-pinpad (docs/paper.md §1.1): 7×7, 8 colours, 4 walls, T = 100, subgoal =
  colour pair (``colour // 2``), the 16 tasks of Table A1, held-out 0-1-2-3-4-5-6-7-0-1-2-3.
* ``grid5`` — the laptop world: 5×5, 4 colours, 1 wall, T = 50, subgoal = the colour itself, the 16
  three-colour tasks of Table A2 (the ant-pinpad's task structure) for pretraining, held-out 0-1-2-3.
  Every held-out transition (0→1, 1→2, 2→3) is absent from pretraining and the task is longer than any
  pretraining one: the two generalisations the paper asks for. Its base model becomes steerable in under
  an hour of one CPU core, where ``grid7`` needs GPU-scale pretraining (BENCHMARKS.md).

Everything that depends on the world (the env, the expert, the observation encoder, probes, controllers,
exports, figures) reads it from a ``GridWorld``; checkpoints record its name in their JSON
(``config["world"]``; a checkpoint without one predates the second world and is ``grid7``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from irl_core.envs.tasks import ANT_TASKS, GRID7_TASKS, TaskStructure

ACTION_DELTAS = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left (row, col)
EMPTY, WALL = -1, -2  # layout codes of an empty cell and a wall (colours are 0..O−1)


class WorldError(ValueError):
    """An unknown world name, or a checkpoint of one world used with another."""


@dataclass(frozen=True)
class GridWorld:
    """One gridworld-pinpad variant. Cells are ``row * size + col``; the observation is cell-major,
    ``n_colours`` colour channels, ``n_walls`` wall channels (raster order), 1 agent channel per cell."""

    name: str
    size: int                                   # G
    n_walls: int                                # W
    t_max: int                                  # T
    tasks: TaskStructure                        # O colours, the subgoal of a colour, pretraining and held-out tasks
    title: str = ""

    def __post_init__(self) -> None:
        if self.n_colours + self.n_walls + 1 > self.size ** 2:
            raise ValueError(f"{self.name}: {self.n_colours} colours, {self.n_walls} walls and the agent do not fit")

    @property
    def n_colours(self) -> int:
        return self.tasks.n_colours

    @property
    def subgoal(self) -> str:
        return self.tasks.subgoal

    @property
    def pretrain_tasks(self) -> tuple[tuple[int, ...], ...]:
        return self.tasks.pretrain_tasks

    @property
    def heldout_task(self) -> tuple[int, ...]:
        return self.tasks.heldout_task

    @property
    def n_cells(self) -> int:
        return self.size * self.size

    @property
    def n_channels(self) -> int:
        return self.n_colours + self.n_walls + 1

    @property
    def agent_channel(self) -> int:
        return self.n_channels - 1

    @property
    def obs_dim(self) -> int:
        return self.n_cells * self.n_channels

    @property
    def n_subgoals(self) -> int:
        return self.tasks.n_subgoals

    def subgoal_of_colour(self, colour):
        return self.tasks.subgoal_of_colour(colour)

    def subgoal_name(self, g: int) -> str:
        """``A``..``D`` for the grid7's pairs (A = 0-1 …), the colour's number for a colour subgoal."""
        return "ABCDEFGH"[g] if self.subgoal == "pair" else str(g)

    @functools.cached_property
    def next_cell(self) -> np.ndarray:
        """(n_cells, 4): the cell reached by each action ignoring walls (off the grid → the same cell)."""
        G = self.size
        table = np.zeros((self.n_cells, len(ACTION_DELTAS)), dtype=np.int64)
        for cell in range(self.n_cells):
            r, c = divmod(cell, G)
            for a, (dr, dc) in enumerate(ACTION_DELTAS):
                rr, cc = r + dr, c + dc
                table[cell, a] = rr * G + cc if 0 <= rr < G and 0 <= cc < G else cell
        return table


GRID7 = GridWorld("grid7", size=7, n_walls=4, t_max=100, tasks=GRID7_TASKS,
                  title="the paper's 7×7 world (8 colours, pair subgoals)")
GRID5 = GridWorld("grid5", size=5, n_walls=1, t_max=50, tasks=ANT_TASKS,
                  title="the laptop 5×5 world (4 colours, the ant's task structure)")
WORLDS: dict[str, GridWorld] = {w.name: w for w in (GRID7, GRID5)}
DEFAULT_WORLD = "grid7"


def get_world(world: str | GridWorld | None = None) -> GridWorld:
    """A world by name (``None`` → ``grid7``; ``"grid"`` is the paper's world too); clear error otherwise."""
    if isinstance(world, GridWorld):
        return world
    name = DEFAULT_WORLD if world in (None, "", "grid") else world
    if name not in WORLDS:
        raise WorldError(f"unknown world {world!r}; choose one of {', '.join(WORLDS)}")
    return WORLDS[name]


def world_of_config(config: dict) -> GridWorld:
    """The world a checkpoint's config was made in (``grid7`` when it records none)."""
    return get_world(config.get("world") or DEFAULT_WORLD)


def check_same_world(expected: GridWorld, config: dict, what: str) -> None:
    """Refuse a checkpoint (``what``, a path) made in another world than ``expected`` (one line)."""
    got = world_of_config(config)
    if got.name != expected.name:
        raise WorldError(f"{what} was made in world {got.name}, but the base model is of world {expected.name}")
