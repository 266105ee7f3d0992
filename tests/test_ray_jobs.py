"""The Ray backend on a real local Ray (``ray.init(num_cpus=2)``): a tiny α sweep of two points through it,
cancel and resume through Ray, a killed run that resumes with an unbroken curve, a run cancelled while it
waits in Ray's queue, and the seeds command over Ray."""
import json
import os
import signal
import time

import pytest

from irl_core.cli import main
from irl_core.jobs import JobError, get_backend
from irl_core.jobs.ray_backend import RayBackend
from irl_core.sweeps import run_seeds, run_sweep

from test_jobs import gone, steps, wait_for

TINY = ["pretrain", "--preset", "tiny"]


@pytest.fixture(scope="module")
def ray_backend(tmp_path_factory):
    """One local Ray with 2 CPUs for the whole module (starting one takes seconds)."""
    backend = RayBackend(num_cpus=2)
    backend.connect()
    yield backend
    backend.shutdown()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("IRL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("IRL_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_tiny_sweep_of_two_points_through_ray(ray_backend, env, tiny_base):
    out = run_sweep(tiny_base, env / "sweep", "tiny", alphas=[0, 0.5], seeds=[0], progress=False,
                    backend=ray_backend, overrides={"steps": 4})
    assert out["failed"] == [] and out["ran"] == 2 and [r["alpha"] for r in out["rows"]] == [0.0, 0.5]
    for r in out["rows"]:
        point = env / "sweep" / "points" / f"frozen_alpha{r['alpha']:g}_seed0"
        assert json.loads((point / "job.json").read_text())["backend"] == "ray"
        st = json.loads((point / "status.json").read_text())
        assert st["status"] == "done" and st["exit_code"] == 0 and st["resources"] == {"CPU": 1.0, "GPU": 0}
    again = run_sweep(tiny_base, env / "sweep", "tiny", alphas=[0, 0.5], seeds=[0], progress=False,
                      backend=ray_backend, overrides={"steps": 4})
    assert again["ran"] == 0 and again["skipped"] == 2 and again["rows"] == out["rows"]


def test_cancel_and_resume_through_ray_continue_the_curve(ray_backend, env):
    path = ray_backend.submit(TINY + ["--steps", "60"], run_dir=env / "run")
    assert json.loads((path / "status.json").read_text())["backend"] == "ray"
    st = wait_for(lambda: ((s := ray_backend.status(path)).get("step") or 0) >= 10 and s["status"] == "running" and s,
                  what="a checkpoint")
    ray_backend._refs.pop(str(path))  # as if another process had submitted it: cancel through its worker's pid...
    st = ray_backend.cancel(path)
    assert st["status"] == "cancelled" and st["step"] >= 10
    wait_for(lambda: gone(st["pid"]), timeout=20, what="the worker to exit")
    with pytest.raises(JobError, match="not running"):
        ray_backend.cancel(path)
    ray_backend.resume(path)
    st = wait_for(lambda: ((s := ray_backend.status(path)).get("step") or 0) >= 30 and s["status"] == "running" and s,
                  what="the resumed run to pass its checkpoint")
    pid = st["pid"]
    st = ray_backend.cancel(path)  # ...and through ray.cancel, which interrupts the task that runs the worker
    assert st["status"] == "cancelled"
    wait_for(lambda: gone(pid), timeout=20, what="the worker to exit")
    ray_backend.resume(path)
    st = ray_backend.wait(path)
    assert st["status"] == "done" and st["exit_code"] == 0
    assert steps(path) == list(range(5, 61, 5))  # never restarted at 0, no step logged twice
    assert ray_backend.logs(path, lines=1000).count("[job ") == 3


def test_killed_worker_is_failed_then_resumes_with_an_unbroken_curve(ray_backend, env):
    path = ray_backend.submit(TINY + ["--steps", "60"], run_dir=env / "run")
    st = wait_for(lambda: ((s := ray_backend.status(path)).get("step") or 0) >= 10 and s["status"] == "running" and s,
                  what="a checkpoint")
    os.kill(st["pid"], signal.SIGKILL)
    killed_at = time.time()
    st = wait_for(lambda: (s := ray_backend.status(path))["status"] == "failed" and s, timeout=30, what="failed")
    assert "without recording" in st["error"] or st.get("exit_code") == -signal.SIGKILL
    ray_backend.resume(path)
    assert ray_backend.wait(path)["status"] == "done"
    rows = [json.loads(l) for l in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(5, 61, 5))
    assert rows[0]["time"] < killed_at < rows[-1]["time"]


def test_a_job_cancelled_while_queued_never_runs(ray_backend, env):
    backend = RayBackend(num_cpus=2, cpus_per_job=64)  # asks for more CPUs than the local Ray has: stays queued
    path = backend.submit(TINY + ["--steps", "5"], run_dir=env / "queued")
    time.sleep(1.0)
    assert backend.status(path)["status"] == "queued"
    st = backend.cancel(path)
    assert st["status"] == "cancelled" and st["note"] == "cancelled before it started"
    assert not (path / "metrics.jsonl").exists()
    assert backend.status(path)["status"] == "cancelled"


def test_seeds_through_ray_and_the_cli(ray_backend, env, capsys, monkeypatch):
    rows = run_seeds(TINY + ["--steps", "5"], [0, 1], env / "seeds", backend=ray_backend, progress=False)
    assert [(r["seed"], r["status"]) for r in rows] == [(0, "done"), (1, "done")]
    cfg = [json.loads((env / "seeds" / f"seed{s}" / "config.json").read_text()) for s in (0, 1)]
    assert [c["seed"] for c in cfg] == [0, 1]
    assert main(["seeds", "--seeds", "0-2", "--out-dir", str(env / "seeds"), "--", *TINY, "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "3 runs, 2 already done, 1 to run" in out and "3 of 3 runs done" in out
    assert main(["seeds", "--seeds", "0", "--", *TINY, "--seed", "3"]) == 2
    assert "already gives --seed" in capsys.readouterr().err
    monkeypatch.setenv("IRL_JOBS_BACKEND", "slurm")
    with pytest.raises(JobError, match="unknown job backend 'slurm'.*IRL_JOBS_BACKEND"):
        get_backend()
