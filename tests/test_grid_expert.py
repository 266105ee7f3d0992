import numpy as np
import pytest
import torch

from irl_core.data import expert_episodes
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.experts.grid_expert import action_distribution
from test_grid_env import DELTAS, WORLD_TASKS, bfs_actions


@pytest.mark.parametrize("world,task", WORLD_TASKS)
def test_expert_solves_every_episode(world, task):
    ep = expert_episodes(BatchedGridPinpad(128, task, seed=1, world=world))
    assert bool(ep["success"].all())


@pytest.mark.parametrize("world,task", WORLD_TASKS[:2] + WORLD_TASKS[16:19] + WORLD_TASKS[-1:])
def test_expert_is_uniform_over_shortest_path_moves(world, task):
    """At every state, the expert's support is exactly the set of moves on a BFS-shortest path."""
    env = BatchedGridPinpad(8, task, seed=4, world=world)
    G = env.world.size
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
                r, c = divmod(agent, G)
                rr, cc = r + dr, c + dc
                if not (0 <= rr < G and 0 <= cc < G) or layout[rr * G + cc] == -2:
                    continue
                n = rr * G + cc
                if layout[n] >= 0 and layout[n] != target:
                    continue
                path = bfs_actions(layout, n, target)
                if n == np.flatnonzero(layout == target)[0] or (path and len(path) == d0 - 1):
                    best.add(a)
            support = set(np.flatnonzero(probs[i].numpy() > 0))
            assert support == best
            assert np.allclose(probs[i].numpy()[sorted(support)], 1 / len(support))
        env.step(torch.multinomial(probs, 1, generator=gen).squeeze(1))


@pytest.mark.parametrize("world,task", WORLD_TASKS[:1] + WORLD_TASKS[16:17])
def test_first_tie_break_is_the_first_optimal_move_and_deterministic(world, task):
    env = BatchedGridPinpad(32, task, seed=2, world=world)
    env.reset()
    for _ in range(20):
        random, first = action_distribution(env.state), action_distribution(env.state, ties="first")
        assert torch.equal(first.argmax(1), (random > 0).float().argmax(1))  # the first move of the uniform support
        assert torch.equal(first.max(1).values, torch.ones(env.B))
        env.step(first.argmax(1))
    assert bool(expert_episodes(BatchedGridPinpad(64, task, seed=3, world=world), 0.0, "first")["success"].all())
    with pytest.raises(ValueError, match="ties"):
        action_distribution(env.state, ties="last")


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


def test_grid5_subgoal_is_the_colour_sought():
    ep = expert_episodes(BatchedGridPinpad(32, "pretrain", seed=0, world="grid5"))
    for i in range(32):
        L = int(ep["length"][i])
        prog = ep["progress"][i, :L]
        assert int(prog[-1]) == 2  # three-colour tasks
        assert torch.equal(ep["subgoal"][i, :L], ep["task"][i][prog])


def test_grid5_unsolvable_layouts_are_resampled():
    """In the 5×5 world too the sampler only returns layouts on which the expert can finish the task in T."""
    from irl_core.envs.grid import _random_layouts, solvable, tasks_tensor
    from irl_core.envs.worlds import GRID5
    task, n = tasks_tensor([GRID5.heldout_task] * 2000)
    lay, start = _random_layouts(2000, torch.Generator().manual_seed(0), "cpu", GRID5)
    ok = solvable(lay, start, task, n, GRID5)
    assert 0.005 < 1 - ok.float().mean() < 0.1  # some uniform layouts are unsolvable (2.5% measured): resampling matters
    ep = expert_episodes(BatchedGridPinpad(512, "heldout", seed=5, world="grid5"))
    assert bool(ep["success"].all()) and int(ep["length"].max()) <= 50
