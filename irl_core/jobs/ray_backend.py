"""The Ray backend of ``irl_core.jobs``: one Ray task per job, over the same run directories as the local one.

``RayBackend().submit(argv)`` validates the command and writes ``job.json`` exactly as the local backend
does (``prepare_job``), records ``queued`` (``backend: "ray"``, ``resources``, and the submitting process
as ``submitter_pid`` / ``submitter_host``), then starts a Ray task with the job's resource request:
``num_cpus`` (default 1) and ``num_gpus`` (default 1 when the command's ``--device`` is ``cuda``, else 0).
The task runs the local backend's worker, ``python -m irl_core.jobs RUN_DIR``, as a child process tied to
it (it gets SIGTERM when the task's process dies), so ``status.json``, ``log.txt`` and the metrics are
written by the same code whichever backend ran them, and ``status`` / ``logs`` read them as there.

Connecting: ``ray.init()`` starts a local Ray on this machine (``num_cpus`` of the backend, default all
cores) unless ``address`` or ``RAY_ADDRESS`` names a cluster (``ray start --head`` on the head node). The
run directories and the repository must then be on storage every node sees at the same path.

Lifetime: Ray ends a driver's tasks when the driver exits, so the process that submits (the app, a
``sweep``, ``jobs submit --backend ray``, which waits) must outlive its jobs. A job is cancelled with
``ray.cancel`` (which interrupts the task; the task stops its worker with SIGTERM, which records
``cancelled`` and keeps the last checkpoint) when this process submitted it, by SIGTERM to its worker
when it runs on this host, and before it starts by recording ``cancelled`` (the task then does nothing).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from irl_core.jobs.local import (ACTIVE, JobError, LocalBackend, prepare_job, prepare_resume, run_status, settled,
                                 tail_log)
from irl_core.paths import REPO_ROOT
from irl_core.runs import Run, RunBusy, lock_run_dir

CANCELLED_BEFORE_START = -1  # what a task returns when its job was cancelled while it waited in Ray's queue


def _die_with_parent() -> None:  # pragma: no cover (runs in the child between fork and exec)
    """Linux: SIGTERM this process when the Ray task that started it dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def job_task(run_dir: str, pythonpath: str) -> int:
    """The body of a job's Ray task, on whichever node Ray picked: run the worker on ``run_dir`` and return its
    exit code. Uses the standard library only (Ray ships it by value, so a node needs no irl_core on its
    path for this; the worker gets ``pythonpath``)."""
    path = Path(run_dir)
    status = json.loads((path / "status.json").read_text())
    if status.get("status") != "queued":  # cancelled while it waited for resources
        return CANCELLED_BEFORE_START
    job = json.loads((path / "job.json").read_text())
    env = {**os.environ, **job.get("env", {}), "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}
    with open(path / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "irl_core.jobs", run_dir], cwd=job.get("cwd"), env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # ray.cancel: stop the worker the way LocalBackend.cancel does
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()


class RayBackend:
    """Jobs as Ray tasks (see the module docstring). ``address`` (default ``$RAY_ADDRESS``) names a cluster;
    without one a local Ray with ``num_cpus`` CPUs starts on first use. ``cpus_per_job`` and ``gpus_per_job``
    are each task's request (``gpus_per_job=None``: 1 for a ``--device cuda`` command, else 0)."""

    name = "ray"
    queues = True  # Ray holds submitted tasks until their resources are free

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_job: float = 1.0,
                 gpus_per_job: float | None = None):
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_job, self.gpus_per_job = cpus_per_job, gpus_per_job
        self._refs: dict[str, object] = {}  # run directory → the ObjectRef of its task (jobs this process submitted)
        self._remote = None

    # --- Ray ------------------------------------------------------------------------------------------
    def connect(self):
        """The ``ray`` module, connected (a local Ray started when no cluster is named); JobError if it cannot."""
        try:
            import ray
        except ImportError:
            raise JobError("the ray backend needs the ray package: pip install -r requirements.txt") from None
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            kwargs = {} if address else {"num_cpus": self.num_cpus}
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                         namespace="irl_core", **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise JobError(f"could not start or reach {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if self._remote is None:
            ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # job_task travels by value
            self._remote = ray.remote(job_task)
        return ray

    def shutdown(self) -> None:
        """Disconnect from Ray (stopping a local Ray this process started, and with it its tasks)."""
        import ray
        ray.shutdown()
        self._refs.clear()
        self._remote = None

    def _start(self, run: Run, job: dict, lock: int) -> Path:
        try:
            self.connect()
            device = str(job.get("device") or "cpu")
            gpus = self.gpus_per_job if self.gpus_per_job is not None else (1 if device.startswith("cuda") else 0)
            run.set_status("queued", backend="ray", device=job.get("device"), submitter_pid=os.getpid(),
                           submitter_host=socket.gethostname(), resources={"CPU": self.cpus_per_job, "GPU": gpus})
        finally:
            os.close(lock)  # the worker takes the lock itself when its task starts
        pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        ref = self._remote.options(num_cpus=self.cpus_per_job, num_gpus=gpus, max_retries=0,
                                   name=f"irl_core {job.get('stage')} {run.path.name}").remote(str(run.path), pythonpath)
        self._refs[str(run.path)] = ref
        return run.path

    # --- JobBackend --------------------------------------------------------------------------------------
    def submit(self, argv: Sequence[str], run_dir: str | os.PathLike | None = None, stage: str | None = None) -> Path:
        self.connect()  # before anything is created: a Ray that cannot start leaves no run directory
        return self._start(*prepare_job(argv, run_dir, stage, "ray", check_device=False))

    def resume(self, run_dir: str | os.PathLike) -> Path:
        self.connect()
        return self._start(*prepare_resume(run_dir))

    def status(self, run_dir: str | os.PathLike) -> dict:
        """``run_status``, plus what only the task knows: a task that ended (or failed inside Ray) without its
        worker recording an outcome is recorded ``failed`` (``cancelled`` if it was cancelled before it started)."""
        st = run_status(run_dir)
        ref = self._refs.get(st["run_dir"])
        if st["status"] not in ACTIVE or ref is None:
            return st
        ray = self.connect()
        if not ray.wait([ref], timeout=0)[0]:
            return st
        try:
            code, error = ray.get(ref), None
        except Exception as e:  # TaskCancelledError, WorkerCrashedError, RayTaskError, ...
            code, error = None, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        st = run_status(run_dir)  # the worker may have recorded its outcome meanwhile
        if st["status"] in ACTIVE:
            if code == CANCELLED_BEFORE_START or "Cancel" in (error or ""):
                Run(st["run_dir"]).set_status("cancelled", exit_code=code)
            else:
                Run(st["run_dir"]).set_status("failed", exit_code=code,
                                              error=error or f"the Ray task ended (exit code {code}) without a result")
            st = run_status(run_dir)
        return st

    def cancel(self, run_dir: str | os.PathLike, wait: float = 10.0) -> dict:
        st = run_status(run_dir)
        if st["status"] not in ACTIVE:
            raise JobError(f"{st['run_dir']} is not running (status {st['status']})")
        path, ref = Path(st["run_dir"]), self._refs.get(st["run_dir"])
        if st.get("pid") == st.get("submitter_pid") and st.get("host") == st.get("submitter_host"):
            try:  # not started yet: record it cancelled under the run's lock, so that a worker starting now backs off
                lock = lock_run_dir(path)
            except RunBusy:
                lock = None  # its worker has just started: stop it below
            if lock is not None:
                try:
                    Run(path).set_status("cancelled", note="cancelled before it started", exit_code=None)
                finally:
                    os.close(lock)
                if ref is not None:
                    self.connect().cancel(ref)
                return run_status(path)
            st = run_status(path)
        if st.get("host") == socket.gethostname() and st.get("pid") and st.get("pid") != st.get("submitter_pid"):
            return LocalBackend().cancel(path, wait=wait)  # its worker runs here: SIGTERM it
        if ref is None:
            raise JobError(f"{path} runs on host {st.get('host')!r}; cancel it there or from the process that submitted it")
        self.connect().cancel(ref)
        deadline = time.time() + wait
        while self.status(path)["status"] in ACTIVE and time.time() < deadline:
            time.sleep(0.1)
        return self.status(path)

    def logs(self, run_dir: str | os.PathLike, lines: int = 50) -> str:
        return tail_log(run_dir, lines)

    def wait(self, run_dir: str | os.PathLike, poll: float = 0.5) -> dict:
        """Block until the job ends; returns its status."""
        while not settled(st := self.status(run_dir)) and st["status"] != "unknown":
            time.sleep(poll)
        return st
