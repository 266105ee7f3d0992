"""Jobs: any ``python -m irl_core`` stage run in the background, on this machine or on a Ray cluster, and
the registry of run directories (``irl_core.jobs.local`` describes what a run directory holds).

Two backends implement :class:`JobBackend` over the same run directories:

- ``local`` (:class:`LocalBackend`): one detached worker process per job on this machine; jobs outlive the
  app or shell that started them.
- ``ray`` (:class:`irl_core.jobs.ray_backend.RayBackend`): one Ray task per job, with its CPU and GPU
  request; ``ray.init()`` starts a local Ray when no cluster is given, ``RAY_ADDRESS`` points it at one.

``get_backend(name)`` picks one (default: ``$IRL_JOBS_BACKEND``, else ``local``); :func:`run_all` runs a list
of commands through a backend, at most ``max_active`` at a time, and waits for them (sweeps, seeds).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from irl_core.device import available_devices
from irl_core.jobs.local import (ACTIVE, STALE_ERROR, TERMINAL, JobBackend, JobError, LocalBackend, list_runs,
                                 run_status, settled, tail_log, work)

__all__ = ["ACTIVE", "BACKENDS", "STALE_ERROR", "TERMINAL", "JobBackend", "JobError", "LocalBackend",
           "available_devices", "default_backend", "get_backend", "list_runs", "run_all", "run_status", "settled",
           "tail_log", "work"]

BACKENDS = ("local", "ray")
BACKEND_ENV = "IRL_JOBS_BACKEND"
_RAY = None  # one Ray backend per process: it owns the task references of what it submitted


def get_backend(name: str | None = None, num_cpus: int | None = None) -> JobBackend:
    """The ``local`` or ``ray`` backend (default ``$IRL_JOBS_BACKEND``, else ``local``); JobError otherwise.

    The Ray backend is one per process (it holds the task references of what this process submitted);
    ``num_cpus`` sizes the local Ray it starts, if it starts one (ignored on a cluster and by ``local``)."""
    global _RAY
    source = "--backend" if name else BACKEND_ENV
    name = (name or os.environ.get(BACKEND_ENV) or "local").strip().lower()
    if name == "local":
        return LocalBackend()
    if name == "ray":
        if _RAY is None:
            from irl_core.jobs.ray_backend import RayBackend
            _RAY = RayBackend(num_cpus=num_cpus)
        return _RAY
    raise JobError(f"unknown job backend {name!r} (from {source}); "
                   f"choose one of {', '.join(BACKENDS)}")


def default_backend() -> JobBackend:
    return get_backend()


def run_all(backend: JobBackend, commands: Sequence[tuple[Sequence[str], str | os.PathLike]],
            max_active: int | None = None, poll: float = 0.5,
            on_finish: Callable[[Path, dict], None] | None = None) -> dict[Path, dict]:
    """Run ``(argv, run_dir)`` commands through ``backend`` and wait for all of them; returns each run's final
    status by run directory.

    At most ``max_active`` run at once (``None``: submit everything and let the backend queue them, as Ray
    does by resources: backends that queue say so with ``queues = True``). A run that is already queued or
    running (a previous sweep's job still alive) is waited for, not submitted again. ``on_finish(run_dir,
    status)`` is called as each one ends (``settled``: its worker has finished too). Ctrl-C cancels the runs
    this call is waiting for (their checkpoints stay: run again to resume) and re-raises.
    """
    pending = [(list(map(str, argv)), Path(d).resolve()) for argv, d in commands]
    active: list[Path] = []
    finished: dict[Path, dict] = {}
    try:
        while pending or active:
            while pending and (max_active is None or len(active) < max_active):
                argv, d = pending.pop(0)
                if not (d.is_dir() and backend.status(d)["status"] in ACTIVE):
                    backend.submit(argv, run_dir=d)
                active.append(d)
            time.sleep(poll)
            for d in list(active):
                st = backend.status(d)
                if settled(st) or st["status"] == "unknown":
                    active.remove(d)
                    finished[d] = st
                    if on_finish:
                        on_finish(d, st)
    except KeyboardInterrupt:
        for d in active:
            try:
                backend.cancel(d)
            except JobError as e:
                print(f"  {d}: {e}", file=sys.stderr)
        raise
    return finished
