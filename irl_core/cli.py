"""``python -m irl_core <command> ...``: one command per stage, each with ``--help``.

Grid commands live here; other modules add theirs through ``register(subparsers)`` (see
``_EXTENSIONS``). Handlers import their stage lazily so that ``--help`` is instant. User errors (a bad
task, a missing or mismatched checkpoint, an unknown device, a run directory another process owns, a
directory that cannot be written or a full disk) print one line and exit with status 2.

:func:`validate` checks what a command's arguments can say about themselves (counts that must be positive,
the preset's name, an ``.npz`` output's suffix) before anything is created; ``main`` and ``jobs submit``
both call it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add subcommands with ``register(subparsers)``.
_EXTENSIONS: tuple[str, ...] = ("irl_core.ant_cli", "irl_core.discovery_cli", "irl_core.steering_cli", "irl_core.jobs_cli", "irl_core.internal_rl_cli")


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


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
            "layer-sweep": "irl_core.controllers:GT_PRESETS", "compile": "irl_core.baselines.compile:COMPILE_PRESETS",
            "discover": "irl_core.discovery:DISCOVERY_PRESETS", "sweep": "irl_core.discovery:DISCOVERY_PRESETS",
            "internal-rl": "irl_core.internal_rl:RL_PRESETS", "ant-expert": "irl_core.experts.ant_expert:PRESETS"}
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


def _os_error(e: OSError) -> str:
    """One line for an OSError: the file it concerns and what went wrong (no errno, no traceback)."""
    what = e.strerror or str(e)
    return f"{e.filename}: {what}" if e.filename is not None else what


def _add_common(p: argparse.ArgumentParser, seed: bool = True, device: bool = True) -> None:
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    if device:
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def _add_world(p: argparse.ArgumentParser, note: str = "") -> None:
    from irl_core.envs.worlds import WORLDS
    p.add_argument("--world", choices=tuple(WORLDS), default="grid7",
                   help="grid7 (the paper's 7×7 world, default) or grid5 (the laptop 5×5 world)"
                        + (f"; {note}" if note else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m irl_core", description="Every stage of the project, one command each; COMMAND --help for its options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="generate a grid dataset D (ε-noisy expert) or D* (ε=0) with subgoal labels")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes")
    p.add_argument("--tasks", default="pretrain", help="'pretrain', 'heldout' or a task string such as 0-1-4-5-0-1")
    p.add_argument("--epsilon", type=float, default=0.0, help="expert noise ε (0 gives D*; default 0)")
    _add_world(p)
    p.add_argument("--out", required=True, help="output .npz file")
    _add_common(p)
    p.set_defaults(handler="irl_core.data:cli_generate")

    p = sub.add_parser("pretrain", help="pretrain the grid base model (resumable)")
    p.add_argument("--preset", default="cpu", help="tiny, cpu or paper (default cpu)")
    p.add_argument("--run-dir", help="run directory (default runs/pretrain/<id>); an existing one is resumed")
    p.add_argument("--steps", type=int, help="override the preset's number of training steps")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size (episodes per step)")
    p.add_argument("--encoder", choices=("linear", "agent_centred"), help="override the observation encoder")
    p.add_argument("--lr", type=float, help="override the learning rate")
    p.add_argument("--min-lr", type=float, help="override the end of the cosine decay")
    p.add_argument("--obs-coef", type=float, help="override λ, the weight of the next-observation loss")
    p.add_argument("--schedule", choices=("constant", "cosine"), help="override the learning-rate schedule")
    p.add_argument("--warmup-steps", type=int, help="override the warm-up steps of the cosine schedule")
    p.add_argument("--chunks", type=int, help="length-sorted micro-batches per step (same gradient, less padding)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="autocast precision (default auto: bf16 on CUDA and on CPUs with native bf16, else fp32)")
    _add_world(p)
    p.add_argument("--init", help="start from this base-model checkpoint's weights (e.g. checkpoints/grid5/base)")
    p.add_argument("--snapshot-every", type=int, help="keep the weights every N steps (checkpoints/step<N> in the run)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--stop-at", type=int, help="checkpoint and stop at this step (run again to resume)")
    p.add_argument("--export", help="also save the final model as this checkpoint (e.g. checkpoints/grid5/base)")
    _add_common(p)
    p.set_defaults(handler="irl_core.pretrain:cli_pretrain")

    p = sub.add_parser("probes", help="per-layer linear probes (and diagnostics) of a base-model checkpoint")
    p.add_argument("--checkpoint", default="checkpoints/grid5/base", help="base-model checkpoint (default checkpoints/grid5/base)")
    p.add_argument("--episodes", type=int, default=2000, help="held-out D* episodes to probe (default 2000)")
    p.add_argument("--sample-episodes", type=int, default=1000, help="sampled rollouts per diagnostic (default 1000)")
    p.add_argument("--out", help="output JSON (default <checkpoint dir>/reports/probes.json)")
    _add_common(p)
    p.set_defaults(handler="irl_core.probing:cli_probes")

    p = sub.add_parser("probe-curve", help="probes and diagnostics of every snapshot of a pretraining run (Fig. A1)")
    p.add_argument("checkpoints", nargs="*", help="base-model checkpoints to include (e.g. the one a run started from)")
    p.add_argument("--run-dir", help="a pretraining run whose snapshots (checkpoints/step<N>) to probe")
    p.add_argument("--episodes", type=int, default=1000, help="held-out D* episodes to probe (default 1000)")
    p.add_argument("--sample-episodes", type=int, default=500, help="sampled rollouts per diagnostic (default 500)")
    p.add_argument("--out", default="checkpoints/grid5/reports/probes_curve.json",
                   help="output JSON; points it already holds (same settings) are kept, not probed again")
    _add_common(p)
    p.set_defaults(handler="irl_core.probing:cli_probe_curve")

    p = sub.add_parser("rollouts", help="export rollouts of a policy as .npz (grid or ant)")
    p.add_argument("--env", choices=("grid", "ant"), default="grid")
    p.add_argument("--policy", default="expert", help="grid: expert, base, gt-controllers or internal-rl; ant: expert")
    p.add_argument("--task", default="pretrain", help="'pretrain', 'heldout' or a task string")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--checkpoint", default="checkpoints/grid5/base", help="base-model checkpoint (policies 'base', 'gt-controllers')")
    p.add_argument("--controllers", default="checkpoints/grid5/gt_controllers", help="ground-truth controllers (policy 'gt-controllers')")
    p.add_argument("--policy-checkpoint", default="checkpoints/grid5/internal_rl_policy",
                   help="trained internal-RL policy (policy 'internal-rl')")
    p.add_argument("--greedy", action="store_true",
                   help="take the most likely action (internal-rl: the policy's mean code) instead of sampling")
    p.add_argument("--no-cut", action="store_true", help="do not end an episode at a wrong colour (base policy diagnostics)")
    _add_world(p, "policy 'expert'; the others take the world of their checkpoint")
    p.add_argument("--out", required=True, help="output .npz file")
    _add_common(p)
    p.set_defaults(handler="irl_core.rollouts:cli_rollouts")

    p = sub.add_parser("activations", help="export the residual stream of held-out D* episodes as .npz")
    p.add_argument("--checkpoint", default="checkpoints/grid5/base")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--out", required=True, help="output .npz file")
    _add_common(p)
    p.set_defaults(handler="irl_core.probing:cli_activations")

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
