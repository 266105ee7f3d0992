"""Options several commands share (``--seed``, ``--device``, ``--world``) and what they do (``--threads``)."""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Iterator

from irl_core.errors import UserError


def add_common(p: argparse.ArgumentParser, seed: bool = True, device: bool = True) -> None:
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    if device:
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def add_world(p: argparse.ArgumentParser, note: str = "") -> None:
    from irl_core.envs.worlds import WORLDS
    p.add_argument("--world", choices=tuple(WORLDS), default="grid7",
                   help="grid7 (the paper's 7×7 world, default) or grid5 (the laptop 5×5 world)"
                        + (f"; {note}" if note else ""))


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (torch CPU threads) when the command has it and it was given."""
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)


def add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("local", "ray"),
                   help="job backend: local processes or Ray tasks (default $IRL_JOBS_BACKEND, else local; "
                        "RAY_ADDRESS names a Ray cluster, else a local Ray starts)")


@contextmanager
def user_errors(*types: type[BaseException]) -> Iterator[None]:
    """Turn ``ValueError`` (and ``types``) raised inside into a one-line :class:`UserError` (no traceback)."""
    try:
        yield
    except (ValueError, *types) as e:
        raise UserError(str(e)) from None


def write_report(run, report: dict, report_path: str | None = None, export=None) -> None:
    """A stage's report: ``<run>/report.json``, a copy at ``report_path`` if given, and ``export()`` (saving the
    trained checkpoint, which names the report in its metadata) when given."""
    from irl_core.checkpoints import atomic_write_json
    atomic_write_json(run.path / "report.json", report)
    if export:
        out = export()
        print(f"exported {out}")
    if report_path:
        atomic_write_json(report_path, report)
