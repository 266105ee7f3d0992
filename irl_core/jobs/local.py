"""Jobs: any ``python -m irl_core`` stage run as a background process that outlives the app or shell
that started it, and the registry of run directories.

A job is a CLI argv (``["pretrain", "--preset", "tiny", "--seed", "0"]``) run with ``--run-dir <dir>``
appended (default ``runs/<stage>/<new id>``, see ``irl_core.runs``). Besides the stage's own files, the
run directory holds:

- ``job.json``: ``{"argv": [...], "stage": str, "cwd": str, "env": {"IRL_...": str}, "device": str | None,
  "created": float, "backend": "local"}``; ``argv`` is exactly what runs (``--run-dir`` included), in ``cwd``,
  with the ``IRL_*`` environment variables of the submitter (``IRL_RUNS_DIR``, ``IRL_CHECKPOINTS_DIR``,
  ``IRL_THREADS``: torch threads in the worker), so that ``resume`` reruns the same thing.
- ``log.txt``: the job's stdout and stderr (tqdm bars included), appended to by every attempt.
- ``status.json`` (``Run.set_status``): ``queued`` with the worker's pid at submit, then the stage's own
  ``running`` / ``done`` / ``failed`` / ``cancelled``. The worker fills in what the stage did not record:
  ``done`` when the command returned 0, ``failed`` with ``error`` (one line), ``error_tail`` (the end of the
  log) and ``exit_code`` otherwise, ``cancelled`` on SIGTERM (raised as ``KeyboardInterrupt``, so
  ``Run.recording`` stores the step; the stage's last checkpoint stays and ``resume`` continues from it).

One writer per run directory (``irl_core.runs``): ``submit`` and ``resume`` take the run's lock before they
look at its status, refuse one owned by a live process (a job, a direct CLI run, the app's), and hand the
lock to the worker they start, which keeps it until it exits. ``submit`` validates the command's arguments
(``irl_core.cli.validate``) before it creates the run directory.

``LocalBackend`` (the default) starts ``python -m irl_core.jobs <run_dir>`` in a new session, so that
closing the app or the shell does not stop it. ``irl_core.jobs.ray_backend`` runs the same worker in Ray
tasks; both share ``prepare_job`` / ``prepare_resume`` and read run directories with the functions below.

One module (about 440 lines): the worker, the status records it writes and the run registry share the
run-lock protocol; splitting them would spread one protocol over three files.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Protocol, Sequence

import torch

from irl_core.checkpoints import atomic_write_json
from irl_core.paths import REPO_ROOT
from irl_core.cli import build_parser, main, validate
from irl_core.errors import UserError
from irl_core.device import resolve_device
from irl_core.runs import LOCK_FD_ENV, STATUSES, Run, RunBusy, adopt_lock, lock_run_dir, runs_root, write_holder


ACTIVE = ("queued", "running")
TERMINAL = ("done", "failed", "cancelled")
STALE_ERROR = "process exited without recording a result"


class JobError(UserError):
    """A job that cannot be submitted, cancelled or resumed; the message is one line."""


class JobBackend(Protocol):
    """What the app and ``python -m irl_core jobs`` use to launch and follow runs."""

    name: str  # "local", "ray"
    queues: bool  # whether submitted jobs wait for resources in the backend (else each starts at once)

    def submit(self, argv: Sequence[str], run_dir: str | os.PathLike | None = None, stage: str | None = None) -> Path:
        """Start ``argv`` in ``run_dir`` (default ``runs/<stage>/<new id>``); returns the run directory."""

    def status(self, run_dir: str | os.PathLike) -> dict:
        """``run_status(run_dir)``."""

    def cancel(self, run_dir: str | os.PathLike) -> dict:
        """Stop a queued or running job; returns its status afterwards."""

    def logs(self, run_dir: str | os.PathLike, lines: int = 50) -> str:
        """The last ``lines`` lines of the job's output."""

    def resume(self, run_dir: str | os.PathLike) -> Path:
        """Rerun a finished, failed or cancelled job's command in the same run directory."""


# --- the local backend --------------------------------------------------------------------------------
class LocalBackend:
    """Jobs as detached processes on this machine (one worker process per job, in its own session)."""

    name = "local"
    queues = False  # every job submitted starts at once (irl_core.jobs.run_all throttles)

    def submit(self, argv: Sequence[str], run_dir: str | os.PathLike | None = None, stage: str | None = None) -> Path:
        run, job, lock = prepare_job(argv, run_dir, stage, "local")
        try:
            _launch(run, job, lock)
        finally:
            os.close(lock)  # the worker holds its own copy now
        return run.path

    def status(self, run_dir: str | os.PathLike) -> dict:
        return run_status(run_dir)

    def cancel(self, run_dir: str | os.PathLike, wait: float = 10.0) -> dict:
        """SIGTERM the job's process group, then wait up to ``wait`` seconds for it to record ``cancelled``."""
        st = run_status(run_dir)
        if st["status"] not in ACTIVE:
            raise JobError(f"{st['run_dir']} is not running (status {st['status']})")
        if st.get("host", socket.gethostname()) != socket.gethostname() or not st.get("pid"):
            raise JobError(f"{st['run_dir']} runs on host {st.get('host')!r} with pid {st.get('pid')}; cancel it there")
        pid = st["pid"]
        try:
            if os.getpgid(pid) == pid:  # a session or group leader (every job is): stop its children too
                os.killpg(pid, signal.SIGTERM)
            else:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + wait
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        if not _alive(pid):  # killed before it could record anything (e.g. while still importing)
            run = Run(st["run_dir"])
            if (run.status() or {}).get("status") in ACTIVE:
                run.set_status("cancelled", pid=pid, host=st.get("host"))
        return run_status(run_dir)

    def logs(self, run_dir: str | os.PathLike, lines: int = 50) -> str:
        return tail_log(run_dir, lines)

    def resume(self, run_dir: str | os.PathLike) -> Path:
        run, job, lock = prepare_resume(run_dir)
        try:
            _launch(run, job, lock)
        finally:
            os.close(lock)
        return run.path


def prepare_job(argv: Sequence[str], run_dir: str | os.PathLike | None, stage: str | None, backend: str,
                check_device: bool = True) -> tuple[Run, dict, int]:
    """What every backend's ``submit`` does before it starts anything: validate the command (a one-line
    JobError), create or open the run directory, take its lock, refuse a run that is queued or running, and
    write ``job.json``. Returns the run, the job and the locked descriptor (the caller closes it).
    ``check_device=False`` leaves ``--device`` to the machine that runs the job (a cluster's GPU node)."""
    argv = [str(a) for a in argv]
    args = _parse(argv)
    device = getattr(args, "device", None)
    if device is not None and check_device:
        resolve_device(device)  # DeviceError before anything is created or launched
    if args.run_dir and run_dir and Path(args.run_dir).resolve() != Path(run_dir).resolve():
        raise JobError(f"two run directories given: {run_dir} and --run-dir {args.run_dir}")
    run_dir = run_dir or args.run_dir
    stage = stage or args.command
    run = Run(Path(run_dir).resolve()) if run_dir else Run.create(stage)
    lock = _lock(run.path)
    try:
        current = run_status(run.path)["status"]
        if current in ACTIVE:
            raise JobError(f"{run.path} is already {current}; cancel it first or use another run directory")
        job = {"argv": argv if args.run_dir else [*argv, "--run-dir", str(run.path)], "stage": stage,
               "cwd": os.getcwd(), "env": {k: v for k, v in os.environ.items() if k.startswith("IRL_")},
               "device": device, "created": time.time(), "backend": backend}
        atomic_write_json(run.path / "job.json", job)
    except BaseException:
        os.close(lock)
        raise
    return run, job, lock


def prepare_resume(run_dir: str | os.PathLike) -> tuple[Run, dict, int]:
    """What every backend's ``resume`` does first: check the run has a ``job.json`` and is not queued or
    running, and take its lock. Returns the run, its job and the locked descriptor (the caller closes it)."""
    path = _existing(run_dir)
    if not (path / "job.json").exists():
        raise JobError(f"{path} has no job.json (it was not started as a job); run its command with --run-dir {path}")
    st = run_status(path)
    if st["status"] in ACTIVE:
        raise JobError(f"{path} is still {st['status']} (pid {st.get('pid')}); cancel it first")
    job, problem = _read_json(path / "job.json")
    if problem or not isinstance(job, dict) or not isinstance(job.get("argv"), list):
        raise JobError(f"{path / 'job.json'}: {problem or 'no argv'}; submit the command again")
    return Run(path), job, _lock(path)


def _parse(argv: list[str]):
    """The argparse namespace of an irl_core command, validated (``irl_core.cli.validate``), or a one-line
    JobError (unknown command or option, bad preset, count ≤ 0, ...)."""
    if not argv:
        raise JobError("empty command; give an irl_core command such as: pretrain --preset tiny")
    out = StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(out):
            args = build_parser().parse_args(argv)
    except SystemExit as e:
        problem = (out.getvalue().strip().splitlines() or ["?"])[-1].split("error: ")[-1] if e.code else "it only prints help"
        raise JobError(f"invalid command {' '.join(argv)!r}: {problem}") from None
    if args.command == "jobs" or not hasattr(args, "run_dir"):
        raise JobError(f"{args.command!r} has no --run-dir option, so it cannot run as a job")
    try:
        validate(args)
    except UserError as e:
        raise JobError(f"invalid command {' '.join(argv)!r}: {e}") from None
    return args


def _lock(path: Path) -> int:
    """The run's lock for a submitter (handed to its worker by ``_launch``), or a JobError naming its owner."""
    try:
        return lock_run_dir(path)
    except RunBusy as e:
        raise JobError(str(e)) from None


def _launch(run: Run, job: dict, lock: int) -> None:
    """Start the worker detached, handing it ``lock`` (the run's locked descriptor), and record ``queued`` with
    its pid before letting it go."""
    env = {**os.environ, **job.get("env", {}), "PYTHONUNBUFFERED": "1", LOCK_FD_ENV: str(lock),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    with open(run.path / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "irl_core.jobs", str(run.path)], cwd=job.get("cwd"), env=env,
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=(lock,))
    try:
        write_holder(lock, proc.pid)
        run.set_status("queued", pid=proc.pid, device=job.get("device"), backend="local")
    finally:
        proc.stdin.close()  # the worker waits for this, so its own status writes come after ours
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it when it ends (no zombie in a long-lived app)


# --- the worker: python -m irl_core.jobs RUN_DIR -----------------------------------------------------------
def _interrupt(signum, frame):
    raise KeyboardInterrupt


def work(run_dir: str | os.PathLike) -> int:
    """Run the job stored in ``run_dir/job.json`` in this process and record its outcome; returns its exit code."""
    signal.signal(signal.SIGTERM, _interrupt)
    run, error = Run(run_dir), None
    try:
        if not adopt_lock(run.path):  # started by hand, not by _launch: take the lock ourselves
            run.claim()
    except RunBusy as e:  # someone else's run: record nothing in it
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        sys.stdin.read()  # until submit has recorded our pid
        run.set_status("queued", sid=os.getsid(0))  # our own session (start_new_session): closing the shell spares us
        job, problem = _read_json(run.path / "job.json")
        if problem:
            raise JobError(f"{run.path / 'job.json'}: {problem}")
        if os.environ.get("IRL_THREADS"):
            torch.set_num_threads(int(os.environ["IRL_THREADS"]))
        print(f"[job {time.strftime('%Y-%m-%d %H:%M:%S')}] python -m irl_core {' '.join(job['argv'])}", flush=True)
        code = main(job["argv"])
    except KeyboardInterrupt:
        code = 130
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException as e:
        traceback.print_exc()
        error, code = f"{type(e).__name__}: {e}", 1
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish recording
    sys.stdout.flush()
    sys.stderr.flush()
    _record_outcome(run, code, error)
    return code


def _record_outcome(run: Run, code: int, error: str | None) -> None:
    """Add ``exit_code`` to what the stage recorded, and record what it did not: done, cancelled, or failed
    with the end of the log."""
    recorded = (run.status() or {}).get("status")
    extra: dict = {"exit_code": code}
    if code == 0:
        status = recorded if recorded in TERMINAL else "done"
    elif code == 130:
        status = recorded if recorded in ("cancelled", "failed") else "cancelled"
    else:
        status = "failed"
        if recorded != "failed":
            log = _log_text(run.path / "log.txt")
            last = next((l.strip() for l in reversed(log.splitlines()) if l.strip()), "")
            last = last.removeprefix("error: ")  # main's one-line error, recorded once as ``error``
            extra.update(error=error or last or f"exit status {code}", error_tail=log[-4000:])
    run.set_status(status, **extra)


# --- reading run directories ------------------------------------------------------------------------------
def run_status(run_dir: str | os.PathLike) -> dict:
    """``status.json`` of a run plus ``run_dir``, ``stage``, ``id``, ``last_step`` (of the last metrics row)
    and ``command`` (the job's argv, for runs started as jobs).

    Never raises for a broken run: an unreadable ``status.json`` gives status ``unknown`` with a ``reason``.
    A queued or running run whose process is gone is recorded as ``failed`` (``STALE_ERROR``).
    """
    return _describe(_existing(run_dir))


def settled(st: dict) -> bool:
    """Whether a job has ended *and* its worker has finished: a stage records ``done`` before its command has
    written its last files (a report after training), so its outcome is final once the worker has added
    ``exit_code``, or once its process is gone (a worker killed before recording)."""
    if st["status"] not in TERMINAL:
        return False
    if "exit_code" in st or st.get("error") == STALE_ERROR:
        return True
    pid = st.get("pid")
    return not (isinstance(pid, int) and st.get("host", socket.gethostname()) == socket.gethostname() and _alive(pid))


def list_runs(root: str | os.PathLike | None = None, stage: str | None = None) -> list[dict]:
    """``run_status`` of every ``<root>/<stage>/<id>/`` (default root ``runs_root()``), newest first. A folder there
    that is not a run but holds runs (``scripts/reproduce_grid_rl.sh`` groups a set's runs as
    ``internal-rl/<set>/<method>-seed<s>``) lists those, with ids ``<group>/<run>``."""
    root = (Path(root) if root is not None else runs_root()).resolve()
    if not root.is_dir():
        return []
    rows = [_describe(d, s) for s in sorted(root.iterdir()) if s.is_dir() and stage in (None, s.name)
            for d in _run_dirs(s)]
    return sorted(rows, key=lambda r: r.get("created") or 0, reverse=True)


def _run_dirs(stage_dir: Path) -> list[Path]:
    out = []
    for d in sorted(stage_dir.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        is_run = any((d / name).exists() for name in ("status.json", "job.json", "config.json"))
        group = [] if is_run else [k for k in sorted(d.iterdir()) if k.is_dir() and (k / "status.json").exists()]
        out += group or [d]
    return out


def tail_log(run_dir: str | os.PathLike, lines: int = 50) -> str:
    """The last ``lines`` lines of the job's log, progress bars shown as a terminal would (last update only)."""
    text = _log_text(_existing(run_dir) / "log.txt", max_bytes=max(65536, 400 * lines))
    return "\n".join(text.splitlines()[-lines:])


def _describe(path: Path, stage_dir: Path | None = None) -> dict:
    stage_dir = stage_dir or path.parent
    row = {"run_dir": str(path), "stage": stage_dir.name, "id": path.relative_to(stage_dir).as_posix(), "status": "unknown"}
    job, _ = _read_json(path / "job.json")
    if isinstance(job, dict):
        row.update(stage=job.get("stage", row["stage"]), command=" ".join(map(str, job.get("argv", []))),
                   created=job.get("created"))
    else:
        config, _ = _read_json(path / "config.json")
        if isinstance(config, dict) and isinstance(config.get("stage"), str):
            row["stage"] = config["stage"]
    st, problem = _read_json(path / "status.json")
    if problem or not isinstance(st, dict) or st.get("status") not in STATUSES:
        row["reason"] = f"status.json: {problem or 'no valid status'}"
        return row
    if st["status"] in ACTIVE and _is_stale(st):
        st = _mark_stale(path, st)
    row.update(st, last_step=_last_step(path / "metrics.jsonl"))
    return row


def _is_stale(st: dict) -> bool:
    pid = st.get("pid")
    return isinstance(pid, int) and st.get("host", socket.gethostname()) == socket.gethostname() \
        and not _alive(pid, since=st.get("updated"))


def _mark_stale(path: Path, st: dict) -> dict:
    """Record ``failed`` unless the process recorded an outcome just before it exited."""
    now, _ = _read_json(path / "status.json")
    if isinstance(now, dict) and now.get("status") not in ACTIVE:
        return now
    lock = None
    for attempt in range(10):  # a process killed a moment ago may still be releasing its descriptors
        try:
            lock = lock_run_dir(path)  # a live owner (one that has not written its status yet) is not stale
            break
        except RunBusy:
            if attempt == 9:
                return st
            time.sleep(0.05)
        except OSError:
            break
    try:
        Run(path).set_status("failed", pid=st["pid"], host=st.get("host"), error=STALE_ERROR,
                             error_tail=_log_text(path / "log.txt")[-4000:])
        return Run(path).status() or st
    except OSError:  # a read-only copy of the runs: report it without recording
        return {**st, "status": "failed", "error": STALE_ERROR}
    finally:
        if lock is not None:
            os.close(lock)


def _alive(pid: int, since: float | None = None) -> bool:
    """Whether ``pid`` is a live process (not a zombie) that started no later than ``since`` (a time it wrote
    its status); one that started after is another program that got the recycled pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not Path("/proc/stat").exists():  # no procfs (macOS): trust kill
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # [0] state, [19] start ticks
        boot = next(int(l.split()[1]) for l in Path("/proc/stat").read_text().splitlines() if l.startswith("btime"))
    except (OSError, StopIteration, IndexError):
        return False
    if fields[0] in ("Z", "X"):
        return False
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # btime is whole seconds: up to 1 s early
    return since is None or started <= since + 2.0


def _existing(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir).resolve()
    if not path.is_dir():
        raise JobError(f"no run directory at {run_dir}")
    return path


def _read_json(path: Path) -> tuple[object, str | None]:
    """``(content, None)`` or ``(None, problem)``; never raises."""
    try:
        return json.loads(path.read_text()), None
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable ({type(e).__name__}: {e})".splitlines()[0]


def _last_step(path: Path) -> int | None:
    """``step`` of the last complete row of a metrics log, reading only its last 64 KiB."""
    if not path.exists():
        return None
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):  # a partial line (JSONDecodeError is a ValueError)
            continue
    return None


def _log_text(path: Path, max_bytes: int = 65536) -> str:
    """The end of a log with each line reduced to what a terminal shows after its carriage returns."""
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - max_bytes))
        text = f.read().decode(errors="replace")
    lines = text.split("\n")[1 if size > max_bytes else 0:]  # the first line may be cut
    return "\n".join(([s for s in line.split("\r") if s.strip()] or [""])[-1] for line in lines)
