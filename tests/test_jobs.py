"""Jobs run real ``pretrain --preset tiny`` stages as detached processes: done, cancelled, crashed, killed
and resumed, and the registry never raises on broken run directories."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from irl_core.cli import main
from irl_core.device import DeviceError
from irl_core.jobs import STALE_ERROR, JobError, LocalBackend, list_runs, run_status

ROOT = Path(__file__).resolve().parent.parent
TINY = ["pretrain", "--preset", "tiny"]


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    """A backend whose runs land in ``tmp_path/runs``; any job still alive at the end is killed."""
    monkeypatch.setenv("IRL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("IRL_CHECKPOINTS_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("IRL_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    backend = LocalBackend()
    yield backend
    for row in list_runs(tmp_path / "runs") + [run_status(p) for p in tmp_path.glob("own*")]:
        if row["status"] in ("queued", "running"):
            try:
                os.killpg(row["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for(predicate, timeout=120.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_finished(backend, path):
    """The status once the job has ended and its worker has exited (it adds ``exit_code`` after the stage)."""
    st = wait_for(lambda: (s := backend.status(path))["status"] in ("done", "failed", "cancelled") and s,
                  what="the job to end")
    wait_for(lambda: gone(st["pid"]), timeout=30, what="the worker to exit")
    return backend.status(path)


def gone(pid):
    """The process has exited (a zombie waiting for its parent to reap it counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def steps(path):
    return [json.loads(l)["step"] for l in (Path(path) / "metrics.jsonl").read_text().splitlines()]


def test_job_outlives_the_process_that_submitted_it(jobs, tmp_path, capsys):
    # long enough (~seconds) that the job is still running when its session is checked: 10 tiny steps can end first
    proc = subprocess.run([sys.executable, "-m", "irl_core", "jobs", "submit", "--", *TINY, "--steps", "150"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.parent == tmp_path / "runs" / "pretrain"
    pid = jobs.status(path)["pid"]
    # its own session: closing the app or the shell does not stop it (recorded by the worker, which may already
    # have finished a short job by now)
    assert wait_for(lambda: jobs.status(path).get("sid"), what="the worker's session") == pid != os.getsid(0)
    st = wait_finished(jobs, path)  # the submitting process is long gone
    assert st["status"] == "done" and st["last_step"] == 150 and st["exit_code"] == 0
    assert steps(path) == list(range(5, 155, 5))
    assert json.loads((path / "job.json").read_text())["argv"] == TINY + ["--steps", "150", "--run-dir", str(path)]
    assert f"run directory: {path}" in jobs.logs(path)
    [row] = list_runs()
    assert row["run_dir"] == str(path) and row["status"] == "done" and row["stage"] == "pretrain"
    assert row["command"].startswith("pretrain --preset tiny --steps 150")

    capsys.readouterr()
    assert main(["jobs", "list", "--stage", "pretrain"]) == 0
    assert str(path) in capsys.readouterr().out
    assert main(["jobs", "cancel", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {path} is not running (status done)\n"


def test_cancel_keeps_the_checkpoint_and_ends_the_process(jobs):
    path = jobs.submit(TINY + ["--steps", "100000"])
    wait_for(lambda: (path / "checkpoints" / "last.json").exists(), what="the first checkpoint")
    with pytest.raises(JobError, match="still running"):
        jobs.resume(path)
    pid = jobs.status(path)["pid"]
    st = jobs.cancel(path)
    assert st["status"] == "cancelled" and st["step"] >= 10
    assert wait_for(lambda: gone(pid), timeout=10, what="the process to end")
    assert "interrupted" in jobs.logs(path)
    assert (path / "checkpoints" / "last.safetensors").exists()


@pytest.mark.parametrize("extra, error, exit_code", [
    (["--lr", "-1"], "ValueError", 1),  # an exception inside the stage (AdamW refuses it; --batch-size 0 is refused at submit)
    ([], "not valid JSON", 2),  # a corrupt checkpoint: a one-line user error
])
def test_crash_is_recorded_as_failed(jobs, tmp_path, extra, error, exit_code):
    run_dir = tmp_path / "own_run"
    if not extra:
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "checkpoints" / "last.json").write_text("{garbage")
        (run_dir / "checkpoints" / "last.safetensors").write_bytes(b"\0" * 16)
    path = jobs.submit(TINY + extra, run_dir=run_dir)
    st = wait_finished(jobs, path)
    assert st["status"] == "failed" and error in st["error"] and "\n" not in st["error"]
    assert error in st["error_tail"] and len(st["error_tail"]) <= 4000
    assert st["exit_code"] == exit_code


def test_killed_job_is_stale_then_resumes_from_its_checkpoint(jobs):
    path = jobs.submit(TINY + ["--steps", "60"])
    st = wait_for(lambda: ((s := jobs.status(path)).get("step") or 0) >= 10 and s["status"] == "running" and s,
                  what="a checkpoint")
    os.kill(st["pid"], signal.SIGKILL)
    killed_at = time.time()
    wait_for(lambda: gone(st["pid"]), timeout=10, what="the process to end")
    [row] = list_runs()
    assert row["status"] == "failed" and row["error"] == STALE_ERROR
    assert json.loads((path / "status.json").read_text())["status"] == "failed"  # written back
    assert jobs.resume(path) == path
    st = wait_finished(jobs, path)
    assert st["status"] == "done" and "error" not in st
    rows = [json.loads(l) for l in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(5, 61, 5))  # no step logged twice: it did not restart at 0
    assert rows[0]["time"] < killed_at < rows[-1]["time"]
    assert jobs.logs(path, lines=1000).count("[job ") == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_absent_device_and_bad_commands_are_refused_before_launch(jobs, tmp_path):
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        jobs.submit(TINY + ["--device", "cuda"])
    with pytest.raises(JobError, match="unrecognized arguments: --bogus"):
        jobs.submit(TINY + ["--bogus"])
    with pytest.raises(JobError, match="no --run-dir option"):
        jobs.submit(["sweep"])
    assert not (tmp_path / "runs").exists()
    (tmp_path / "plain").mkdir()
    with pytest.raises(JobError, match="no job.json"):
        jobs.resume(tmp_path / "plain")


def test_registry_of_empty_missing_and_broken_runs(tmp_path):
    assert list_runs(tmp_path / "nowhere") == []
    root = tmp_path / "runs"
    (root / "pretrain").mkdir(parents=True)
    assert list_runs(root) == []
    (root / "pretrain" / "corrupt").mkdir()
    (root / "pretrain" / "corrupt" / "status.json").write_text('{"status": "runn')
    (root / "pretrain" / "empty").mkdir()
    good = root / "discover" / "good"
    good.mkdir(parents=True)
    (good / "status.json").write_text(json.dumps({"status": "done", "created": 1.0}))
    (good / "metrics.jsonl").write_text('{"step": 3}\n{"step": 7}\n{"step": 8, "lo')
    (good / "config.json").write_text("not json")
    rows = {r["id"]: r for r in list_runs(root)}
    assert rows["corrupt"]["status"] == "unknown" and "unreadable" in rows["corrupt"]["reason"]
    assert rows["empty"]["status"] == "unknown" and "missing" in rows["empty"]["reason"]
    assert rows["good"]["status"] == "done" and rows["good"]["last_step"] == 7 and rows["good"]["stage"] == "discover"
    assert [r["id"] for r in list_runs(root, stage="discover")] == ["good"]
    for name in ("internal-rl-seed0", "raw-action-seed0"):  # a group of runs, as reproduce_grid_rl.sh writes them
        run = root / "internal-rl" / "grid5" / name
        run.mkdir(parents=True)
        (run / "status.json").write_text(json.dumps({"status": "done", "created": 2.0}))
    grouped = {r["id"]: r for r in list_runs(root, stage="internal-rl")}
    assert set(grouped) == {"grid5/internal-rl-seed0", "grid5/raw-action-seed0"}
    assert all(r["status"] == "done" and r["stage"] == "internal-rl" for r in grouped.values())


def test_new_runs_get_distinct_directories(tmp_path, monkeypatch):
    from irl_core.runs import Run
    monkeypatch.setenv("IRL_RUNS_DIR", str(tmp_path))  # read at each call, not at import
    a, b = Run.create("pretrain"), Run.create("pretrain")
    assert a.path != b.path and a.path.parent == b.path.parent == tmp_path / "pretrain"
