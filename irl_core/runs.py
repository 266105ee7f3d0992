"""Run directories: ``runs/<stage>/<run-id>/`` with ``config.json``, ``status.json``, ``metrics.jsonl``
and ``checkpoints/`` (DESIGN.md). Every write is atomic except the append-only metrics log, whose
lines are written whole and flushed, and which a reader tolerates ending in a partial line.
"""
from __future__ import annotations

import json
import os
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from irl_core.checkpoints import REPO_ROOT, atomic_write_bytes, atomic_write_json, read_json

STATUSES = ("queued", "running", "done", "failed", "cancelled")
_OUTCOME_KEYS = ("error", "error_tail", "exit_code", "finished", "note")  # dropped when a run starts again


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
        atomic_write_json(self.path / "config.json", asdict(config) if is_dataclass(config) else config)

    def read_config(self) -> dict:
        return read_json(self.path / "config.json")

    def set_status(self, status: str, **extra: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
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
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(line + "\n")
            f.flush()

    def metrics(self) -> list[dict]:
        return list(iter_metrics(self.path / "metrics.jsonl"))

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines logged after ``after_step`` (a resumed run re-logs them from its checkpoint)."""
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
