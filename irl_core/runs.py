"""Run directories: ``runs/<stage>/<run-id>/`` with ``config.json``, ``status.json``, ``metrics.jsonl``
and ``checkpoints/`` (docs/design.md). Every write is atomic except the append-only metrics log, whose
lines are written whole and flushed, and which a reader tolerates ending in a partial line.

**One writer per run directory.** A process that writes a run owns it through an exclusive ``fcntl.flock``
on ``<run>/.lock``, taken by :meth:`Run.claim` (called by ``write_config``, ``truncate_metrics`` and
``set_status("running")``, so every stage takes it before it resumes or writes anything) and held until the
process exits. A second writer, started directly, as a job or from the app, gets :class:`RunBusy`, one line
naming the holder's pid and host (written into the lock file). The kernel drops a flock when its process
dies, however it dies (``kill -9`` included), so a stale ``.lock`` file never blocks a resume: only a live
holder does. A job's submitter takes the lock and hands it to the worker it starts (an inherited
descriptor, ``_IRL_LOCK_FD``), so nothing can slip in between submit and start. Choices: flock rather than a
pid file (no stale-pid guessing, no recycled pids); the lock is advisory, so it binds this project's
writers only; on network filesystems it is as good as the filesystem's flock emulation.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from irl_core.checkpoints import atomic_write_bytes, atomic_write_json, naming, read_json
from irl_core.paths import REPO_ROOT
from irl_core.errors import UserError

STATUSES = ("queued", "running", "done", "failed", "cancelled")
_OUTCOME_KEYS = ("error", "error_tail", "exit_code", "finished", "note")  # dropped when a run starts again
LOCK_NAME = ".lock"
LOCK_FD_ENV = "_IRL_LOCK_FD"  # not IRL_*: jobs copy IRL_* variables into job.json
_HELD: dict[str, int] = {}  # run directory (resolved) -> descriptor holding its flock in this process


class RunBusy(UserError):
    """Another live process owns this run directory (one line, naming its pid and host)."""


def lock_run_dir(path: str | os.PathLike) -> int:
    """Take the exclusive flock of run directory ``path`` without waiting; returns its descriptor (close it to
    let go) or raises :class:`RunBusy`. Records this process as the holder in the lock file."""
    lock = Path(path) / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise RunBusy(f"{Path(path)} is in use by {_holder(lock)}; wait for it to finish, cancel it, "
                      f"or use another --run-dir") from None
    write_holder(fd)
    return fd


def write_holder(fd: int, pid: int | None = None) -> None:
    """Name the lock's holder in the lock file: this process, or ``pid`` (a worker it is handed to)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": pid or os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode(), 0)


def _holder(lock: Path) -> str:
    try:
        h = json.loads(lock.read_text())
        return f"pid {h['pid']} on host {h['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"  # it has the lock but has not written its name yet


def adopt_lock(path: str | os.PathLike) -> bool:
    """In a job's worker: take over the lock its submitter handed down (``$_IRL_LOCK_FD``) when it is the lock
    of ``path``; returns whether it did. The variable is removed so that children do not adopt it too."""
    fd = os.environ.pop(LOCK_FD_ENV, None)
    if fd is None:
        return False
    try:
        fd = int(fd)
        mine, theirs = os.fstat(fd), os.stat(Path(path) / LOCK_NAME)
    except (ValueError, OSError):
        return False
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        return False
    os.set_inheritable(fd, False)  # pass_fds made it inheritable; the stage's own children must not keep it
    _HELD[str(Path(path).resolve())] = fd
    write_holder(fd)
    return True


def runs_root() -> Path:
    """Where ``Run.create`` puts new runs: ``$IRL_RUNS_DIR`` (read at each call) or ``runs/`` in the repo."""
    return Path(os.environ.get("IRL_RUNS_DIR", REPO_ROOT / "runs"))


def new_run_id(prefix: str = "") -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{prefix}{stamp}-{os.getpid() % 100000:05d}"


class Run:
    """One run directory. ``Run(path)`` opens (creating if needed); nothing is lost if it already exists."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "checkpoints").mkdir(exist_ok=True)

    def claim(self) -> None:
        """Own this run directory for the rest of the process (see the module docstring); a no-op when this
        process already does, :class:`RunBusy` when another live process does."""
        key = str(self.path.resolve())
        if key not in _HELD:
            _HELD[key] = lock_run_dir(self.path)

    def release(self) -> None:
        """Let go of the run directory before the process ends (tests, long-lived callers)."""
        fd = _HELD.pop(str(self.path.resolve()), None)
        if fd is not None:
            os.close(fd)

    @classmethod
    def create(cls, stage: str, run_id: str | None = None, root: str | os.PathLike | None = None) -> "Run":
        """``<root>/<stage>/<run_id>``; without ``run_id`` a new directory (``-2``, ``-3``... within one second)."""
        parent = (Path(root) if root is not None else runs_root()) / stage
        if run_id is not None:
            return cls(parent / run_id)
        parent.mkdir(parents=True, exist_ok=True)
        base, n = new_run_id(), 1
        while True:
            path = parent / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()  # atomic: two processes never get the same directory
                return cls(path)
            except FileExistsError:
                n += 1

    # --- config and status -------------------------------------------------------------------------
    def write_config(self, config: Any) -> None:
        self.claim()
        atomic_write_json(self.path / "config.json", asdict(config) if is_dataclass(config) else config)

    def read_config(self) -> dict:
        return read_json(self.path / "config.json")

    def set_status(self, status: str, **extra: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if status == "running":
            self.claim()
        current = self.status() or {}
        if status in ("queued", "running"):  # started again: the previous outcome no longer applies
            current = {k: v for k, v in current.items() if k not in _OUTCOME_KEYS}
        now = time.time()
        current.update({"status": status, "pid": os.getpid(), "host": socket.gethostname(), "updated": now}, **extra)
        current.setdefault("created", now)
        if status == "running":
            current.setdefault("started", now)
        if status in ("done", "failed", "cancelled"):
            current["finished"] = now
        atomic_write_json(self.path / "status.json", current)

    def status(self) -> dict | None:
        p = self.path / "status.json"
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            return None

    def fail(self, exc: BaseException) -> None:
        tail = "".join(traceback.format_exception(exc))[-4000:]
        self.set_status("failed", error=f"{type(exc).__name__}: {exc}", error_tail=tail)

    @contextmanager
    def recording(self, step: Callable[[], int]) -> Iterator[None]:
        """Around a training loop: Ctrl-C marks the run ``cancelled``, any other error ``failed`` with its tail."""
        try:
            yield
        except KeyboardInterrupt:
            self.set_status("cancelled", step=step())
            raise
        except BaseException as e:
            self.fail(e)
            raise

    # --- metrics -------------------------------------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        line = json.dumps({"step": int(step), "time": time.time(), **metrics})
        try:
            with open(self.path / "metrics.jsonl", "a") as f:
                f.write(line + "\n")
                f.flush()
        except OSError as e:
            raise naming(e, self.path / "metrics.jsonl") from None

    def metrics(self) -> list[dict]:
        return list(iter_metrics(self.path / "metrics.jsonl"))

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines logged after ``after_step`` (a resumed run re-logs them from its checkpoint)."""
        self.claim()
        rows = [r for r in self.metrics() if r.get("step", 0) <= after_step]
        atomic_write_bytes(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"


def iter_metrics(path: str | os.PathLike) -> Iterator[dict]:
    path = Path(path)
    if not path.exists():
        return
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written right now


class ReadOnlyRun(Run):
    """A run directory seen by a process that must not write it (the other processes of a data-parallel run,
    ``irl_core.distributed``): it reads checkpoints as :class:`Run` does, and every write is a no-op."""

    def claim(self) -> None:
        pass

    def write_config(self, config: Any) -> None:
        pass

    def set_status(self, status: str, **extra: Any) -> None:
        pass

    def log(self, step: int, **metrics: Any) -> None:
        pass

    def truncate_metrics(self, after_step: int) -> None:
        pass
