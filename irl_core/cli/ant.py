"""Ant-pinpad commands for ``python -m irl_core``: ``ant-expert``, ``ant-eval``, ``ant-data``, ``video`` and the
ant half of ``rollouts`` (called by :mod:`irl_core.cli.grid` as :func:`rollouts`).

Examples::

    python -m irl_core ant-expert --preset cpu --run-dir runs/ant_expert/main --export checkpoints/ant/expert
    python -m irl_core ant-eval --episodes 200 --out checkpoints/ant/reports/expert.json
    python -m irl_core ant-data --episodes 1000 --mean-action --out data/ant_dstar.npz
    python -m irl_core ant-pretrain --data runs/ant/data/D_seed0.npz --preset cpu --run-dir runs/ant_pretrain/cpu
    python -m irl_core video --env ant --policy expert --task 0-3-2 --seed 0 --out ant.mp4
    python -m irl_core rollouts --env ant --policy expert --task heldout --episodes 20 --seed 0 --out r.npz
"""
from __future__ import annotations

import argparse
import json

from irl_core.cli.common import user_errors, write_report
from irl_core.errors import UserError


DEFAULT_EXPERT = "checkpoints/ant/expert"
DEFAULT_BASE = "checkpoints/ant/base"
_GRID_DEFAULT = "checkpoints/grid5/base"  # the gridworld commands' default --checkpoint (cli/grid.py)


def _expert_path(args) -> str:
    ckpt = getattr(args, "checkpoint", None)
    return DEFAULT_EXPERT if ckpt in (None, "", _GRID_DEFAULT) else ckpt


def _check_policy(args) -> None:
    if getattr(args, "policy", "expert") != "expert":
        raise UserError(f"policy {args.policy!r} is not available for the ant; use --policy expert")


def _check_device(args) -> None:
    from irl_core.device import resolve_device
    resolve_device(getattr(args, "device", "cpu"))


def _require_data(path: str, how: str) -> None:
    """A one-line error naming the command that makes a missing dataset file."""
    from pathlib import Path
    if not Path(path).exists():
        raise UserError(f"--data {path}: no such dataset; make it with: python -m irl_core ant-data {how} --out {path}")


def _positive(name: str, value: int) -> None:
    if value is None or value < 1:
        raise UserError(f"--{name} must be a positive integer, got {value}")


# --------------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------------
def run_expert(args) -> int:
    import torch
    from irl_core.experts.ant_expert import make_config, train_expert
    from irl_core.runs import Run
    _check_device(args)
    with user_errors():
        cfg = make_config(args.preset, total_steps=args.steps, num_envs=args.num_envs, seed=args.seed,
                          threads=args.threads)
    torch.set_num_threads(cfg.threads)
    run = Run(args.run_dir) if args.run_dir else Run.create("ant_expert")
    print(f"run directory: {run.path}")
    train_expert(cfg, run, export=args.export, progress=not args.quiet)
    if args.export:
        print(f"exported {args.export}")
    return 0


def run_eval(args) -> int:
    import torch
    from irl_core.ant_data import evaluate_report
    from irl_core.checkpoints import atomic_write_json
    _check_device(args)
    _positive("episodes", args.episodes)
    torch.set_num_threads(1)
    if args.policy == "base":
        from irl_core.ant_base import evaluate_base_model
        from irl_core.ant_pretrain import load_ant_base
        path = DEFAULT_BASE if args.checkpoint == DEFAULT_EXPERT else args.checkpoint
        report = {"checkpoint": str(path), **evaluate_base_model(load_ant_base(path), args.episodes, args.seed,
                                                                 sample=not args.mean_action,
                                                                 heldout_episodes=args.heldout_episodes)}
    else:
        report = evaluate_report(args.checkpoint, args.episodes, args.seed, heldout_episodes=args.heldout_episodes)
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    return 0


def run_data(args) -> int:
    import torch
    from irl_core.ant_data import generate_dataset, save_dataset
    from irl_core.envs.tasks import task_set
    _check_device(args)
    _positive("episodes", args.episodes)
    torch.set_num_threads(1)
    tasks = task_set(args.tasks, "ant")
    data = generate_dataset(args.checkpoint, tasks, args.episodes, seed=args.seed, mean_action=args.mean_action,
                            keep_failures=args.keep_failures, progress=not args.quiet)
    save_dataset(args.out, data)
    n = len(data["length"])
    print(f"wrote {args.out}: {n} episodes, {int(data['length'].sum())} steps "
          f"({'D*: mean action' if args.mean_action else 'D: sampled actions'}; "
          f"kept {n} of {data['attempted']} attempted)")
    return 0


def run_data_merge(args) -> int:
    from pathlib import Path
    from irl_core.ant_data import merge_datasets, save_dataset
    for f in args.files:
        if not Path(f).is_file():
            raise UserError(f"{f}: no such dataset file")
    with user_errors():
        data = merge_datasets(args.files)
    save_dataset(args.out, data)
    print(f"wrote {args.out}: {len(data['length'])} episodes, {int(data['length'].sum())} steps "
          f"from {len(args.files)} files")
    return 0


def run_video(args) -> int:
    import torch
    from irl_core.ant_data import record_video
    if args.env != "ant":
        raise UserError("this video command renders the ant; the grid has its own frames in the app")
    _check_policy(args)
    _check_device(args)
    torch.set_num_threads(1)
    res = record_video(_expert_path(args), args.task, args.seed, args.out, camera=args.camera,
                       size=args.size, mean_action=args.mean_action)
    print(f"wrote {args.out}: {res['frames']} frames, task {res['task']}, {res['event']} after {res['length']} steps")
    return 0


def rollouts(args) -> int:
    """``rollouts --env ant``: export expert rollouts in docs/design.md's ant format."""
    import torch
    from irl_core.ant_data import export_rollouts
    from irl_core.envs.tasks import task_set
    _check_policy(args)
    _check_device(args)
    _positive("episodes", args.episodes)
    torch.set_num_threads(1)
    tasks = task_set(args.task, "ant")
    out = export_rollouts(_expert_path(args), tasks, args.episodes, args.seed, args.out,
                          mean_action=getattr(args, "greedy", False))
    print(f"wrote {args.out}: {args.episodes} episodes, success {out['success'].mean():.2f}")
    return 0


# --------------------------------------------------------------------------------------------------
# Parsers
# --------------------------------------------------------------------------------------------------
def run_ant_pretrain(args) -> int:
    """``ant-pretrain``: the ant's Hawk SSM base model on a dataset D (``irl_core.ant_pretrain``)."""
    import sys
    from irl_core.ant_pretrain import TrainingDiverged, ant_preset, export, train
    from irl_core.cli.common import set_threads
    from irl_core.runs import Run
    set_threads(args)
    _check_device(args)
    _require_data(args.data, "--episodes 20000")
    with user_errors():
        cfg = ant_preset(args.preset, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         snapshot_every=args.snapshot_every, precision=args.precision, obs_coef=args.obs_coef)
    run = Run(args.run_dir) if args.run_dir else Run.create("ant_pretrain")
    print(f"run directory: {run.path}")
    with user_errors(KeyError, TrainingDiverged):
        model = train(cfg, args.data, run, args.device, args.seed, progress=not args.quiet, stop_at=args.stop_at)
    if args.export:
        out = export(model, args.export, run, cfg, args.seed, "python -m irl_core " + " ".join(sys.argv[1:]))
        print(f"exported {out}")
    return 0


def run_ant_probes(args) -> int:
    """``ant-probes``: per-layer subgoal probes of the ant base model (``irl_core.ant_base.ant_probe_report``)."""
    from irl_core.ant_base import ant_probe_report
    from irl_core.ant_pretrain import load_ant_base
    from irl_core.checkpoints import atomic_write_json
    _positive("episodes", args.episodes)
    _require_data(args.data, "--mean-action --episodes 2000 --seed 1")
    with user_errors():
        report = ant_probe_report(load_ant_base(args.checkpoint), args.data, args.episodes, args.seed)
    report["checkpoint"] = str(args.checkpoint)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}: " + ", ".join(f"layer {l}: {a:.3f} (control {c:.3f})" for l, (a, c)
                                             in enumerate(zip(report["accuracy"], report["control"]))))
    print("where the colour sought lies, R² per layer: " + ", ".join(f"{r:.3f}" for r in report["location"]["r2"]))
    return 0


def run_ant_gt_controllers(args) -> int:
    """``ant-gt-controllers``: train the ground-truth controllers on D*, then held-out success controlled vs alone."""
    import sys
    from irl_core.ant_controllers import (ant_gt_preset, evaluate_controllers, heldout_action_nll,
                                         save_ant_gt_controllers, train_ant_gt_controllers)
    from irl_core.ant_pretrain import load_ant_base
    from irl_core.cli.common import set_threads
    from irl_core.runs import Run
    set_threads(args)
    _require_data(args.data, "--mean-action --episodes 2000 --seed 1")
    with user_errors():
        cfg = ant_gt_preset(args.preset, layer=args.layer, steps=args.steps, batch_size=args.batch_size,
                            eval_episodes=args.episodes)
    model = load_ant_base(args.base)
    run = Run(args.run_dir) if args.run_dir else Run.create("ant_gt_controllers")
    print(f"run directory: {run.path}")
    with user_errors():
        ctrl = train_ant_gt_controllers(model, cfg, args.data, run, args.seed, progress=not args.quiet,
                                        stop_at=args.stop_at)
        nll = heldout_action_nll(model, ctrl, args.data)
    step = (run.status() or {}).get("step")
    report = {"base": str(args.base), "command": "python -m irl_core " + " ".join(sys.argv[1:]), "config": cfg.to_dict(),
              "step": step, "layer": ctrl.layer, "heldout_action_nll": nll,
              **evaluate_controllers(model, ctrl, cfg.eval_episodes, args.seed)}
    write_report(run, report, args.report, args.export and (lambda: save_ant_gt_controllers(args.export, ctrl, report)))
    print(f"step {step}: held-out D* action NLL {nll['base_alone']:.3f} alone, {nll['controlled']:.3f} with the "
          f"controllers ({nll['episodes']} episodes)")
    print(f"held-out {'-'.join(map(str, _heldout()))}, {cfg.eval_episodes} episodes: success "
          f"{report['controlled']['success_rate']:.3f} with the controllers at layer {ctrl.layer}, "
          f"{report['base_alone']['success_rate']:.3f} for the base model alone")
    return 0


def _heldout():
    from irl_core.envs.tasks import ANT_HELDOUT_TASK
    return ANT_HELDOUT_TASK


def run_ant_inject(args) -> int:
    """``ant-inject``: a "go to colour g" controller switched on from step t0, against the base model alone."""
    from irl_core.ant_controllers import injection, load_ant_gt_controllers
    from irl_core.ant_pretrain import load_ant_base
    from irl_core.checkpoints import atomic_write_json
    _positive("episodes", args.episodes)
    if not 0 <= args.colour < 4:
        raise UserError(f"--colour must be 0..3, got {args.colour}")
    result = injection(load_ant_base(args.base), load_ant_gt_controllers(args.controllers), args.colour, args.t0,
                       args.episodes, args.seed)
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def run_ant_handover(args) -> int:
    """``ant-handover``: the expert walks the first t0 steps, then the base model (or the expert) walks on."""
    from irl_core.ant_base import handover
    from irl_core.ant_pretrain import load_ant_base
    from irl_core.checkpoints import atomic_write_json
    from irl_core.experts.ant_expert import AntExpert
    _positive("episodes", args.episodes)
    if args.t0 < 10:
        raise UserError(f"--t0 must be at least 10 (the motion before the handover is read over 10 steps), got {args.t0}")
    result = handover(load_ant_base(args.base), AntExpert.load(args.expert), args.t0, args.episodes, args.seed)
    result.update(base_checkpoint=str(args.base), expert_checkpoint=str(args.expert))
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu; the ant runs on the CPU)")


def register(subparsers) -> None:
    _register_expert_and_data(subparsers)
    _register_base_model(subparsers)


def _register_expert_and_data(subparsers) -> None:
    """ant-expert, ant-eval, ant-data, ant-data-merge, video."""
    p = subparsers.add_parser("ant-expert", help="train or resume the ant-pinpad locomotion expert with PPO")
    p.add_argument("--preset", default="cpu", help="tiny (seconds, tests) or cpu (the shipped expert; default)")
    p.add_argument("--run-dir", help="run directory (default runs/ant_expert/<id>); an existing one is resumed")
    p.add_argument("--steps", type=int, help="override the preset's total environment steps")
    p.add_argument("--num-envs", type=int, help="override the number of parallel environments")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--export", help="also save the final policy as this checkpoint (e.g. checkpoints/ant/expert)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(handler=run_expert)

    p = subparsers.add_parser("ant-eval", help="measure the success of the ant expert (or of the ant base model alone) "
                                               "on the pretraining and held-out tasks")
    p.add_argument("--policy", choices=("expert", "base"), default="expert",
                   help="expert (default) or base: the ant base model acting alone")
    p.add_argument("--checkpoint", default=DEFAULT_EXPERT,
                   help=f"the policy's checkpoint (default {DEFAULT_EXPERT}; {DEFAULT_BASE} with --policy base)")
    p.add_argument("--mean-action", action="store_true", help="base model: act with its mean (default: sample)")
    p.add_argument("--episodes", type=int, default=200, help="episodes on the pretraining tasks (default 200)")
    p.add_argument("--heldout-episodes", type=int, help="episodes on the held-out task (default: --episodes)")
    p.add_argument("--out", help="write the report JSON here (e.g. checkpoints/ant/reports/expert.json)")
    _common(p)
    p.set_defaults(handler=run_eval)

    p = subparsers.add_parser("ant-data", help="generate ant dataset D (sampled actions) or D* (--mean-action)")
    p.add_argument("--episodes", type=int, required=True, help="number of successful episodes to keep")
    p.add_argument("--tasks", default="pretrain", help="'pretrain', 'heldout' or a task string such as 0-3-2")
    p.add_argument("--mean-action", action="store_true", help="take the Gaussian's mean (D*) instead of sampling (D)")
    p.add_argument("--keep-failures", action="store_true", help="keep unsuccessful episodes too")
    p.add_argument("--checkpoint", default=DEFAULT_EXPERT, help=f"expert checkpoint (default {DEFAULT_EXPERT})")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(handler=run_data)

    p = subparsers.add_parser("ant-data-merge", help="concatenate ant datasets made with different seeds into one")
    p.add_argument("files", nargs="+", help="ant-data .npz files of one kind (D or D*)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.set_defaults(handler=run_data_merge)

    p = subparsers.add_parser("video", help="render an ant-pinpad episode as an H.264 mp4")
    p.add_argument("--env", default="ant", choices=("ant",), help="environment (ant)")
    p.add_argument("--policy", default="expert", help="policy (expert)")
    p.add_argument("--task", default="0-3-2", help="task string, e.g. 0-3-2 (default)")
    p.add_argument("--camera", default="topdown", choices=("topdown", "chase"), help="camera (default topdown)")
    p.add_argument("--size", type=int, default=480, help="frame width and height in pixels (default 480)")
    p.add_argument("--mean-action", action="store_true", help="take the expert's mean action")
    p.add_argument("--checkpoint", default=DEFAULT_EXPERT, help=f"expert checkpoint (default {DEFAULT_EXPERT})")
    p.add_argument("--out", required=True, help="output .mp4 file")
    _common(p)
    p.set_defaults(handler=run_video)


def _register_base_model(subparsers) -> None:
    """ant-pretrain, ant-probes, ant-gt-controllers, ant-inject, ant-handover."""
    p = subparsers.add_parser("ant-pretrain", help="pretrain the ant's Hawk SSM base model on a dataset D (resumable)")
    p.add_argument("--data", required=True, help="an ant-data .npz file (D, successful episodes)")
    p.add_argument("--preset", default="cpu", help="tiny, cpu or paper (Tables A5/A15) (default cpu)")
    p.add_argument("--run-dir", help="run directory (default runs/ant_pretrain/<id>); an existing one is resumed")
    p.add_argument("--steps", type=int, help="override the preset's training steps")
    p.add_argument("--batch-size", type=int, help="override the preset's episodes per step")
    p.add_argument("--lr", type=float, help="override the learning rate")
    p.add_argument("--obs-coef", type=float, help="override λ, the weight of the next-observation loss (paper: 10)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="autocast precision (default auto)")
    p.add_argument("--snapshot-every", type=int, help="keep the weights every N steps (checkpoints/step<N>)")
    p.add_argument("--stop-at", type=int, help="checkpoint and stop at this step (run again to resume)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--export", help="also save the final model as this checkpoint (e.g. checkpoints/ant/base)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(handler=run_ant_pretrain)

    p = subparsers.add_parser("ant-probes", help="per-layer linear probes of the subgoal in the ant base model")
    p.add_argument("--checkpoint", default=DEFAULT_BASE, help=f"ant base-model checkpoint (default {DEFAULT_BASE})")
    p.add_argument("--data", required=True, help="an ant-data .npz file (D* for the paper's probes)")
    p.add_argument("--episodes", type=int, default=500, help="episodes of the file to probe (default 500)")
    p.add_argument("--out", required=True, help="output JSON (e.g. checkpoints/ant/reports/base_probes.json)")
    _common(p)
    p.set_defaults(handler=run_ant_probes)

    p = subparsers.add_parser("ant-gt-controllers", help="ground-truth subgoal controllers on the ant base model "
                                                         "(Table A8) and their held-out success")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"ant base-model checkpoint (default {DEFAULT_BASE})")
    p.add_argument("--data", required=True, help="an ant-data D* .npz file (mean actions)")
    p.add_argument("--preset", default="cpu", help="tiny, cpu or paper (Table A8) (default cpu)")
    p.add_argument("--layer", type=int, help="controlled layer (default L/2)")
    p.add_argument("--steps", type=int, help="override the preset's training steps")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--episodes", type=int, help="held-out evaluation episodes (default: the preset's)")
    p.add_argument("--run-dir", help="run directory (default runs/ant_gt_controllers/<id>); an existing one is resumed")
    p.add_argument("--export", help="save the controllers as this checkpoint (e.g. checkpoints/ant/gt_controllers)")
    p.add_argument("--report", help="also write the report JSON here")
    p.add_argument("--stop-at", type=int, help="checkpoint and stop at this step, evaluate the controllers there "
                                               "(run again without it to resume)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(handler=run_ant_gt_controllers)

    p = subparsers.add_parser("ant-inject", help="inject a 'go to colour g' controller from a step (Fig. A4) and "
                                                 "measure how often g is reached first")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"ant base-model checkpoint (default {DEFAULT_BASE})")
    p.add_argument("--controllers", default="checkpoints/ant/gt_controllers", help="ant gt-controllers checkpoint")
    p.add_argument("--colour", type=int, default=0, help="the colour to steer to, 0..3 (default 0)")
    p.add_argument("--t0", type=int, default=30, help="the step the controller is switched on (default 30, as the paper)")
    p.add_argument("--episodes", type=int, default=200, help="episodes on the pretraining tasks (default 200)")
    p.add_argument("--out", help="write the result JSON here")
    _common(p)
    p.set_defaults(handler=run_ant_inject)

    p = subparsers.add_parser("ant-handover", help="the expert walks the first t0 steps, then the base model: does it "
                                                   "turn toward the expert's target or keep going?")
    p.add_argument("--base", default=DEFAULT_BASE, help=f"ant base-model checkpoint (default {DEFAULT_BASE})")
    p.add_argument("--expert", default="checkpoints/ant/expert", help="ant expert checkpoint")
    p.add_argument("--t0", type=int, default=40, help="the step the base model takes over (default 40)")
    p.add_argument("--episodes", type=int, default=200, help="episodes on the pretraining tasks (default 200)")
    p.add_argument("--out", help="write the result JSON here")
    _common(p)
    p.set_defaults(handler=run_ant_handover)
