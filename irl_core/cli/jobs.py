"""``python -m irl_core jobs ...``: run any stage in the background and follow it (see ``irl_core.jobs``).

    python -m irl_core jobs submit -- pretrain --preset cpu --seed 0     # prints the run directory
    python -m irl_core jobs list [--stage pretrain]
    python -m irl_core jobs status RUN_DIR
    python -m irl_core jobs tail RUN_DIR [-n 50]
    python -m irl_core jobs cancel RUN_DIR
    python -m irl_core jobs resume RUN_DIR

``--backend ray`` (or ``IRL_JOBS_BACKEND=ray``) runs jobs as Ray tasks; as Ray ends a driver's tasks when
the driver exits, ``jobs submit --backend ray`` and ``jobs resume --backend ray`` wait for the job (Ctrl-C
cancels it; ``resume`` continues it).

    python -m irl_core seeds --seeds 0-9 [--jobs 2] [--backend ray] -- internal-rl --method internal
"""
from __future__ import annotations

import argparse
import time

from irl_core.cli.common import add_backend, user_errors


def _command(argv: list[str], example: str) -> list[str]:
    from irl_core.jobs import JobError
    argv = argv[1:] if argv[:1] == ["--"] else argv
    if not argv:
        raise JobError(f"no command to run; e.g. {example}")
    return argv


def _follow(backend, run_dir) -> int:
    """Wait for a Ray job (its driver is this process); Ctrl-C cancels it."""
    print("following the job (Ray ends it when this process exits); Ctrl-C cancels it", flush=True)
    try:
        st = backend.wait(run_dir)
    except KeyboardInterrupt:
        st = backend.cancel(run_dir)
    print(f"{st['status']}" + (f": {st['error']}" if st.get("error") else ""))
    return 0 if st["status"] == "done" else 1


def _submit(args) -> int:
    from irl_core.jobs import get_backend
    argv = _command(args.argv, "jobs submit -- pretrain --preset tiny")
    backend = get_backend(args.backend)
    run_dir = backend.submit(argv, run_dir=args.run_dir)
    print(run_dir, flush=True)
    return _follow(backend, run_dir) if getattr(backend, "queues", False) else 0


def _age(t: float | None) -> str:
    if not t:
        return "-"
    s = max(0, time.time() - t)
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.0f}h ago"


def _list(args) -> int:
    from irl_core.jobs import list_runs
    rows = list_runs(args.root, args.stage)
    if not rows:
        print("no runs")
        return 0
    print(f"{'STATUS':<10} {'STEP':>7} {'UPDATED':>9}  {'RUN DIR':<50} COMMAND / ERROR")
    for r in rows:
        note = r.get("error") or r.get("reason") or r.get("command", "")
        step = "-" if r.get("last_step") is None else r["last_step"]
        print(f"{r['status']:<10} {step:>7} {_age(r.get('updated')):>9}  {r['run_dir']:<50} {note}")
    return 0


def _status(args) -> int:
    from irl_core.jobs import run_status
    st = run_status(args.run)
    tail = st.pop("error_tail", None)
    for key, value in st.items():
        print(f"{key}: {value}")
    if tail:
        print("--- end of the log at the failure ---\n" + tail)
    return 0


def _tail(args) -> int:
    from irl_core.jobs import tail_log
    print(tail_log(args.run, args.n))
    return 0


def _cancel(args) -> int:
    from irl_core.jobs import get_backend
    print(get_backend(args.backend).cancel(args.run)["status"])
    return 0


def _resume(args) -> int:
    from irl_core.jobs import get_backend
    backend = get_backend(args.backend)
    run_dir = backend.resume(args.run)
    print(run_dir, flush=True)
    return _follow(backend, run_dir) if getattr(backend, "queues", False) else 0


def _seeds(args) -> int:
    from irl_core.runs import Run
    from irl_core.sweeps import run_seeds
    argv = _command(args.argv, "seeds --seeds 0,1,2 -- internal-rl --method internal")
    with user_errors():
        seeds = _seed_list(args.seeds)
    root = args.out_dir or Run.create(f"seeds-{argv[0]}").path
    with user_errors():
        rows = run_seeds(argv, seeds, root, args.jobs, args.backend, progress=True)
    bad = [r for r in rows if r["status"] != "done"]
    print(f"{root}: {len(rows) - len(bad)} of {len(rows)} runs done" + (
        "; " + ", ".join(f"seed {r['seed']} {r['status']}" for r in bad) if bad else ""))
    return 1 if bad else 0


def _seed_list(text: str) -> list[int]:
    """``0,1,2`` or ``0-9`` (inclusive) or a mix: ``0-4,7``."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lo, _, hi = part.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            raise ValueError(f"--seeds: {part!r} is not a seed or a range such as 0-9") from None
    if not seeds:
        raise ValueError("--seeds: no seeds given")
    return list(dict.fromkeys(seeds))


def register(sub) -> None:
    p = sub.add_parser("jobs", help="run stages in the background (they outlive the shell) and follow them",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    a = actions.add_parser("submit", help="start an irl_core command as a job; prints its run directory")
    a.add_argument("--run-dir", help="run directory (default runs/<command>/<id>)")
    add_backend(a)
    a.add_argument("argv", nargs=argparse.REMAINDER, help="the irl_core command, after --")
    a.set_defaults(handler=_submit)

    a = actions.add_parser("list", help="every run, newest first (stale running runs are marked failed)")
    a.add_argument("--stage", help="only runs of this stage (runs/<stage>/)")
    a.add_argument("--root", help="runs directory (default $IRL_RUNS_DIR or runs/)")
    a.set_defaults(handler=_list)

    for name, handler, text in (("status", _status, "the status of one run"),
                                ("cancel", _cancel, "stop a running job (its last checkpoint is kept)"),
                                ("resume", _resume, "rerun a stopped job's command; it continues from its checkpoint")):
        a = actions.add_parser(name, help=text)
        a.add_argument("run", metavar="RUN_DIR", help="the run directory")
        if name != "status":
            add_backend(a)
        a.set_defaults(handler=handler)

    a = actions.add_parser("tail", help="the end of a job's log")
    a.add_argument("run", metavar="RUN_DIR", help="the run directory")
    a.add_argument("-n", type=int, default=50, help="number of lines (default 50)")
    a.set_defaults(handler=_tail)

    p = sub.add_parser("seeds", help="run one command once per seed, one job each (local processes or Ray; resumable)",
                       description="Run an irl_core command once per seed as jobs, in OUT_DIR/seed<s> with --seed s. "
                                   "Rerunning with the same --out-dir skips finished seeds and resumes the others.")
    p.add_argument("--seeds", default="0,1,2", help="seeds: 0,1,2 or 0-9 (default 0,1,2)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once (default 1; with --backend ray: the CPUs of the local Ray it starts)")
    p.add_argument("--out-dir", help="directory of the runs (default runs/seeds-<command>/<id>)")
    add_backend(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, help="the irl_core command, after -- (without --seed and --run-dir)")
    p.set_defaults(handler=_seeds)
