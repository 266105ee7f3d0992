"""Grid commands: ``data``, ``pretrain``, ``probes``, ``probe-curve``, ``rollouts`` and ``activations``.

Each handler imports its stage inside the function, so that ``--help`` stays instant."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from irl_core.cli.common import add_common, add_world, set_threads, user_errors
from irl_core.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("data", help="generate a grid dataset D (ε-noisy expert) or D* (ε=0) with subgoal labels")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes")
    p.add_argument("--tasks", default="pretrain", help="'pretrain', 'heldout' or a task string such as 0-1-4-5-0-1")
    p.add_argument("--epsilon", type=float, default=0.0, help="expert noise ε (0 gives D*; default 0)")
    add_world(p)
    p.add_argument("--out", required=True, help="output .npz file")
    add_common(p)
    p.set_defaults(handler=run_data)

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
    add_world(p)
    p.add_argument("--init", help="start from this base-model checkpoint's weights (e.g. checkpoints/grid5/base)")
    p.add_argument("--snapshot-every", type=int, help="keep the weights every N steps (checkpoints/step<N> in the run)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--stop-at", type=int, help="checkpoint and stop at this step (run again to resume)")
    p.add_argument("--export", help="also save the final model as this checkpoint (e.g. checkpoints/grid5/base)")
    add_common(p)
    p.set_defaults(handler=run_pretrain)

    p = sub.add_parser("probes", help="per-layer linear probes (and diagnostics) of a base-model checkpoint")
    p.add_argument("--checkpoint", default="checkpoints/grid5/base", help="base-model checkpoint (default checkpoints/grid5/base)")
    p.add_argument("--episodes", type=int, default=2000, help="held-out D* episodes to probe (default 2000)")
    p.add_argument("--sample-episodes", type=int, default=1000, help="sampled rollouts per diagnostic (default 1000)")
    p.add_argument("--out", help="output JSON (default <checkpoint dir>/reports/probes.json)")
    add_common(p)
    p.set_defaults(handler=run_probes)

    p = sub.add_parser("probe-curve", help="probes and diagnostics of every snapshot of a pretraining run (Fig. A1)")
    p.add_argument("checkpoints", nargs="*", help="base-model checkpoints to include (e.g. the one a run started from)")
    p.add_argument("--run-dir", help="a pretraining run whose snapshots (checkpoints/step<N>) to probe")
    p.add_argument("--episodes", type=int, default=1000, help="held-out D* episodes to probe (default 1000)")
    p.add_argument("--sample-episodes", type=int, default=500, help="sampled rollouts per diagnostic (default 500)")
    p.add_argument("--out", default="checkpoints/grid5/reports/probes_curve.json",
                   help="output JSON; points it already holds (same settings) are kept, not probed again")
    add_common(p)
    p.set_defaults(handler=run_probe_curve)

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
    add_world(p, "policy 'expert'; the others take the world of their checkpoint")
    p.add_argument("--out", required=True, help="output .npz file")
    add_common(p)
    p.set_defaults(handler=run_rollouts)

    p = sub.add_parser("activations", help="export the residual stream of held-out D* episodes as .npz")
    p.add_argument("--checkpoint", default="checkpoints/grid5/base")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--out", required=True, help="output .npz file")
    add_common(p)
    p.set_defaults(handler=run_activations)


# --- handlers -----------------------------------------------------------------------------------------
def run_data(args) -> int:
    from irl_core.data import generate_dataset, save_dataset
    from irl_core.envs.tasks import format_task, task_set
    from irl_core.envs.worlds import get_world
    from irl_core.device import resolve_device
    dev = resolve_device(args.device)
    world = get_world(args.world)
    task_set(args.tasks, world)  # validate before working
    with user_errors():
        data = generate_dataset(args.episodes, args.tasks, args.epsilon, args.seed, dev, world=world)
    save_dataset(args.out, data, tasks=args.tasks, epsilon=args.epsilon, seed=args.seed, world=world.name)
    n_tasks = len({format_task(t[t >= 0]) for t in data["task"]})
    print(f"wrote {args.out}: {len(data['length'])} episodes over {n_tasks} task(s), mean length "
          f"{data['length'].mean():.1f}, success {data['success'].mean():.3f}")
    return 0


def run_pretrain(args) -> int:
    """Pretrain, on one process or on each of torchrun's (``irl_core.distributed``: rank 0 writes the run)."""
    from irl_core.config import PRETRAIN_PRESETS, preset
    from irl_core.distributed import init_data_parallel
    from irl_core.envs.worlds import get_world
    from irl_core.pretrain import export, train
    from irl_core.runs import ReadOnlyRun, Run
    set_threads(args)
    with user_errors():
        cfg = preset(PRETRAIN_PRESETS, args.preset, steps=args.steps, batch_size=args.batch_size,
                     encoder=args.encoder, lr=args.lr, min_lr=args.min_lr, schedule=args.schedule,
                     warmup_steps=args.warmup_steps, chunks=args.chunks, init_from=args.init,
                     snapshot_every=args.snapshot_every, obs_coef=args.obs_coef, world=args.world,
                     precision=args.precision)
        get_world(cfg.world)
    dp, device = init_data_parallel(args.device)
    try:
        with user_errors():
            dp.share(cfg.batch_size)
        path = dp.broadcast(str((Run(args.run_dir) if args.run_dir else Run.create("pretrain")).path) if dp.main else None)
        run = Run(path) if dp.main else ReadOnlyRun(path)
        if dp.main:
            print(f"run directory: {run.path}" + (f" ({dp.world} data-parallel processes)" if dp.world > 1 else ""))
        model = train(cfg, run, device, args.seed, progress=dp.main, stop_at=args.stop_at, dp=dp)
        if args.export and dp.main:
            out = export(model, args.export, run, cfg, args.seed, "python -m irl_core " + " ".join(sys.argv[1:]))
            print(f"exported {out}")
    except BaseException:
        dp.close(together=False)
        raise
    dp.close()
    return 0


def run_probes(args) -> int:
    from irl_core.checkpoints import atomic_write_json
    from irl_core.probing import probe_report
    from irl_core.pretrain import load_base_model
    model = load_base_model(args.checkpoint, args.device)
    report = probe_report(model, args.episodes, args.seed, args.device, args.sample_episodes)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "reports" / "probes.json"
    report["checkpoint"] = str(args.checkpoint)
    atomic_write_json(out, report)
    sp = report["subgoal_probe"]
    print("layer  subgoal  control  last-colour  control")
    for l in report["layers"]:
        print(f"{l:5d}  {sp['accuracy'][l]:.3f}    {sp['control'][l]:.3f}    "
              f"{report['last_colour_probe']['accuracy'][l]:.3f}        {report['last_colour_probe']['control'][l]:.3f}")
    print(json.dumps({k: report[k] for k in ("action_accuracy", "history_use", "history_use_bayes", "sampled")}, indent=1))
    print(f"wrote {out}")
    return 0


def run_probe_curve(args) -> int:
    from irl_core.checkpoints import atomic_write_json
    from irl_core.probing import probe_curve
    paths = [Path(p) for p in args.checkpoints]
    if args.run_dir:
        snaps = sorted((Path(args.run_dir) / "checkpoints").glob("step*.json"), key=lambda p: int(p.stem[4:]))
        if not snaps:
            raise UserError(f"{args.run_dir}: no snapshots (checkpoints/step<N>); train with --snapshot-every N")
        paths += [p.with_suffix("") for p in snaps]
    if not paths:
        raise UserError("give --run-dir and/or checkpoints")
    previous = None
    if Path(args.out).exists():
        try:
            previous = json.loads(Path(args.out).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{args.out}: exists but is not valid JSON; remove it or choose another --out") from None
    out = probe_curve(paths, args.episodes, args.seed, args.device, args.sample_episodes, previous=previous)
    out["command"] = "python -m irl_core " + " ".join(sys.argv[1:])
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}: {len(out['points'])} checkpoints")
    return 0


def run_activations(args) -> int:
    import numpy as np
    from irl_core.data import heldout_episodes
    from irl_core.device import resolve_device
    from irl_core.probing import residual_stream
    from irl_core.pretrain import load_base_model
    model = load_base_model(args.checkpoint, args.device)
    eps = {k: v.cpu() for k, v in heldout_episodes(args.episodes, args.seed, model.world, resolve_device(args.device)).items()}
    resid, _ = residual_stream(model, eps)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, resid=resid.numpy().astype(np.float16), subgoal=eps["subgoal"].numpy().astype(np.int8),
                        length=eps["length"].numpy().astype(np.int64))
    print(f"wrote {args.out}: resid {tuple(resid.shape)}")
    return 0


def run_rollouts(args) -> int:
    from irl_core.data import export_npz
    from irl_core.envs.tasks import format_task, task_set
    from irl_core.envs.worlds import get_world
    from irl_core.rollouts import rollout, sequence_statistics, visited_colours
    if args.env == "ant":
        from irl_core.cli import ant
        return ant.rollouts(args)
    if args.policy not in ("expert", "base", "gt-controllers", "internal-rl"):
        raise UserError(f"unknown grid policy {args.policy!r}; expected 'expert', 'base', 'gt-controllers' or 'internal-rl'")
    if args.episodes <= 0:
        raise UserError(f"--episodes must be positive, got {args.episodes}")
    model = None
    world = get_world(args.world)
    if args.policy in ("base", "gt-controllers"):
        from irl_core.pretrain import load_base_model
        model = load_base_model(args.checkpoint, args.device)
        world = model.world
    if args.policy == "gt-controllers":
        from irl_core.controllers import gt_controller_rollouts, load_gt_controllers
        ctrl, _ = load_gt_controllers(args.controllers, args.device, base=model)
        eps = gt_controller_rollouts(model, ctrl, args.task, args.episodes, args.seed, args.greedy)
    elif args.policy == "internal-rl":
        from irl_core.rl.methods import policy_rollouts
        eps, info = policy_rollouts(args.policy_checkpoint, args.episodes, args.seed, args.device, args.greedy, args.task)
        world = get_world(info["world"])
    else:
        eps = rollout(args.policy, args.task, args.episodes, args.seed, args.device, model, args.greedy,
                      end_on_wrong=not args.no_cut, world=world)
    export_npz(args.out, eps)
    stats = sequence_statistics(visited_colours(eps), world)
    tasks = ", ".join(format_task(t) for t in task_set(args.task, world)[:3])
    print(f"wrote {args.out}: {args.episodes} episodes of {args.policy} on {tasks}{'…' if args.task == 'pretrain' else ''}; "
          f"success {eps['success'].float().mean():.4f}, mean length {eps['length'].float().mean():.1f}, "
          f"first colours spell a pretraining task in {stats['follows_pretraining_task']:.3f}")
    return 0
