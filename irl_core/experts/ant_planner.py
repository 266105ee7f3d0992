"""The ant expert's grid-level planner (docs/paper.md §1.3): breadth-first distances to the target colour through
cells that are neither the wall nor another colour, the next cell to walk to, and the direction the
locomotion policy (:mod:`irl_core.experts.ant_expert`) is asked to walk in.

A breadth-first search on the 4×4 grid from the target colour's cell, through cells that are neither the
wall nor another colour (entering those would end the episode), gives every cell its distance to the
target. From the ant's cell the next cell is the neighbour with the smallest distance (ties broken up,
right, down, left); the direction to move is the unit vector from the torso to that next cell's centre (a
straight line from anywhere in a cell to an adjacent cell's centre stays inside the two cells). When the
target cannot be reached without crossing a forbidden cell (possible: the wall and two other colours can
wall a cell in), the direction points straight at the target; such episodes usually fail, as they would
for any expert, and are counted in its success rate. When acting (not in training) the planner adds a
safety push away from forbidden neighbouring cells (``ACT_MARGIN``, ``ACT_PUSH``).
"""
from __future__ import annotations

from collections import deque

import numpy as np

from irl_core.envs import ant as A

ACT_MARGIN, ACT_PUSH = 0.3, 1.0  # the planner's safety push when acting (Planner); none in training
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left (grid action encoding)


def distance_map(layout: np.ndarray, target: int) -> np.ndarray:
    """BFS distances (4, 4) to the cell of colour ``target``; forbidden or unreachable cells get a large value.

    Forbidden: the wall and every colour other than ``target``.
    """
    layout = np.asarray(layout)
    if not 0 <= int(target) < A.N_COLOURS:
        raise ValueError(f"target colour {target} is out of range 0..{A.N_COLOURS - 1}")
    where = np.argwhere(layout == target)
    if len(where) != 1:
        raise ValueError(f"layout must contain colour {target} exactly once")
    big = 10**6
    dist = np.full(layout.shape, big, dtype=np.int64)
    free = layout == A.EMPTY_CODE
    r0, c0 = (int(x) for x in where[0])
    dist[r0, c0] = 0
    frontier = deque([(r0, c0)])
    while frontier:
        r, c = frontier.popleft()
        for dr, dc in _MOVES:
            rr, cc = r + dr, c + dc
            if 0 <= rr < A.G and 0 <= cc < A.G and free[rr, cc] and dist[rr, cc] == big:
                dist[rr, cc] = dist[r, c] + 1
                frontier.append((rr, cc))
    return dist


def next_cell(dist: np.ndarray, cell: tuple[int, int]) -> tuple[int, int] | None:
    """The neighbour of ``cell`` one step closer to the target, or None if the target is unreachable."""
    r, c = cell
    best, best_d = None, dist[r, c] if dist[r, c] < 10**6 else 10**6
    for dr, dc in _MOVES:
        rr, cc = r + dr, c + dc
        if 0 <= rr < A.G and 0 <= cc < A.G and dist[rr, cc] < best_d:
            best, best_d = (rr, cc), dist[rr, cc]
    return best


def shortest_path(layout: np.ndarray, start: tuple[int, int], target: int) -> list[tuple[int, int]] | None:
    """Cells from ``start`` (excluded) to the target cell (included), or None if unreachable."""
    dist = distance_map(layout, target)
    path, cell = [], tuple(start)
    for _ in range(A.G * A.G):
        if dist[cell] == 0:
            return path
        nxt = next_cell(dist, cell)
        if nxt is None:
            return None
        path.append(nxt)
        cell = nxt
    return None


def plan_action(layout: np.ndarray, cell: tuple[int, int], target: int) -> int | None:
    """The grid action (0 up, 1 right, 2 down, 3 left) of the shortest path, or None."""
    nxt = next_cell(distance_map(layout, target), cell)
    if nxt is None:
        return None
    return _MOVES.index((nxt[0] - cell[0], nxt[1] - cell[1]))


def task_solvable(layout: np.ndarray, start: tuple[int, int], task) -> bool:
    """Whether a grid path visits ``task``'s colours in order from ``start`` without entering the wall or
    another colour. Random layouts are not always solvable (≈11 % of pretraining episodes and ≈13 % of
    held-out ones are not: the wall and other colours can shut a colour in), which bounds any expert."""
    cell = tuple(start)
    for colour in task:
        if shortest_path(layout, cell, colour) is None:
            return False
        cell = tuple(int(x) for x in np.argwhere(np.asarray(layout) == colour)[0])
    return True


class Planner:
    """Planner directions for every slot of an :class:`~irl_core.envs.ant.AntPinpadBatch` (cached BFS maps).

    ``margin`` > 0 adds a safety push (used when acting, not during training): within ``margin`` cells of a
    forbidden neighbouring cell (the wall, outside the grid, a colour other than the target — including
    the colour just visited, whose re-entry would end the episode) the direction is bent away from it by
    ``push·(1 − distance/margin)``. It removes most "wrong colour" endings caused by the gait's sideways
    wobble along a cell boundary.
    """

    def __init__(self, margin: float = 0.0, push: float = 1.0):
        self._cache: dict[tuple[bytes, int], np.ndarray] = {}
        self.margin, self.push = float(margin), float(push)

    def dist(self, layout: np.ndarray, target: int) -> np.ndarray:
        key = (layout.tobytes(), int(target))
        if key not in self._cache:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[key] = distance_map(layout, target)
        return self._cache[key]

    def _repulsion(self, layout: np.ndarray, cell: tuple[int, int], uv: np.ndarray, target: int) -> np.ndarray:
        """Push (du, dv) in cell units away from forbidden cells around ``cell``."""
        push = np.zeros(2)
        r0, c0 = cell
        for r in (r0 - 1, r0, r0 + 1):
            for c in (c0 - 1, c0, c0 + 1):
                if (r, c) == (r0, c0):
                    continue
                inside = 0 <= r < A.G and 0 <= c < A.G
                if inside and layout[r, c] in (A.EMPTY_CODE, target):
                    continue
                nearest = np.array([min(max(uv[0], c), c + 1), min(max(uv[1], r), r + 1)])
                vec = uv - nearest
                d = float(np.linalg.norm(vec))
                if 1e-9 < d < self.margin:
                    push += vec / d * (1 - d / self.margin)
        return push

    def directions(self, batch: A.AntPinpadBatch) -> np.ndarray:
        """(n, 2) unit world-frame directions toward the next cell (or the target when unreachable)."""
        out = np.zeros((batch.n, 2))
        xy = batch.qpos[:, :2]
        uv = batch.uv() if self.margin > 0 else None
        for i in range(batch.n):
            task, k = batch.tasks[i], int(batch.progress[i])
            if k >= len(task):
                continue
            target = task[k]
            dist = self.dist(batch.layout[i], target)
            cell = (int(batch.cell[i, 0]), int(batch.cell[i, 1]))
            nxt = next_cell(dist, cell) if dist[cell] > 0 else cell
            goal = batch.cell_centre(*nxt) if nxt is not None else batch.colour_pos[i, target]
            d = goal - xy[i]
            d = d / max(np.linalg.norm(d), 1e-6)
            if self.margin > 0:
                p = self._repulsion(batch.layout[i], cell, uv[i], target)
                d = d + self.push * np.array([p[0], -p[1]])  # cell units (u, v) → world (x, y)
            out[i] = d / max(np.linalg.norm(d), 1e-6)
        return out
