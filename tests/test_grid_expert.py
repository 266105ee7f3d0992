import numpy as np
import pytest
import torch

from irl_core.data import expert_episodes
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.envs.tasks import GRID_HELDOUT_TASK, GRID_PRETRAIN_TASKS, format_task
from irl_core.experts.grid_expert import action_distribution
from test_grid_env import DELTAS, bfs_actions

ALL_TASKS = [format_task(t) for t in GRID_PRETRAIN_TASKS + (GRID_HELDOUT_TASK,)]


@pytest.mark.parametrize("task", ALL_TASKS)
def test_expert_solves_every_episode(task):
    ep = expert_episodes(BatchedGridPinpad(128, task, seed=1))
    assert bool(ep["success"].all())


@pytest.mark.parametrize("task", ALL_TASKS[:2] + ALL_TASKS[-1:])
def test_expert_is_uniform_over_shortest_path_moves(task):
    """At every state, the expert's support is exactly the set of moves on a BFS-shortest path."""
    env = BatchedGridPinpad(8, task, seed=4)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        s = env.state
        probs = action_distribution(s)
        for i in range(env.B):
            if bool(s.done[i]):
                continue
            layout, agent, target = s.layout[i].numpy(), int(s.agent[i]), int(s.target[i])
            d0 = len(bfs_actions(layout, agent, target))
            best = set()
            for a, (dr, dc) in enumerate(DELTAS):
                r, c = divmod(agent, 7)
                rr, cc = r + dr, c + dc
                if not (0 <= rr < 7 and 0 <= cc < 7) or layout[rr * 7 + cc] == -2:
                    continue
                n = rr * 7 + cc
                if layout[n] >= 0 and layout[n] != target:
                    continue
                path = bfs_actions(layout, n, target)
                if n == np.flatnonzero(layout == target)[0] or (path and len(path) == d0 - 1):
                    best.add(a)
            support = set(np.flatnonzero(probs[i].numpy() > 0))
            assert support == best
            assert np.allclose(probs[i].numpy()[sorted(support)], 1 / len(support))
        env.step(torch.multinomial(probs, 1, generator=gen).squeeze(1))


def test_epsilon_noise_never_terminates_and_still_succeeds():
    ep = expert_episodes(BatchedGridPinpad(256, "pretrain", seed=3), epsilon=0.2)
    clean = expert_episodes(BatchedGridPinpad(256, "pretrain", seed=3), epsilon=0.0)
    assert ep["length"].float().mean() > clean["length"].float().mean()  # noise costs steps
    # no wrong-colour ending: every failure is a time-out
    assert bool(((ep["length"] == 100) | ep["success"]).all())


def test_subgoal_labels_follow_progress():
    ep = expert_episodes(BatchedGridPinpad(32, "pretrain", seed=0))
    for i in range(32):
        L = int(ep["length"][i])
        prog = ep["progress"][i, :L]
        assert int(prog[0]) == 0 and int(prog[-1]) == 5  # the last action completes the 6th colour
        task = ep["task"][i]
        assert torch.equal(ep["subgoal"][i, :L], task[prog] // 2)
