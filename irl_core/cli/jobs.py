"""``python -m irl_core jobs ...``: run any stage in the background and follow it (see ``irl_core.jobs``).

    python -m irl_core jobs submit -- pretrain --preset cpu --seed 0     # prints the run directory
    python -m irl_core jobs list [--stage pretrain]
    python -m irl_core jobs status RUN_DIR
    python -m irl_core jobs tail RUN_DIR [-n 50]
    python -m irl_core jobs cancel RUN_DIR
    python -m irl_core jobs resume RUN_DIR
"""
from __future__ import annotations

import argparse
import time


def _submit(args) -> int:
    from irl_core.jobs import JobError, default_backend
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise JobError("no command to run; e.g. jobs submit -- pretrain --preset tiny")
    print(default_backend().submit(argv, run_dir=args.run_dir))
    return 0


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
    from irl_core.jobs import default_backend
    print(default_backend().cancel(args.run)["status"])
    return 0


def _resume(args) -> int:
    from irl_core.jobs import default_backend
    print(default_backend().resume(args.run))
    return 0


def register(sub) -> None:
    p = sub.add_parser("jobs", help="run stages in the background (they outlive the shell) and follow them",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    a = actions.add_parser("submit", help="start an irl_core command as a job; prints its run directory")
    a.add_argument("--run-dir", help="run directory (default runs/<command>/<id>)")
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
        a.set_defaults(handler=handler)

    a = actions.add_parser("tail", help="the end of a job's log")
    a.add_argument("run", metavar="RUN_DIR", help="the run directory")
    a.add_argument("-n", type=int, default=50, help="number of lines (default 50)")
    a.set_defaults(handler=_tail)
