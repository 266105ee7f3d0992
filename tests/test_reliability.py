"""Reliability: one writer per run directory, a kill -9 mid-checkpoint-write, bad inputs, an unwritable
directory and a full disk each end in one line (exit code ≠ 0, no traceback) and leave the run resumable."""
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from irl_core.checkpoints import load_checkpoint
from irl_core.cli import main
from irl_core.runs import Run

ROOT = Path(__file__).resolve().parent.parent
LONG = ["pretrain", "--preset", "tiny", "--steps", "100000", "--threads", "1"]  # runs until stopped or killed

# `python -c` program: the given CLI command, which stops for good half-way through writing its third checkpoint
# (temp file half-written, not yet renamed over checkpoints/last) and prints "paused", holding the run's lock.
PAUSE_IN_THIRD_CHECKPOINT = """
import sys, time
import irl_core.checkpoints as c
real, calls = c.save_file, []
def save_file(tensors, path, *a, **k):
    calls.append(path)
    real(tensors, path, *a, **k)
    if len(calls) == 3:
        with open(path, "r+b") as f:
            f.truncate(f.seek(0, 2) // 2)
        print("paused", flush=True)
        time.sleep(600)
c.save_file = save_file
from irl_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "irl_core", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env(), timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def one_line_error(stderr: str) -> str:
    """The one line of an error, besides progress bars (lines as a terminal shows them, after their \\r)."""
    lines = [line.split("\r")[-1] for line in stderr.split("\n")]
    lines = [line for line in lines if line.strip() and not re.search(r"\| *\d+/\d+ \[", line)]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def rows(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def in_process(monkeypatch, tmp_path):
    """For ``main`` run in this process: runs under tmp_path, torch's thread count restored, locks let go."""
    monkeypatch.setenv("IRL_RUNS_DIR", str(tmp_path / "runs"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    for d in tmp_path.rglob(".lock"):
        Run(d.parent).release()


def test_second_writer_is_refused_and_a_kill_mid_checkpoint_resumes_exactly(tmp_path):
    run, ref = tmp_path / "run", tmp_path / "ref"
    reference = subprocess.Popen([sys.executable, "-m", "irl_core", *LONG, "--stop-at", "40", "--run-dir", ref],
                                 cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = subprocess.Popen([sys.executable, "-c", PAUSE_IN_THIRD_CHECKPOINT, *LONG, "--run-dir", run], cwd=ROOT,
                             env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert any("paused" in line for line in first.stdout), "the first writer never reached its third checkpoint"
        before = (run / "metrics.jsonl").read_text()
        # a second writer, started directly or as a job, is refused in one line naming the owner
        for proc in (cli(*LONG, "--run-dir", run, check=False),
                     cli("jobs", "submit", "--", *LONG, "--run-dir", run, check=False)):
            assert proc.returncode == 2
            assert f"{run} is in use by pid {first.pid} on host" in one_line_error(proc.stderr)
        assert (run / "metrics.jsonl").read_text() == before and not (run / "job.json").exists()
        assert [r["step"] for r in rows(run)] == list(range(5, 35, 5))
    finally:
        first.kill()  # kill -9 while its third checkpoint is half-written
        first.wait()
    assert list((run / "checkpoints").glob(".last.safetensors.*.tmp"))  # the half-written temp file stayed behind
    assert load_checkpoint(run / "checkpoints" / "last")[2]["step"] == 20  # the previous checkpoint is intact
    # its lock died with it: the same command resumes at once, from step 20, and continues the same curve
    cli(*LONG, "--stop-at", "40", "--run-dir", run)
    assert reference.wait(timeout=300) == 0
    got, want = rows(run), rows(ref)
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(5, 45, 5))
    assert [r["losses/action_nll"] for r in got] == [r["losses/action_nll"] for r in want]


@pytest.mark.parametrize("argv, says", [
    (["rollouts", "--episodes", "0", "--out", "{tmp}/x.npz"], "--episodes must be a positive number, got 0"),
    (["rollouts", "--episodes", "-5", "--out", "{tmp}/x.npz"], "--episodes must be a positive number, got -5"),
    (["probes", "--episodes", "0", "--out", "{tmp}/p.json"], "--episodes must be a positive number, got 0"),
    (["pretrain", "--preset", "tiny", "--threads", "-1", "--run-dir", "{tmp}/r"], "--threads must be a positive number"),
    (["pretrain", "--preset", "tiny", "--steps", "-3", "--run-dir", "{tmp}/r"], "--steps must be a positive number"),
    (["pretrain", "--preset", "nope"], "unknown preset 'nope' for pretrain"),
    (["rollouts", "--episodes", "3", "--out", "{tmp}/x"], "--out {tmp}/x: must end in .npz"),
    (["jobs", "submit", "--", "pretrain", "--preset", "nope", "--run-dir", "{tmp}/r"], "unknown preset 'nope'"),
    (["jobs", "submit", "--", "pretrain", "--preset", "tiny", "--batch-size", "0"], "--batch-size must be a positive"),
])
def test_bad_inputs_are_one_line_and_create_nothing(argv, says, tmp_path, in_process, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert says.format(tmp=tmp_path) in one_line_error(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run directory, no output, no runs/ root


def test_bad_input_through_the_real_entry_point(tmp_path):
    proc = cli("pretrain", "--preset", "tiny", "--steps", "-3", "--run-dir", tmp_path / "r", check=False)
    assert proc.returncode == 2 and "--steps must be a positive number, got -3" in one_line_error(proc.stderr)
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_run_directory(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    run.chmod(0o555)
    try:
        proc = cli(*LONG, "--run-dir", run, check=False)
    finally:
        run.chmod(0o755)
    assert proc.returncode == 2 and f"{run}/.lock: Permission denied" in one_line_error(proc.stderr)


def test_unwritable_run_directory_and_output_path(tmp_path, in_process, monkeypatch, capsys):
    """The same as a read-only directory for any user (root included): every open under ``ro`` is refused."""
    ro = tmp_path / "ro"
    (ro / "checkpoints").mkdir(parents=True)
    real_open = os.open

    def refusing_open(path, *a, **k):
        if str(path).startswith(str(ro)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", refusing_open)
    assert main([*LONG, "--run-dir", str(ro)]) == 2
    assert one_line_error(capsys.readouterr().err) == f"error: {ro}/.lock: Permission denied"

    def refusing_savez(path, **arrays):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(np, "savez_compressed", refusing_savez)
    out = ro / "roll.npz"
    assert main(["rollouts", "--episodes", "2", "--out", str(out)]) == 2
    assert one_line_error(capsys.readouterr().err) == f"error: {out}: Permission denied"


def test_full_disk_is_one_line_and_the_last_checkpoint_resumes_exactly(tmp_path, in_process, monkeypatch, capsys):
    import irl_core.checkpoints as checkpoints
    args = ["pretrain", "--preset", "tiny", "--threads", "1", "--seed", "3"]
    assert main([*args, "--run-dir", str(tmp_path / "ref")]) == 0
    real, calls = checkpoints.save_file, []

    def filling(tensors, path, *a, **k):  # the second checkpoint (step 20) finds the disk full half-way
        calls.append(path)
        real(tensors, path, *a, **k)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_file", filling)
    run = tmp_path / "run"
    capsys.readouterr()
    assert main([*args, "--run-dir", str(run)]) == 2
    assert one_line_error(capsys.readouterr().err) == f"error: {run}/checkpoints/last.safetensors: No space left on device"
    assert (Run(run).status() or {})["status"] == "failed"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.json", "last.safetensors"]  # no temp file
    assert load_checkpoint(run / "checkpoints" / "last")[2]["step"] == 10  # the checkpoint before stays intact
    monkeypatch.setattr(checkpoints, "save_file", real)
    assert main([*args, "--run-dir", str(run)]) == 0  # space again: the same command resumes from step 10
    assert [(r["step"], r["losses/action_nll"]) for r in rows(run)] == \
           [(r["step"], r["losses/action_nll"]) for r in rows(tmp_path / "ref")]


def test_outputs_take_the_umask_mode(tmp_path, in_process):
    old = os.umask(0o022)
    try:
        assert main(["pretrain", "--preset", "tiny", "--threads", "1", "--run-dir", str(tmp_path / "r"),
                     "--export", str(tmp_path / "ck" / "base")]) == 0
    finally:
        os.umask(old)
    for p in [tmp_path / "ck" / "base.safetensors", tmp_path / "ck" / "base.json",
              tmp_path / "ck" / "reports" / "pretrain_curve.json", tmp_path / "r" / "checkpoints" / "last.safetensors"]:
        assert p.stat().st_mode & 0o777 == 0o644, p
