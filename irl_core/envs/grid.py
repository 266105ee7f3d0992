"""Gridworld-pinpad (docs/paper.md §1.1): a batched torch simulator and a gymnasium single-episode env.

The world is a parameter (:class:`irl_core.envs.worlds.GridWorld`): ``grid7`` is the paper's (G=7, O=8,
W=4, T=100), ``grid5`` the laptop world (G=5, O=4, W=1, T=50). The rules are the paper's in both.

Rules, exactly as the paper: a G×G grid holds O uniquely coloured cells, W walls and the agent,
all placed at random without overlap each episode. Actions 0=up (row−1), 1=right (col+1), 2=down (row+1),
3=left (col−1); moving into a wall or off the grid is a no-op. A colour is *visited* when the agent moves
onto it from a different cell. The episode ends on success (every colour of the task visited in order,
reward 1), on a visit to any colour that is not the next one (failure, reward 0), or after T steps.

Observation (G²(O+W+1) dims, cell-major: ``obs.view(G², O+W+1)``; 637 = 49 × 13 in ``grid7``, 150 = 25 × 6
in ``grid5``): for every cell, channels 0..O−1 are the one-hot of the colour on it, the next W the one-hot
of which wall is on it (walls numbered in raster order, so the encoding is canonical), and the last one
the agent. Nothing about the task or progress is in it.

Choice (documented in README): about 15–18% of uniformly random layouts cannot be solved for a given task
(a target closed off by walls or other colours, which may never be stepped on). Such layouts are
resampled: the layout distribution is uniform over the layouts on which the task is solvable, which is
what the paper's expert, which solves every episode, implies. "Solvable" includes finishing within T: for
the 12-colour held-out task about 0.4% of otherwise solvable layouts need more than 100 steps.

Cells are indexed ``row * G + col``; layouts use the codes of docs/design.md: −1 empty, −2 wall, 0..O−1 colour.
Shapes below are written for ``grid7`` (49 cells, 8 colours, 637 features).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch

from irl_core.envs.tasks import MAX_TASK_LEN, parse_task, task_set
from irl_core.envs.worlds import ACTION_DELTAS, EMPTY, WALL, GridWorld, get_world

N_ACTIONS = 4
ACTION_NAMES = ("up", "right", "down", "left")
INF = 10_000


def tasks_tensor(tasks: Sequence[Sequence[int]], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tasks → ``(task (n, 12) long padded with −1, length (n,) long)``."""
    out = torch.full((len(tasks), MAX_TASK_LEN), -1, dtype=torch.long)
    for i, t in enumerate(tasks):
        out[i, : len(t)] = torch.as_tensor(t)
    return out.to(device), (out >= 0).sum(1).to(device)


# ---------------------------------------------------------------------------------------------------
# Distances (shared by the resampling of unsolvable layouts and the DP expert)
# ---------------------------------------------------------------------------------------------------
def distance_maps(layout: torch.Tensor, world: GridWorld) -> torch.Tensor:
    """Shortest-path distances to every colour, avoiding walls and the other colours.

    ``layout`` (B, 49) codes → ``dist`` (B, 8, 49) long: ``dist[b, c, x]`` is the number of moves from
    cell ``x`` to colour ``c`` when only empty cells and ``c`` itself may be entered (INF if none). A
    colour cell other than ``c`` gets INF (it may not be entered), but an agent standing on it can still
    leave: use :func:`distance_from` for the distance of a starting cell.
    """
    B, dev = layout.shape[0], layout.device
    G, N_COLOURS = world.size, world.n_colours
    colours = torch.arange(N_COLOURS, device=dev).view(1, N_COLOURS, 1, 1)
    lay = layout.long().view(B, 1, G, G)
    passable = (lay == EMPTY) | (lay == colours)  # (B, 8, 7, 7)
    is_target = lay == colours
    padded = torch.full((B, N_COLOURS, G + 2, G + 2), INF, dtype=torch.int32, device=dev)  # INF border = off-grid
    inner = torch.where(is_target, 0, INF).to(torch.int32)
    padded[:, :, 1:-1, 1:-1] = inner
    for _ in range(world.n_cells):  # relaxation: each sweep extends the shortest paths by one step
        nbr = torch.minimum(torch.minimum(padded[:, :, :-2, 1:-1], padded[:, :, 2:, 1:-1]),
                            torch.minimum(padded[:, :, 1:-1, :-2], padded[:, :, 1:-1, 2:]))
        new = torch.where(passable, torch.minimum(inner, nbr + 1), INF)
        new = torch.where(is_target, 0, new).clamp_max(INF).to(torch.int32)
        if torch.equal(new, inner):
            break
        inner = new
        padded[:, :, 1:-1, 1:-1] = inner
    return inner.view(B, N_COLOURS, world.n_cells).long()


def effective_next(layout: torch.Tensor, cell: torch.Tensor, world: GridWorld) -> torch.Tensor:
    """(B, 49) layout, (B,) cells → (B, 4) the cell each action leads to (walls and edges are no-ops)."""
    nxt = torch.as_tensor(world.next_cell, device=layout.device)[cell]  # (B, 4)
    hits_wall = layout.long().gather(1, nxt) == WALL
    return torch.where(hits_wall, cell.unsqueeze(1), nxt)


def distance_from(dist: torch.Tensor, layout: torch.Tensor, cell: torch.Tensor, colour: torch.Tensor,
                  world: GridWorld) -> torch.Tensor:
    """Moves needed from ``cell`` (B,) to ``colour`` (B,), also when ``cell`` is a colour cell being left."""
    d = dist.gather(1, colour.view(-1, 1, 1).expand(-1, 1, dist.shape[2])).squeeze(1)  # (B, 49)
    nxt = effective_next(layout, cell, world)  # (B, 4)
    moved = nxt != cell.unsqueeze(1)
    via = torch.where(moved, d.gather(1, nxt) + 1, INF).amin(1)
    return torch.minimum(d.gather(1, cell.view(-1, 1)).squeeze(1), via).clamp_max(INF)


def shortest_solution(layout: torch.Tensor, start: torch.Tensor, task: torch.Tensor, task_len: torch.Tensor,
                      world: GridWorld, dist: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) the fewest steps that complete the task without entering another colour (≥ INF if impossible)."""
    dist = distance_maps(layout, world) if dist is None else dist
    colour_cell = colour_cells(layout, world)
    total = torch.zeros(layout.shape[0], dtype=torch.long, device=layout.device)
    pos = start
    for k in range(task.shape[1]):
        active = k < task_len
        target = task[:, k].clamp_min(0)
        total += torch.where(active, distance_from(dist, layout, pos, target, world), 0)
        pos = torch.where(active, colour_cell.gather(1, target.view(-1, 1)).squeeze(1), pos)
    return total


def solvable(layout: torch.Tensor, start: torch.Tensor, task: torch.Tensor, task_len: torch.Tensor,
             world: GridWorld, dist: torch.Tensor | None = None, t_max: int | None = None) -> torch.Tensor:
    """(B,) bool: can the task be completed in order, within ``t_max`` steps (default the world's T),
    without entering another colour?"""
    t_max = world.t_max if t_max is None else t_max
    return shortest_solution(layout, start, task, task_len, world, dist) <= t_max


def colour_cells(layout: torch.Tensor, world: GridWorld) -> torch.Tensor:
    """(B, 49) layout → (B, 8) the cell of each colour."""
    colours = torch.arange(world.n_colours, device=layout.device).view(1, world.n_colours, 1)
    return (layout.long().unsqueeze(1) == colours).float().argmax(-1)


# ---------------------------------------------------------------------------------------------------
# Layout sampling
# ---------------------------------------------------------------------------------------------------
def _random_layouts(n: int, generator: torch.Generator, device, world: GridWorld) -> tuple[torch.Tensor, torch.Tensor]:
    N_COLOURS, N_WALLS = world.n_colours, world.n_walls
    perm = torch.rand(n, world.n_cells, generator=generator, device=device).argsort(1)  # (n, 49)
    layout = torch.full((n, world.n_cells), EMPTY, dtype=torch.int8, device=device)
    layout.scatter_(1, perm[:, :N_COLOURS], torch.arange(N_COLOURS, dtype=torch.int8, device=device).expand(n, -1).contiguous())
    layout.scatter_(1, perm[:, N_COLOURS:N_COLOURS + N_WALLS], torch.full((n, N_WALLS), WALL, dtype=torch.int8, device=device))
    return layout, perm[:, N_COLOURS + N_WALLS]


def sample_layouts(task: torch.Tensor, task_len: torch.Tensor, generator: torch.Generator, world: GridWorld,
                   t_max: int | None = None, max_tries: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uniform random layouts on which each task is solvable within ``t_max`` (default the world's T);
    unsolvable draws are resampled.

    Returns ``layout`` (B, 49) int8, ``start`` (B,) long, ``dist`` (B, 8, 49) distance maps.
    """
    B, dev = task.shape[0], task.device
    layout, start = _random_layouts(B, generator, dev, world)
    dist = distance_maps(layout, world)
    bad = ~solvable(layout, start, task, task_len, world, dist, t_max)
    for _ in range(max_tries):
        if not bad.any():
            return layout, start, dist
        idx = bad.nonzero().squeeze(1)
        l2, s2 = _random_layouts(len(idx), generator, dev, world)
        d2 = distance_maps(l2, world)
        layout[idx], start[idx], dist[idx] = l2, s2, d2
        bad[idx] = ~solvable(l2, s2, task[idx], task_len[idx], world, d2, t_max)
    raise RuntimeError("could not sample solvable layouts; is the task valid?")


def static_observation(layout: torch.Tensor, world: GridWorld) -> torch.Tensor:
    """(B, 49) layout → (B, 49, 13) uint8 cell features without the agent channel set."""
    B, dev = layout.shape[0], layout.device
    N_COLOURS, N_WALLS = world.n_colours, world.n_walls
    lay = layout.long()
    feat = torch.zeros(B, world.n_cells, world.n_channels, dtype=torch.uint8, device=dev)
    is_colour = lay >= 0
    feat.scatter_(2, lay.clamp_min(0).unsqueeze(-1), is_colour.unsqueeze(-1).to(torch.uint8))
    wall_rank = (lay == WALL).long().cumsum(1) - 1  # raster-order index of each wall
    wall_channel = (N_COLOURS + wall_rank.clamp(0, N_WALLS - 1)).unsqueeze(-1)
    feat.scatter_add_(2, wall_channel, (lay == WALL).unsqueeze(-1).to(torch.uint8))
    return feat


def observation(static: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
    """(B, 49, 13) static features, (B,) agent cells → (B, 637) uint8 observations (agent = last channel)."""
    obs = static.clone()
    obs[torch.arange(obs.shape[0], device=obs.device), agent, -1] = 1
    return obs.flatten(1)


def observations_from_positions(layout: torch.Tensor, pos: torch.Tensor, world: GridWorld) -> torch.Tensor:
    """(B, 49) layouts, (B, T) agent cells (−1 = padding) → (B, T, 637) uint8 observations (zeros at padding)."""
    static = static_observation(layout, world)  # (B, 49, 13)
    B, T = pos.shape
    obs = static.unsqueeze(1).expand(B, T, world.n_cells, world.n_channels).clone()
    valid = pos >= 0
    agent = torch.zeros(B, T, world.n_cells, dtype=torch.uint8, device=layout.device)
    agent.scatter_(2, pos.clamp_min(0).unsqueeze(-1), valid.unsqueeze(-1).to(torch.uint8))
    obs[..., world.agent_channel] = agent
    obs *= valid.view(B, T, 1, 1).to(torch.uint8)
    return obs.view(B, T, world.obs_dim)


# ---------------------------------------------------------------------------------------------------
# Batched simulator
# ---------------------------------------------------------------------------------------------------
@dataclass
class GridBatch:
    """State of B episodes. Finished episodes stay frozen until the next reset."""

    layout: torch.Tensor    # (B, 49) int8
    static: torch.Tensor    # (B, 49, 13) uint8
    dist: torch.Tensor      # (B, 8, 49) long distance maps
    agent: torch.Tensor     # (B,) long
    task: torch.Tensor      # (B, 12) long, −1 padded
    task_len: torch.Tensor  # (B,) long
    progress: torch.Tensor  # (B,) long: colours of the task visited so far
    t: torch.Tensor         # (B,) long: steps taken
    done: torch.Tensor      # (B,) bool
    success: torch.Tensor   # (B,) bool
    world: GridWorld

    @property
    def target(self) -> torch.Tensor:
        """(B,) the colour sought now (the last one after success)."""
        return self.task.gather(1, self.progress.clamp_max(self.task_len - 1).unsqueeze(1)).squeeze(1)


class BatchedGridPinpad:
    """B gridworld-pinpad episodes of ``world`` (a name or :class:`GridWorld`) as tensors on any device.

    ``reset`` samples a task per episode (uniformly from ``tasks``) and a solvable layout;
    ``step(actions)`` advances every unfinished episode. Observations are uint8 (B, obs_dim).
    ``t_max`` defaults to the world's T.
    ``end_on_wrong=False`` is a diagnostic mode (not the paper's rules) in which a wrong colour does not end
    the episode, to read which colour sequences a model follows.
    """

    def __init__(self, batch_size: int, tasks: Sequence[Sequence[int]] | str = "pretrain",
                 device: str | torch.device = "cpu", seed: int = 0, t_max: int | None = None, end_on_wrong: bool = True,
                 world: str | GridWorld = "grid7"):
        self.B = batch_size
        self.world = get_world(world)
        self.device = torch.device(device)
        self.tasks = (task_set(tasks, self.world) if isinstance(tasks, str)
                      else tuple(parse_task(t, self.world) for t in tasks))
        self._task_table, self._task_lens = tasks_tensor(self.tasks, self.device)
        self.t_max = self.world.t_max if t_max is None else t_max
        self.end_on_wrong = end_on_wrong
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.state: GridBatch | None = None

    def reset(self, task_ids: torch.Tensor | None = None, layout: torch.Tensor | None = None,
              start: torch.Tensor | None = None) -> torch.Tensor:
        """New episodes. ``task_ids`` (B,) index ``self.tasks`` (random if None); ``layout``/``start`` fix the layout."""
        if task_ids is None:
            task_ids = torch.randint(len(self.tasks), (self.B,), generator=self.generator, device=self.device)
        task, task_len = self._task_table[task_ids], self._task_lens[task_ids]
        if layout is None:
            layout, start, dist = sample_layouts(task, task_len, self.generator, self.world, self.t_max)
        else:
            layout, start = layout.to(self.device, torch.int8), start.to(self.device).long()
            dist = distance_maps(layout, self.world)
        zeros = torch.zeros(self.B, dtype=torch.long, device=self.device)
        self.task_ids = task_ids
        self.state = GridBatch(layout=layout, static=static_observation(layout, self.world), dist=dist, agent=start.clone(),
                               task=task, task_len=task_len, progress=zeros.clone(), t=zeros.clone(),
                               done=torch.zeros(self.B, dtype=torch.bool, device=self.device),
                               success=torch.zeros(self.B, dtype=torch.bool, device=self.device), world=self.world)
        return self.observation()

    def observation(self) -> torch.Tensor:
        return observation(self.state.static, self.state.agent)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """``actions`` (B,) in 0..3 → ``(obs (B, 637) uint8, reward (B,) float, done (B,) bool, info)``.

        ``done`` is True for episodes that ended at this step or earlier; ``info["ended_now"]`` marks
        the episodes that ended at this step and ``info["wrong"]`` those that hit a wrong colour.
        """
        s = self.state
        live = ~s.done
        nxt = effective_next(s.layout, s.agent, self.world).gather(1, actions.long().view(-1, 1)).squeeze(1)
        nxt = torch.where(live, nxt, s.agent)
        moved = nxt != s.agent
        cell = s.layout.long().gather(1, nxt.unsqueeze(1)).squeeze(1)
        visit = moved & (cell >= 0)
        correct = visit & (cell == s.target)
        wrong = visit & ~correct
        s.agent = nxt
        s.progress = s.progress + correct.long()
        success_now = live & (s.progress >= s.task_len)
        s.t = s.t + live.long()
        ended_now = live & (success_now | (wrong & self.end_on_wrong) | (s.t >= self.t_max))
        s.success = s.success | success_now
        s.done = s.done | ended_now
        return self.observation(), success_now.float(), s.done.clone(), {"ended_now": ended_now, "wrong": wrong}


# ---------------------------------------------------------------------------------------------------
# Gymnasium single-episode environment
# ---------------------------------------------------------------------------------------------------
class GridPinpadEnv(gym.Env):
    """One gridworld-pinpad episode (``gymnasium.make("irl_core/GridPinpad-v0", task=...)`` for ``grid7``,
    ``"irl_core/GridPinpad5x5-v0"`` for ``grid5``).

    The layout comes from the same sampler as :class:`BatchedGridPinpad` with ``batch_size=1`` and the
    same seed, and the dynamics are a separate numpy implementation of the same rules, so that the two
    can be checked against each other. ``reset(options={"layout": (G²,) or (G,G), "start": cell})`` fixes
    the layout. ``info`` reports ``progress`` and ``success`` (never part of the observation).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, task: str | Sequence[int] = "pretrain", render_mode: str | None = None, t_max: int | None = None,
                 world: str | GridWorld = "grid7"):
        self.world = get_world(world)
        self.tasks = task_set(task, self.world) if isinstance(task, str) else (parse_task(task, self.world),)
        self.t_max = self.world.t_max if t_max is None else t_max
        self.render_mode = render_mode
        self.observation_space = gym.spaces.MultiBinary(self.world.obs_dim)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self._batched = BatchedGridPinpad(1, self.tasks, "cpu", 0, self.t_max, world=self.world)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._batched.generator.manual_seed(seed)
        options = options or {}
        task_id = options.get("task_id")
        task_ids = None if task_id is None else torch.tensor([int(task_id)])
        if "layout" in options:
            layout = torch.as_tensor(np.asarray(options["layout"]).reshape(1, self.world.n_cells))
            self._batched.reset(task_ids, layout, torch.tensor([int(options["start"])]))
        else:
            self._batched.reset(task_ids)
        s = self._batched.state
        self.layout = s.layout[0].numpy().astype(np.int64)
        self.task = tuple(int(c) for c in s.task[0, : int(s.task_len[0])])
        self.agent = int(s.agent[0])
        self.progress = 0
        self.t = 0
        self._static = s.static[0].numpy().copy()
        return self._obs(), self._info(False)

    def _obs(self) -> np.ndarray:
        obs = self._static.copy()
        obs[self.agent, self.world.agent_channel] = 1
        return obs.reshape(self.world.obs_dim)

    def _info(self, success: bool) -> dict:
        return {"progress": self.progress, "success": success, "task": self.task, "agent": self.agent}

    def step(self, action):
        G = self.world.size
        r, c = divmod(self.agent, G)
        dr, dc = ACTION_DELTAS[int(action)]
        rr, cc = r + dr, c + dc
        nxt = self.agent
        if 0 <= rr < G and 0 <= cc < G and self.layout[rr * G + cc] != WALL:
            nxt = rr * G + cc
        terminated, success = False, False
        if nxt != self.agent and self.layout[nxt] >= 0:
            if self.layout[nxt] == self.task[self.progress]:
                self.progress += 1
                success = self.progress == len(self.task)
                terminated = success
            else:
                terminated = True
        self.agent = nxt
        self.t += 1
        truncated = not terminated and self.t >= self.t_max
        return self._obs(), float(success), terminated, truncated, self._info(success)

    def render(self):
        from irl_core.envs.grid_render import render_grid_rgb
        return render_grid_rgb(self.layout, self.agent)
