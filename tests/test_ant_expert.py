"""The ant expert (irl_core/experts/ant_expert.py, ant_planner.py, ant_episodes.py): planner paths on hand-made layouts, yaw-invariant features,
checkpoints, and a tiny training run with resume."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from irl_core.checkpoints import CheckpointError, load_checkpoint
from irl_core.envs import ant as A
from irl_core.experts import ant_episodes as EP
from irl_core.experts import ant_expert as E
from irl_core.experts import ant_planner as P
from irl_core.runs import Run

W, _ = A.WALL_CODE, A.EMPTY_CODE


def L(rows):
    return np.array(rows, dtype=np.int8)


def test_planner_straight_and_around_the_wall():
    layout = L([[0, -1, -1, 1],
                [-1, W, -1, -1],
                [-1, -1, -1, -1],
                [2, -1, 3, -1]])
    assert P.shortest_path(layout, (0, 2), 1) == [(0, 3)]
    assert P.shortest_path(layout, (2, 1), 0) == [(2, 0), (1, 0), (0, 0)]
    path = P.shortest_path(layout, (2, 1), 0)
    assert len(path) == 3 and (1, 1) not in path and path[-1] == (0, 0)
    assert P.plan_action(layout, (0, 2), 1) == 1  # right
    assert P.plan_action(layout, (1, 0), 0) == 0  # up
    assert P.plan_action(layout, (3, 1), 2) == 3  # left


def test_planner_avoids_non_target_colours():
    layout = L([[-1, -1, -1, -1],
                [0, 1, 2, -1],
                [-1, -1, W, -1],
                [-1, -1, -1, 3]])
    path = P.shortest_path(layout, (1, 3), 0)  # straight left would cross colours 2 and 1
    assert path is not None and path[-1] == (1, 0)
    assert all(layout[c] == A.EMPTY_CODE for c in path[:-1])
    assert len(path) == 5  # (0,3) (0,2) (0,1) (0,0) (1,0)
    dist = P.distance_map(layout, 0)
    assert dist[1, 0] == 0 and dist[1, 1] >= 10**6 and dist[2, 2] >= 10**6


def test_planner_unreachable_target():
    layout = L([[0, 1, -1, -1],
                [W, -1, -1, -1],
                [-1, -1, 2, -1],
                [-1, -1, -1, 3]])
    assert P.shortest_path(layout, (2, 1), 0) is None  # colour 0 is walled in by the wall and colour 1
    assert P.plan_action(layout, (2, 1), 0) is None
    with pytest.raises(ValueError, match="out of range"):
        P.distance_map(layout, 4)


def test_planner_directions_point_to_next_cell_centre():
    batch = A.AntPinpadBatch(1)
    layout = L([[0, -1, -1, 1],
                [-1, W, -1, -1],
                [-1, -1, -1, -1],
                [2, -1, 3, -1]])
    batch.reset_one(0, task="1-0-3", layout=layout, start=(2, 3))
    batch.set_xy(0, (3.5, 2.5))  # centre of (2, 3); colour 1 is at (0, 3): go up
    d = P.Planner().directions(batch)[0]
    np.testing.assert_allclose(d, [0.0, 1.0], atol=1e-9)  # world +y is up (row − 1)


def _rotate_z(qpos, qvel, angle):
    rot = np.array([np.cos(angle / 2), 0, 0, np.sin(angle / 2)])
    w1, x1, y1, z1 = rot
    w2, x2, y2, z2 = qpos[3:7]
    q = qpos.copy()
    q[3:7] = [w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
              w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2]
    c, s = np.cos(angle), np.sin(angle)
    v = qvel.copy()
    v[0:2] = [c * qvel[0] - s * qvel[1], s * qvel[0] + c * qvel[1]]
    return q, v


def test_features_are_yaw_invariant():
    rng = np.random.default_rng(0)
    qpos = np.concatenate([[0, 0, 0.6], [0.99, 0.05, -0.08, 0.1], rng.uniform(-0.5, 0.5, 8)])
    qpos[3:7] /= np.linalg.norm(qpos[3:7])
    qvel = rng.normal(size=14)
    direction = np.array([0.6, 0.8])
    f1 = E.features(qpos[None], qvel[None], direction[None])
    for angle in (0.7, -2.0, 3.0):
        q2, v2 = _rotate_z(qpos, qvel, angle)
        c, s = np.cos(angle), np.sin(angle)
        d2 = np.array([c * direction[0] - s * direction[1], s * direction[0] + c * direction[1]])
        f2 = E.features(q2[None], v2[None], d2[None])
        np.testing.assert_allclose(f1, f2, atol=1e-5)
    assert f1.shape == (1, E.FEATURE_DIM) and f1.dtype == np.float32


def test_policy_checkpoint_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    p = E.AntPolicy(hidden=32)
    p.update_stats(torch.randn(50, E.FEATURE_DIM))
    E.save_policy(p, tmp_path / "expert")
    q = E.load_policy(tmp_path / "expert")
    x = np.random.default_rng(0).normal(size=(4, E.FEATURE_DIM)).astype(np.float32)
    np.testing.assert_array_equal(p.act(x, deterministic=True), q.act(x, deterministic=True))
    (tmp_path / "expert.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupted"):
        E.load_policy(tmp_path / "expert")
    with pytest.raises(CheckpointError, match="not found"):
        E.load_policy(tmp_path / "missing")


def test_expert_act_is_bounded_and_seeded():
    policy = E.AntPolicy(hidden=16)
    batch = A.AntPinpadBatch(3)
    for i in range(3):
        batch.seed(i, i)
        batch.reset_one(i)
    a1 = E.AntExpert(policy, seed=5).act(batch)
    a2 = E.AntExpert(policy, seed=5).act(batch)
    assert a1.shape == (3, 8) and np.all(np.abs(a1) <= 1.0)
    np.testing.assert_array_equal(a1, a2)


def test_run_episodes_independent_of_parallelism():
    expert = E.AntExpert(E.AntPolicy(hidden=16), seed=0)
    r1 = EP.run_episodes(expert, [(0, 3, 2), (1, 0, 3)], 4, seed=3, n_parallel=4, record=True)
    r2 = EP.run_episodes(expert, [(0, 3, 2), (1, 0, 3)], 4, seed=3, n_parallel=2, record=True)
    np.testing.assert_array_equal(r1["length"], r2["length"])
    np.testing.assert_array_equal(r1["obs"][3], r2["obs"][3])
    assert r1["task"][:2] == [(0, 3, 2), (1, 0, 3)]
    assert len(r1["uv"][0]) == r1["length"][0] + 1


def test_tiny_training_writes_run_and_resumes(tmp_path):
    cfg = E.make_config("tiny", seed=0)
    run = Run(tmp_path / "run")
    E.train_expert(cfg, run, export=tmp_path / "expert", progress=False)
    rows = run.metrics()
    assert rows and {"charts/SPS", "losses/policy_loss", "losses/value_loss"} <= set(rows[-1])
    assert run.status()["status"] == "done"
    _, config, meta = load_checkpoint(run.checkpoint_dir / "last", kind=E.KIND)
    assert meta["update"] == cfg.total_steps // (cfg.num_envs * cfg.num_steps)
    # resume with a larger budget: continues from the last update and appends metrics
    cfg2 = E.make_config("tiny", seed=0, total_steps=2 * cfg.total_steps)
    E.train_expert(cfg2, run, progress=False)
    steps = [r["step"] for r in run.metrics()]
    assert steps == sorted(steps) and steps[-1] == 2 * cfg.total_steps and len(steps) == len(set(steps))
    assert E.load_policy(tmp_path / "expert") is not None


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        E.make_config("huge")


SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "ant" / "expert"


@pytest.mark.skipif(not SHIPPED.with_suffix(".json").exists(), reason="no shipped ant expert")
def test_shipped_expert_loads_and_is_small():
    policy = E.load_policy(SHIPPED)
    assert SHIPPED.with_suffix(".safetensors").stat().st_size < 2_000_000
    x = np.zeros((2, E.FEATURE_DIM), dtype=np.float32)
    assert policy.act(x, deterministic=True).shape == (2, 8)


def test_task_solvable():
    layout = L([[0, 1, -1, -1],
                [W, -1, -1, -1],
                [-1, -1, 2, -1],
                [-1, -1, -1, 3]])
    assert not P.task_solvable(layout, (2, 1), (0, 3, 2))  # colour 0 is shut in by the wall and colour 1
    assert P.task_solvable(layout, (2, 1), (1, 3, 2))
    assert P.task_solvable(layout, (2, 1), (2, 1, 0))  # colour 0 is reached from colour 1's cell, next door
    assert not P.task_solvable(layout, (2, 1), (1, 0, 3))  # ... but once there it cannot get out
    ok = L([[0, -1, -1, 1], [-1, W, -1, -1], [-1, -1, -1, -1], [2, -1, 3, -1]])
    assert P.task_solvable(ok, (3, 3), (0, 1, 2, 3))


def test_planner_safety_push_bends_away_from_forbidden_cells():
    batch = A.AntPinpadBatch(1)
    layout = L([[0, -1, -1, 1],
                [-1, W, -1, -1],
                [-1, -1, -1, -1],
                [2, -1, 3, -1]])
    batch.reset_one(0, task="1-0-3", layout=layout, start=(2, 3))
    batch.set_xy(0, (3.5, 2.5))
    plain = P.Planner().directions(batch)[0]
    batch.set_xy(0, (3.05, 2.5))  # close to the left neighbour (2, 2), which is empty: no push
    np.testing.assert_allclose(P.Planner(0.3).directions(batch)[0], P.Planner().directions(batch)[0])
    batch.set_xy(0, (3.1, 2.9))   # near the corner of colour 3's cell (3, 2): pushed away from it
    d, d0 = P.Planner(0.3).directions(batch)[0], P.Planner().directions(batch)[0]
    away = np.array([1.0, 1.0]) / np.sqrt(2)  # world +x, +y (away from the corner at u=3, v=3)
    assert d @ away > d0 @ away and np.isclose(np.linalg.norm(d), 1.0)
    assert np.allclose(plain, [0.0, 1.0])
