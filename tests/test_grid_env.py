"""Contract tests of gridworld-pinpad, parameterised over both worlds and every task (dm_control style)."""
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
import torch

import irl_core  # noqa: F401  (registers the envs)
from irl_core.envs.grid import WALL, BatchedGridPinpad, GridPinpadEnv, observations_from_positions
from irl_core.envs.tasks import format_task
from irl_core.envs.worlds import GRID5, GRID7, WORLDS

GYM_IDS = {"grid7": "irl_core/GridPinpad-v0", "grid5": "irl_core/GridPinpad5x5-v0"}
# (world, task) for every task of both worlds: the 16 pretraining tasks and the held-out one
WORLD_TASKS = [(w.name, format_task(t)) for w in WORLDS.values() for t in w.pretrain_tasks + (w.heldout_task,)]
ALL_TASKS = [t for w, t in WORLD_TASKS if w == "grid7"]  # the paper's world's tasks (other tests import this)


def check_observation(obs, layout, agent, world=GRID7):
    cells = np.asarray(obs).reshape(world.n_cells, world.n_channels)
    A = world.agent_channel
    assert cells.shape == ((49, 13) if world.name == "grid7" else (25, 6)) and set(np.unique(cells)) <= {0, 1}
    assert (cells[:, :A].sum(0) == 1).all(), "each colour and each wall on exactly one cell"
    assert cells[:, :A].sum(1).max() <= 1, "at most one object per cell"
    assert cells[:, A].sum() == 1 and cells[agent, A] == 1
    layout = np.asarray(layout).reshape(-1)
    for c in range(world.n_colours):
        assert cells[layout == c, c].sum() == 1
    assert cells[layout == WALL, world.n_colours:A].sum() == world.n_walls


def test_world_shapes():
    assert (GRID7.size, GRID7.n_colours, GRID7.n_walls, GRID7.t_max, GRID7.obs_dim, GRID7.n_subgoals) == (7, 8, 4, 100, 637, 4)
    assert (GRID5.size, GRID5.n_colours, GRID5.n_walls, GRID5.t_max, GRID5.obs_dim, GRID5.n_subgoals) == (5, 4, 1, 50, 150, 4)
    assert GRID7.subgoal_of_colour(5) == 2 and GRID5.subgoal_of_colour(3) == 3 and GRID7.subgoal_of_colour(-1) == -1


def test_grid5_heldout_transitions_are_unseen_and_task_longer():
    """The two generalisations the paper asks of the held-out task hold in the laptop world too."""
    seen = {(a, b) for t in GRID5.pretrain_tasks for a, b in zip(t, t[1:])}
    held = list(zip(GRID5.heldout_task, GRID5.heldout_task[1:]))
    assert not seen & set(held) and len(GRID5.heldout_task) > max(len(t) for t in GRID5.pretrain_tasks)


@pytest.mark.parametrize("world,task", WORLD_TASKS)
def test_observation_spec_and_validity(world, task):
    env = gym.make(GYM_IDS[world], task=task)
    w = WORLDS[world]
    obs, info = env.reset(seed=3)
    assert obs.shape == (w.obs_dim,) == env.observation_space.shape and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    rng = np.random.default_rng(0)
    for _ in range(30):
        obs, r, term, trunc, info = env.step(int(rng.integers(4)))
        check_observation(obs, env.unwrapped.layout, info["agent"], w)
        assert r in (0.0, 1.0)
        if term or trunc:
            break


@pytest.mark.parametrize("world,task", WORLD_TASKS)
def test_observation_carries_no_task_information(world, task):
    """The observation is a function of the layout and the agent's cell only: other tasks, other progress, same obs."""
    env = GridPinpadEnv(task, world=world)
    env.reset(seed=11)
    w = WORLDS[world]
    held = format_task(w.heldout_task)
    other = GridPinpadEnv(held if task != held else format_task(w.pretrain_tasks[0]), world=world)
    obs_a, _ = env.reset(seed=11)
    obs_b, _ = other.reset(options={"layout": env.layout, "start": env.agent})
    assert np.array_equal(obs_a, obs_b)
    # progress changes nothing either
    env.progress = 3
    assert np.array_equal(env._obs(), obs_a)


@pytest.mark.parametrize("world,task", WORLD_TASKS)
def test_success_path_rewards_once(world, task):
    """Following BFS paths to each colour in order ends the episode with reward 1 exactly at the end."""
    env = GridPinpadEnv(task, world=world)
    env.reset(seed=5)
    rewards, term = [], False
    for colour in env.task:
        for a in bfs_actions(env.layout, env.agent, colour):
            _, r, term, trunc, info = env.step(a)
            rewards.append(r)
    assert term and info["success"] and rewards[-1] == 1.0 and sum(rewards) == 1.0


@pytest.mark.parametrize("world,task", WORLD_TASKS)
def test_wrong_colour_terminates_without_reward(world, task):
    env = GridPinpadEnv(task, world=world)
    env.reset(seed=9)
    wrong = next(c for c in range(env.world.n_colours)
                 if c != env.task[0] and bfs_actions(env.layout, env.agent, c, avoid_all=False))
    actions = bfs_actions(env.layout, env.agent, wrong, avoid_all=False)
    assert actions, "a wrong colour must be reachable in this layout"
    for i, a in enumerate(actions):
        _, r, term, trunc, info = env.step(a)
        if term:
            break
    assert term and r == 0.0 and not info["success"]
    assert env.layout[env.agent] >= 0 and env.layout[env.agent] != env.task[info["progress"]]


def hand_layout():
    """Colours 0..6 on the top row, 7 at (1,0); walls at (5,5)..(5,6) and (6,5)..(6,6)."""
    layout = np.full(49, -1)
    layout[[0, 1, 2, 3, 4, 5, 6, 7]] = range(8)
    layout[[40, 41, 47, 48]] = WALL
    return layout


def test_time_limit_and_noop_moves():
    """Moving off the grid or into a wall is a no-op; the episode is truncated after T=100 steps."""
    env = GridPinpadEnv("0-1-4-5-0-1")
    env.reset(options={"layout": hand_layout(), "start": 42})  # (6,0): bottom-left corner
    for a in (2, 3):  # down and left leave the grid
        _, r, term, trunc, _ = env.step(a)
        assert env.agent == 42 and r == 0.0 and not term
    env.reset(options={"layout": hand_layout(), "start": 39})  # (5,4): right of it is a wall
    steps, trunc, term = 0, False, False
    while not (trunc or term):
        _, r, term, trunc, _ = env.step(1)
        assert env.agent == 39 and r == 0.0
        steps += 1
    assert trunc and not term and steps == 100


def test_visit_counted_on_entry_only():
    """Entering a colour is a visit; bumping into the grid's edge while standing on one is not."""
    env = GridPinpadEnv("0-1-4-5-0-1")
    env.reset(options={"layout": hand_layout(), "start": 14})  # (2,0)
    _, _, term, _, info = env.step(0)  # up onto (1,0) = colour 7: wrong colour
    assert term and info["progress"] == 0
    env.reset(options={"layout": hand_layout(), "start": 8})  # (1,1), under colour 1
    _, _, term, _, info = env.step(1)  # right: empty (1,2)
    env.reset(options={"layout": hand_layout(), "start": 15})  # (2,1)
    # walk to colour 0 at (0,0) via (1,1)? (1,0) is colour 7, so go up twice from (2,1) to (0,1)=colour 1: wrong
    _, _, term, _, _ = env.step(0)
    assert not term and env.agent == 8
    _, _, term, _, info = env.step(0)
    assert term and info["progress"] == 0  # colour 1 before colour 0 is wrong
    # a bump at the top edge while standing on colour 0 after entering it does not count twice
    layout = hand_layout()
    layout[7] = -1  # free (1,0)
    env.reset(options={"layout": layout, "start": 14})
    env.step(0)  # (1,0)
    _, _, term, _, info = env.step(0)  # onto colour 0 at (0,0): correct
    assert not term and info["progress"] == 1
    _, _, term, _, info = env.step(0)  # off the grid: no-op, no second visit
    assert not term and info["progress"] == 1 and env.agent == 0
    _, _, term, _, info = env.step(1)  # onto colour 1: correct
    assert not term and info["progress"] == 2


def test_grid5_time_limit_is_50():
    env = GridPinpadEnv("0-1-2-3", world="grid5")
    layout = np.full(25, -1)
    layout[[0, 1, 2, 3, 24]] = [0, 1, 2, 3, WALL]
    env.reset(options={"layout": layout, "start": 23})  # (4,3): right of it is the wall
    steps, trunc, term = 0, False, False
    while not (trunc or term):
        _, _, term, trunc, _ = env.step(1)
        steps += 1
    assert trunc and not term and steps == 50 and env.agent == 23


def test_determinism_under_seed():
    a, b = GridPinpadEnv("pretrain"), GridPinpadEnv("pretrain")
    oa, ia = a.reset(seed=123)
    ob, ib = b.reset(seed=123)
    assert np.array_equal(oa, ob) and ia["task"] == ib["task"]
    oc, _ = b.reset(seed=124)
    assert not np.array_equal(oa, oc)
    e1, e2 = BatchedGridPinpad(64, seed=7), BatchedGridPinpad(64, seed=7)
    assert torch.equal(e1.reset(), e2.reset())


@pytest.mark.parametrize("world,task", WORLD_TASKS)
def test_batched_equals_gymnasium(world, task):
    """The batched torch simulator and the numpy gymnasium env give identical trajectories."""
    B = 16
    env = BatchedGridPinpad(B, task, seed=2, world=world)
    obs = env.reset()
    s = env.state
    singles = [GridPinpadEnv(task, world=world) for _ in range(B)]
    single_obs = [g.reset(options={"layout": s.layout[i].numpy(), "start": int(s.agent[i])})[0] for i, g in enumerate(singles)]
    assert np.array_equal(obs.numpy(), np.stack(single_obs))
    rng = np.random.default_rng(0)
    ended = np.zeros(B, bool)
    for t in range(100):
        acts = rng.integers(4, size=B)
        obs, rew, done, info = env.step(torch.as_tensor(acts))
        for i, g in enumerate(singles):
            if ended[i]:
                continue
            o, r, term, trunc, _ = g.step(int(acts[i]))
            assert np.array_equal(obs[i].numpy(), o) and float(rew[i]) == r
            assert bool(done[i]) == (term or trunc)
            ended[i] = term or trunc
        if ended.all():
            break


@pytest.mark.parametrize("world", list(WORLDS))
def test_gym_env_seed_matches_batched_b1(world):
    g = GridPinpadEnv("pretrain", world=world)
    obs, info = g.reset(seed=42)
    b = BatchedGridPinpad(1, "pretrain", seed=42, world=world)
    assert np.array_equal(b.reset()[0].numpy(), obs)


def test_a_task_outside_the_world_is_refused():
    from irl_core.envs.tasks import TaskError
    with pytest.raises(TaskError, match="out of range for the grid5"):
        BatchedGridPinpad(2, "0-1-5", world="grid5")
    with pytest.raises(ValueError, match="unknown world"):
        BatchedGridPinpad(2, world="grid9")


@pytest.mark.parametrize("world", list(WORLDS))
def test_observations_from_positions_matches_env(world):
    env = BatchedGridPinpad(8, seed=0, world=world)
    frames = [env.reset()]
    positions = [env.state.agent.clone()]
    for _ in range(5):
        o, *_ = env.step(torch.randint(4, (8,)))
        frames.append(o)
        positions.append(env.state.agent.clone())
    rebuilt = observations_from_positions(env.state.layout, torch.stack(positions, 1), env.world)
    assert torch.equal(rebuilt, torch.stack(frames, 1))


# --- helpers: an independent BFS on the raw layout ---------------------------------------------------
DELTAS = ((-1, 0), (0, 1), (1, 0), (0, -1))


def bfs_actions(layout, start, colour, avoid_all=True):
    """Shortest action list from ``start`` onto ``colour``; other colours are avoided unless avoid_all=False."""
    layout = np.asarray(layout).reshape(-1)
    G = int(round(len(layout) ** 0.5))
    goal = int(np.flatnonzero(layout == colour)[0])
    prev = {start: None}
    q = deque([start])
    while q:
        cell = q.popleft()
        if cell == goal:
            break
        r, c = divmod(cell, G)
        for a, (dr, dc) in enumerate(DELTAS):
            rr, cc = r + dr, c + dc
            if not (0 <= rr < G and 0 <= cc < G):
                continue
            n = rr * G + cc
            if layout[n] == WALL or n in prev:
                continue
            if layout[n] >= 0 and n != goal and avoid_all:
                continue
            prev[n] = (cell, a)
            q.append(n)
    if goal not in prev:
        return []
    out, cell = [], goal
    while prev[cell] is not None:
        cell, a = prev[cell]
        out.append(a)
    return out[::-1]
