"""Tasks of gridworld-pinpad and ant-pinpad (docs/paper.md §1, Tables A1 and A2) and their subgoal labels.

A task is a tuple of colour indices that must be visited in order. The ground-truth *abstract action*
(subgoal) at a step is the subgoal of the colour the agent is heading to at that step. A
:class:`TaskStructure` holds what a world's tasks are; two exist:

* ``GRID7_TASKS`` (the paper's grid, ``grid7``): colours 0..7, subgoal = colour pair, ``colour // 2``
  (A=0-1, B=2-3, C=4-5, D=6-7), Table A1;
* ``ANT_TASKS`` (the ant and the 5×5 ``grid5``): colours 0..3, subgoal = the colour itself, Table A2.

Functions take ``env``: a name (``"grid"`` and ``"grid7"`` are the paper's grid, ``"grid5"``, ``"ant"``),
a :class:`TaskStructure`, or a world (``irl_core.envs.worlds.GridWorld``, which holds one).

The label is never the index of the colour in the task (docs/paper.md §9).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

GRID_N_COLOURS = 8
ANT_N_COLOURS = 4
GRID_N_SUBGOALS = 4
ANT_N_SUBGOALS = 4
MAX_TASK_LEN = 12  # the longest task (the grid's held-out task); exports pad tasks to this length

GRID_PRETRAIN_TASKS: tuple[tuple[int, ...], ...] = tuple(
    tuple(int(c) for c in s.split("-"))
    for s in (
        "0-1-4-5-0-1", "0-1-4-5-2-3", "0-1-6-7-2-3", "2-3-0-1-4-5",
        "2-3-6-7-2-3", "2-3-6-7-4-5", "4-5-0-1-4-5", "4-5-0-1-6-7",
        "4-5-2-3-6-7", "6-7-2-3-0-1", "6-7-2-3-6-7", "6-7-4-5-0-1",
        "0-1-6-7-4-5", "2-3-0-1-6-7", "4-5-2-3-0-1", "6-7-4-5-2-3",
    )
)
GRID_HELDOUT_TASK: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3)

ANT_PRETRAIN_TASKS: tuple[tuple[int, ...], ...] = tuple(
    tuple(int(c) for c in s.split("-"))
    for s in (
        "0-3-2", "1-0-3", "2-1-0", "3-2-1", "0-2-0", "0-2-1", "0-3-1", "1-0-2",
        "1-3-1", "1-3-2", "2-0-2", "2-0-3", "2-1-3", "3-1-0", "3-1-3", "3-2-0",
    )
)
ANT_HELDOUT_TASK: tuple[int, ...] = (0, 1, 2, 3)



class TaskError(ValueError):
    """A task string or sequence that is not a valid task for the environment."""


@dataclass(frozen=True)
class TaskStructure:
    """The colours, subgoal map and task sets of a world."""

    name: str
    n_colours: int
    subgoal: str                                 # "pair" (colour // 2) or "colour" (the colour itself)
    pretrain_tasks: tuple[tuple[int, ...], ...]
    heldout_task: tuple[int, ...]

    def subgoal_of_colour(self, colour):
        """Elementwise on ints, numpy arrays and tensors; padding (negative) stays negative (−1 // 2 == −1)."""
        return colour // 2 if self.subgoal == "pair" else colour

    @property
    def n_subgoals(self) -> int:
        return self.n_colours // 2 if self.subgoal == "pair" else self.n_colours


GRID7_TASKS = TaskStructure("grid", GRID_N_COLOURS, "pair", GRID_PRETRAIN_TASKS, GRID_HELDOUT_TASK)
ANT_TASKS = TaskStructure("ant", ANT_N_COLOURS, "colour", ANT_PRETRAIN_TASKS, ANT_HELDOUT_TASK)
_BY_NAME = {"grid": GRID7_TASKS, "grid7": GRID7_TASKS, "grid5": ANT_TASKS, "ant": ANT_TASKS}


def structure(env) -> TaskStructure:
    """The task structure of ``env`` (a name, a :class:`TaskStructure` or a world holding one)."""
    if isinstance(env, TaskStructure):
        return env
    if isinstance(getattr(env, "tasks", None), TaskStructure):
        return env.tasks
    if env not in _BY_NAME:
        raise TaskError(f"unknown environment {env!r}; expected one of {sorted(_BY_NAME)}")
    return _BY_NAME[env]


def env_label(env) -> str:
    return getattr(env, "name", None) or structure(env).name


def n_colours(env) -> int:
    return structure(env).n_colours


def parse_task(task: str | Sequence[int], env="grid") -> tuple[int, ...]:
    """Parse ``"0-1-4-5-0-1"`` (or a sequence of ints) into a validated tuple of colours.

    Raises :class:`TaskError` naming the problem: an empty task, a non-integer token, a colour out of
    range, a colour repeated back to back (it could never be visited twice in a row), or a task longer
    than :data:`MAX_TASK_LEN`.
    """
    n = n_colours(env)
    if isinstance(task, str):
        tokens = [t.strip() for t in task.strip().split("-")]
        if not task.strip() or any(t == "" for t in tokens):
            raise TaskError(f"task {task!r} is empty or malformed; write colours joined by '-', e.g. '0-1-4-5-0-1'")
        try:
            colours = tuple(int(t) for t in tokens)
        except ValueError:
            raise TaskError(f"task {task!r} has a token that is not an integer colour") from None
    else:
        colours = tuple(int(c) for c in task)
        if not colours:
            raise TaskError("task is empty")
    bad = [c for c in colours if not 0 <= c < n]
    if bad:
        raise TaskError(f"task {format_task(colours)!r}: colour {bad[0]} is out of range for the {env_label(env)} (0..{n - 1})")
    for a, b in zip(colours, colours[1:]):
        if a == b:
            raise TaskError(f"task {format_task(colours)!r} repeats colour {a} back to back, which cannot be visited twice in a row")
    if len(colours) > MAX_TASK_LEN:
        raise TaskError(f"task {format_task(colours)!r} has {len(colours)} colours; at most {MAX_TASK_LEN} are supported")
    return colours


def format_task(task: Iterable[int]) -> str:
    return "-".join(str(int(c)) for c in task)


def pretrain_tasks(env="grid") -> tuple[tuple[int, ...], ...]:
    return structure(env).pretrain_tasks


def heldout_task(env="grid") -> tuple[int, ...]:
    return structure(env).heldout_task


def task_set(name: str, env="grid") -> tuple[tuple[int, ...], ...]:
    """``"pretrain"`` → the 16 pretraining tasks; ``"heldout"`` → the held-out task; otherwise a task string."""
    if name == "pretrain":
        return pretrain_tasks(env)
    if name == "heldout":
        return (heldout_task(env),)
    return (parse_task(name, env),)


def subgoal_of_colour(colour, env="grid"):
    """The abstract action of a colour: its pair in the paper's grid (``colour // 2``), the colour itself in
    ``grid5`` and the ant. Works elementwise on ints, numpy arrays and torch tensors; padding stays negative.
    """
    return structure(env).subgoal_of_colour(colour)


def subgoal_sequence(task: Sequence[int], env="grid") -> tuple[int, ...]:
    """The task as abstract actions, one per colour (the grid's pairs give repeated letters: A A C C A A)."""
    return tuple(int(subgoal_of_colour(int(c), env)) for c in task)


def subgoal_labels(task: Sequence[int], progress: np.ndarray, env="grid") -> np.ndarray:
    """Ground-truth abstract action at every step of a trajectory.

    ``progress[t]`` is the number of task colours visited *before* the action at step ``t``; the label is
    the subgoal of the colour being sought, ``subgoal(task[progress[t]])``. Entries with ``progress < 0``
    (padding) or ``progress >= len(task)`` (after success) are labelled ``-1``.
    """
    progress = np.asarray(progress)
    seq = np.asarray(subgoal_sequence(task, env) + (-1,), dtype=np.int64)
    idx = np.where((progress >= 0) & (progress < len(task)), progress, len(task))
    return seq[idx].astype(np.int8)


def pretraining_transitions(env="grid") -> set[tuple[int, int]]:
    """Subgoal transitions seen in pretraining (between consecutive distinct subgoals)."""
    out = set()
    for task in pretrain_tasks(env):
        sg = subgoal_sequence(task, env)
        for a, b in zip(sg, sg[1:]):
            if a != b:
                out.add((a, b))
    return out
