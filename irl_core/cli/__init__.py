"""``python -m irl_core <command> ...``: one command per stage, each with ``--help``.

Grid commands live here; other modules add theirs through ``register(subparsers)`` (see
``_EXTENSIONS``). Handlers import their stage lazily so that ``--help`` is instant. User errors (a bad
task, a missing or mismatched checkpoint, an unknown device, a run directory another process owns, a
directory that cannot be written or a full disk) print one line and exit with status 2.

:func:`validate` checks what a command's arguments can say about themselves (counts that must be positive,
the preset's name, an ``.npz`` output's suffix, a ``--report`` that would overwrite the ``--export`` checkpoint)
before anything is created; ``main`` and ``jobs submit`` both call it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add subcommands with ``register(subparsers)``.
_EXTENSIONS: tuple[str, ...] = ("irl_core.cli.grid", "irl_core.cli.ant", "irl_core.cli.discovery", "irl_core.cli.steering",
                                "irl_core.cli.jobs", "irl_core.cli.internal_rl")


from irl_core.errors import UserError  # noqa: E402  (re-exported: ``from irl_core.cli import UserError``)


def _user_errors() -> tuple[type[BaseException], ...]:
    from irl_core.checkpoints import CheckpointError
    from irl_core.envs.tasks import TaskError
    from irl_core.device import DeviceError
    from irl_core.envs.worlds import WorldError
    return (UserError, TaskError, CheckpointError, DeviceError, WorldError, FileNotFoundError)


# Count options that must be positive wherever a command has them (0 or less never means anything there).
_POSITIVE = ("episodes", "sample_episodes", "heldout_episodes", "steps", "batch_size", "threads", "chunks",
             "snapshot_every", "num_envs", "jobs", "size", "n")
# Each command's presets (module:attribute), checked by name before a run directory exists.
_PRESETS = {"pretrain": "irl_core.config:PRETRAIN_PRESETS", "gt-controllers": "irl_core.controllers:GT_PRESETS",
            "layer-sweep": "irl_core.controllers:GT_PRESETS", "compile": "irl_core.rl.baselines.compile:COMPILE_PRESETS",
            "discover": "irl_core.discovery:DISCOVERY_PRESETS", "sweep": "irl_core.discovery:DISCOVERY_PRESETS",
            "internal-rl": "irl_core.rl.ppo:RL_PRESETS", "ant-expert": "irl_core.experts.ant_expert:PRESETS",
            "ant-pretrain": "irl_core.ant_pretrain:PRESETS", "ant-gt-controllers": "irl_core.ant_controllers:PRESETS"}
# Commands whose --out numpy writes with savez, which would silently append ".npz" to any other name.
_NPZ_OUT = ("data", "rollouts", "activations", "gt-rollouts", "switching", "steer")


def validate(args: argparse.Namespace) -> None:
    """Refuse, in one line (:class:`UserError`), arguments that can be judged without running anything."""
    for name in _POSITIVE:
        value = getattr(args, name, None)
        if isinstance(value, int) and value <= 0:
            flag = "-n" if name == "n" else "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be a positive number, got {value}")
    if args.command in _PRESETS and getattr(args, "preset", None) is not None:
        module, attr = _PRESETS[args.command].split(":")
        presets = getattr(importlib.import_module(module), attr)
        if args.preset not in presets:
            raise UserError(f"unknown preset {args.preset!r} for {args.command}; choose one of {sorted(presets)}")
    out = getattr(args, "out", None)
    if args.command in _NPZ_OUT and getattr(args, "env", "grid") == "grid" and out and not str(out).endswith(".npz"):
        raise UserError(f"--out {out}: must end in .npz (numpy would write {out}.npz)")
    report, export = getattr(args, "report", None), getattr(args, "export", None)
    if report and export and _is_checkpoint_file(report, export):
        raise UserError(f"--report {report} is a file of the --export checkpoint {export}, which the report would "
                        f"overwrite; write the report elsewhere (e.g. a reports/ folder)")


def _is_checkpoint_file(path: str, checkpoint: str) -> bool:
    """Whether ``path`` is one of ``checkpoint``'s two files (its weights or its description)."""
    from pathlib import Path
    from irl_core.checkpoints import checkpoint_files
    return Path(path).resolve() in {f.resolve() for f in checkpoint_files(checkpoint)}


def _os_error(e: OSError) -> str:
    """One line for an OSError: the file it concerns and what went wrong (no errno, no traceback)."""
    what = e.strerror or str(e)
    return f"{e.filename}: {what}" if e.filename is not None else what


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m irl_core", description="Every stage of the project, one command each; COMMAND --help for its options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name in _EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        validate(args)
        if callable(handler):
            return int(handler(args) or 0)
        module_name, func = handler.split(":")
        return int(getattr(importlib.import_module(module_name), func)(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only directory, a full disk: say which file, without a traceback
        print(f"error: {_os_error(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
