"""Smoke tests of the ant commands through ``python -m irl_core`` (tiny budgets, no trained model needed):
ant-expert (train + export), ant-data (D and D*), rollouts --env ant, video (decoded frame count), ant-eval,
and one-line errors for bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from irl_core.experts.ant_expert import AntPolicy, save_policy

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, check=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "irl_core", *map(str, args)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"exit {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny-preset expert trained and exported through the CLI."""
    d = tmp_path_factory.mktemp("ant")
    res = cli("ant-expert", "--preset", "tiny", "--run-dir", d / "run", "--export", d / "expert", "--quiet")
    assert "run directory" in res.stdout
    assert (d / "expert.safetensors").exists() and (d / "run" / "metrics.jsonl").exists()
    status = json.loads((d / "run" / "status.json").read_text())
    assert status["status"] == "done"
    return d


def test_ant_data_d_and_dstar(trained):
    for flag, kind in (([], "D"), (["--mean-action"], "D*")):
        out = trained / f"data_{kind.replace('*', 'star')}.npz"
        cli("ant-data", "--episodes", 3, "--keep-failures", "--checkpoint", trained / "expert", "--seed", 1,
            "--out", out, "--quiet", *flag)
        with np.load(out) as f:
            n, S = len(f["length"]), int(f["length"].sum())
            assert n == 3 and f["obs"].shape == (S, 41) and f["actions"].shape == (S, 8)
            assert f["subgoal"].shape == (S,) and f["subgoal"].dtype == np.int8
            assert f["layout"].shape == (3, 4, 4) and f["task"].shape == (3, 4)
            assert json.loads(str(f["meta"]))["kind"] == kind
            assert np.all(np.abs(f["actions"]) <= 1.0)
            # labels: the colour being sought, which is the first task colour at the first step
            for i in range(n):
                assert f["subgoal"][f["episode_start"][i]] == f["task"][i, 0]


def test_rollouts_export_format(trained, tmp_path):
    out = tmp_path / "r.npz"
    cli("rollouts", "--env", "ant", "--policy", "expert", "--task", "heldout", "--episodes", 2, "--seed", 0,
        "--checkpoint", trained / "expert", "--out", out)
    with np.load(out) as f:
        assert f["layout"].shape == (2, 4, 4) and f["layout"].dtype == np.int8
        assert f["task"].shape == (2, 4) and f["task"].tolist() == [[0, 1, 2, 3]] * 2
        T = f["xy"].shape[1]
        assert f["xy"].shape == (2, T, 2) and f["xy"].dtype == np.float32
        assert T == f["length"].max() + 1 and f["success"].dtype == bool
        for i, n in enumerate(f["length"]):
            xy = f["xy"][i, :n + 1]
            assert np.isfinite(xy).all() and np.isnan(f["xy"][i, n + 1:]).all()
            r, c = int(xy[0, 1]), int(xy[0, 0])  # the start cell (r, c) spans [c, c+1) × [r, r+1)
            assert f["layout"][i, r, c] == -1


def test_rollouts_function_uses_ant_default_checkpoint(tmp_path, monkeypatch):
    from irl_core.cli import ant as ant_cli
    monkeypatch.setattr(ant_cli, "DEFAULT_EXPERT", str(tmp_path / "no_expert_here"))
    args = Namespace(env="ant", policy="expert", task="0-3-2", episodes=1, seed=0, device="cpu",
                     out=str(tmp_path / "r.npz"), checkpoint=ant_cli._GRID_DEFAULT)
    from irl_core.checkpoints import CheckpointError
    with pytest.raises(CheckpointError, match="no_expert_here"):
        ant_cli.rollouts(args)


def test_video_decodes_with_the_right_frame_count(tmp_path):
    import imageio.v3 as iio
    save_policy(AntPolicy(hidden=16), tmp_path / "untrained")
    out = tmp_path / "ant.mp4"
    res = cli("video", "--env", "ant", "--policy", "expert", "--task", "0-3-2", "--seed", 4, "--size", 96,
              "--checkpoint", tmp_path / "untrained", "--out", out)
    frames = iio.imread(out)
    n = int(res.stdout.split(":")[1].split("frames")[0])
    assert frames.shape[0] == n and frames.shape[1:] == (96, 96, 3)
    meta = iio.immeta(out)
    assert meta.get("codec", "h264").startswith("h264")


def test_ant_eval_report(trained, tmp_path):
    out = tmp_path / "expert.json"
    cli("ant-eval", "--checkpoint", trained / "expert", "--episodes", 2, "--heldout-episodes", 1, "--out", out)
    rep = json.loads(out.read_text())
    assert rep["sampled"]["pretrain"]["episodes"] == 2 and rep["mean"]["heldout"]["episodes"] == 1
    assert 0.0 <= rep["sampled"]["pretrain"]["success_rate"] <= 1.0


@pytest.mark.parametrize("args, message", [
    (["video", "--task", "0-7-2", "--out", "x.mp4"], "out of range"),
    (["video", "--task", "0-3-2", "--policy", "base", "--out", "x.mp4"], "not available"),
    (["ant-data", "--episodes", "2", "--checkpoint", "/nonexistent/expert", "--out", "x.npz"], "not found"),
    (["ant-eval", "--episodes", "0"], "positive"),
    (["ant-expert", "--preset", "huge"], "unknown preset"),
])
def test_bad_input_gives_one_line_error(args, message):
    res = cli(*args, check=False)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_corrupted_checkpoint_is_reported(tmp_path):
    save_policy(AntPolicy(hidden=16), tmp_path / "bad")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage")
    res = cli("video", "--task", "0-3-2", "--checkpoint", tmp_path / "bad", "--out", tmp_path / "x.mp4", check=False)
    assert res.returncode == 2 and "corrupted" in res.stderr
