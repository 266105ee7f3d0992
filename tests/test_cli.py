"""Smoke tests of every grid entry point, and clear one-line errors for bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, cwd=ROOT, check=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "irl_core", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_lists_commands():
    out = cli("--help").stdout
    for command in ("data", "pretrain", "probes", "rollouts", "activations"):
        assert command in out


def test_data_command(tmp_path):
    out = tmp_path / "d.npz"
    cli("data", "--episodes", 50, "--epsilon", 0.1, "--seed", 3, "--out", out)
    with np.load(out) as d:
        assert d["layout"].shape == (50, 49) and d["layout"].dtype == np.int8
        assert d["subgoal"].shape == (50, 100) and d["success"].dtype == bool
        L = d["length"]
        assert ((d["actions"] >= 0).sum(1) == L).all() and (d["subgoal"][np.arange(50), L - 1] >= 0).all()
    again = tmp_path / "d2.npz"
    cli("data", "--episodes", 50, "--epsilon", 0.1, "--seed", 3, "--out", again)
    with np.load(out) as a, np.load(again) as b:
        assert all(np.array_equal(a[k], b[k]) for k in ("layout", "actions"))


def test_pretrain_resume_and_exports(tmp_path):
    run = tmp_path / "run"
    cli("pretrain", "--preset", "tiny", "--steps", 10, "--run-dir", run)
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 10 and json.loads((run / "status.json").read_text())["status"] == "done"
    # resuming a finished run with more steps is refused (different config); a new run dir works
    proc = cli("pretrain", "--preset", "tiny", "--steps", 20, "--run-dir", run, check=False)
    assert proc.returncode == 2 and "different config" in proc.stderr and "Traceback" not in proc.stderr
    ckpt = tmp_path / "ck" / "base"
    cli("pretrain", "--preset", "tiny", "--run-dir", tmp_path / "run2", "--export", ckpt)
    assert (tmp_path / "ck" / "base.safetensors").exists() and (tmp_path / "ck" / "reports" / "pretrain_curve.json").exists()

    out = tmp_path / "roll.npz"
    cli("rollouts", "--env", "grid", "--policy", "base", "--checkpoint", ckpt, "--task", "heldout",
        "--episodes", 20, "--out", out)
    with np.load(out) as r:
        assert r["layout"].shape == (20, 7, 7) and r["start"].shape == (20, 2) and r["task"].shape == (20, 12)
        assert r["actions"].shape == (20, 100) and r["success"].shape == (20,)
    act = tmp_path / "act.npz"
    cli("activations", "--checkpoint", ckpt, "--episodes", 8, "--out", act)
    with np.load(act) as a:
        assert a["resid"].dtype == np.float16 and a["resid"].shape[0] == 8 and a["resid"].shape[2] == 3  # L+1 layers
        assert a["subgoal"].shape == a["resid"].shape[:2] and a["length"].shape == (8,)
    probes = tmp_path / "probes.json"
    cli("probes", "--checkpoint", ckpt, "--episodes", 60, "--sample-episodes", 40, "--out", probes)
    report = json.loads(probes.read_text())
    assert len(report["subgoal_probe"]["accuracy"]) == 3 and "history_use" in report


def test_expert_rollouts_export(tmp_path):
    out = tmp_path / "e.npz"
    proc = cli("rollouts", "--policy", "expert", "--task", "0-1-2-3-4-5-6-7-0-1-2-3", "--episodes", 64, "--out", out)
    with np.load(out) as r:
        assert r["success"].all() and (r["task"][:, :12] == np.arange(12) % 8).all()
    assert "success 1.0000" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("rollouts", "--task", "0-1-9", "--out", "x.npz"), "colour 9 is out of range"),
    (("rollouts", "--task", "banana", "--out", "x.npz"), "not an integer"),
    (("data", "--episodes", 5, "--tasks", "0-1-1", "--out", "x.npz"), "back to back"),
    (("rollouts", "--policy", "base", "--checkpoint", "nowhere/base", "--out", "x.npz"), "not found"),
    (("pretrain", "--preset", "huge"), "unknown preset"),
    (("rollouts", "--device", "cuda:3", "--out", "x.npz"), "cuda"),
])
def test_bad_input_gives_one_line_error(tmp_path, args, message):
    proc = cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.npz").exists()


def test_corrupted_checkpoint_is_refused(tmp_path):
    (tmp_path / "base.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "base.json").write_text('{"kind": "grid-transformer", "config": {}}')
    proc = cli("probes", "--checkpoint", tmp_path / "base", check=False)
    assert proc.returncode == 2 and "corrupted" in proc.stderr and "Traceback" not in proc.stderr


def test_the_5x5_world_end_to_end(tmp_path, tiny_base, tiny_base5):
    """``--world grid5`` for the commands without a checkpoint; the others read the world from theirs, and a
    checkpoint of one world is refused where the other's is expected (one line, exit 2)."""
    data = tmp_path / "d5.npz"
    cli("data", "--world", "grid5", "--episodes", 20, "--out", data)
    with np.load(data) as d:
        assert d["layout"].shape == (20, 25) and d["subgoal"].shape == (20, 50) and str(d["meta_world"]) == "grid5"
        assert d["success"].all() and set(np.unique(d["task"][d["task"] >= 0])) <= {0, 1, 2, 3}
    out = tmp_path / "e5.npz"
    cli("rollouts", "--policy", "expert", "--world", "grid5", "--task", "heldout", "--episodes", 8, "--out", out)
    with np.load(out) as r:
        assert r["layout"].shape == (8, 5, 5) and str(r["world"]) == "grid5" and r["success"].all()
    cli("rollouts", "--policy", "base", "--checkpoint", tiny_base5, "--task", "heldout", "--episodes", 8, "--out", out)
    with np.load(out) as r:
        assert r["layout"].shape == (8, 5, 5) and r["actions"].shape[1] <= 50
    proc = cli("rollouts", "--policy", "expert", "--world", "grid5", "--task", "0-1-6", "--episodes", 2, "--out", out,
               check=False)
    assert proc.returncode == 2 and "out of range for the grid5" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("pretrain", "--preset", "tiny", "--world", "grid5", "--init", tiny_base, "--run-dir", tmp_path / "r",
               check=False)
    assert proc.returncode == 2 and "world (grid7 vs grid5)" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("pretrain", "--preset", "tiny", "--world", "grid9", "--run-dir", tmp_path / "r9", check=False)
    assert proc.returncode == 2 and "grid9" in proc.stderr and not (tmp_path / "r9").exists()
    proc = cli("probes", "--checkpoint", tiny_base5, "--episodes", 40, "--sample-episodes", 16,
               "--out", tmp_path / "p5.json")
    report = json.loads((tmp_path / "p5.json").read_text())
    assert report["world"] == "grid5" and len(report["layers"]) == 3
    assert "first_colour_of_another_task" in report["sampled"]["ends"]
