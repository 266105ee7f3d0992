"""CLI commands of the controllers and the metacontroller: ``gt-controllers``, ``layer-sweep``,
``gt-rollouts``, ``discover``, ``sweep`` and ``switching`` (registered through ``irl_core.cli._EXTENSIONS``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from irl_core.cli.common import add_backend, set_threads, user_errors, write_report
from irl_core.errors import UserError


def _common(p: argparse.ArgumentParser, base: bool = True) -> None:
    if base:
        p.add_argument("--base", default="checkpoints/grid5/base", help="base-model checkpoint (default checkpoints/grid5/base)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# the metacontroller's optimisation knobs shared by ``discover`` and ``sweep`` (DiscoveryConfig fields)
KNOBS = ("steps", "batch_size", "lr", "gumbel", "gumbel_temperature", "switch_bias", "decoder_init_std", "alpha_warmup",
         "emb_readout", "dstar_ties")


def _add_knobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, help="override the preset's training steps")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the learning rate")
    p.add_argument("--gumbel", action="store_true", help="Gumbel-Sigmoid relaxation of β in training "
                                                         "(the paper's grid rate–distortion)")
    p.add_argument("--gumbel-temperature", type=float, help="temperature of the Gumbel-Sigmoid (default 1)")
    p.add_argument("--switch-bias", type=float, help="initial β-head bias (default 0: β ≈ 0.5 at the start)")
    p.add_argument("--decoder-init-std", type=float, help="init std of the z-dependent decoder weights (default 0)")
    p.add_argument("--emb-readout", choices=("pooled", "per_step"),
                   help="sequence embedding read out pooled (one s per episode, default) or per step (s_t)")
    p.add_argument("--dstar-ties", choices=("random", "first"),
                   help="the D* expert's tie-breaking among optimal moves: random (the paper's, default) or first "
                        "(deterministic: up, right, down, left)")
    p.add_argument("--alpha-warmup", type=int, help="steps over which α ramps linearly from 0 to --alpha (default 0)")


def _knob_values(args) -> dict:
    """The knobs given on the command line (None = the preset's)."""
    out = {k: getattr(args, k) for k in KNOBS}
    out["gumbel"] = args.gumbel or None
    return out


# --- handlers -----------------------------------------------------------------------------------------
def _control_reading(args) -> int:
    import json
    from irl_core.checkpoints import atomic_write_json
    from irl_core.control_reading import control_reading
    from irl_core.controllers import load_gt_controllers
    from irl_core.pretrain import load_base_model
    if args.episodes < 4:
        raise UserError(f"--episodes must be at least 4 (a quarter are held out for testing), got {args.episodes}")
    model = load_base_model(args.base, args.device)
    ctrls = [load_gt_controllers(c, args.device, base=model)[0] for c in args.controllers]
    with user_errors():
        out = control_reading(model, ctrls, args.read_layer, args.episodes, args.seed)
    out.update(base=str(args.base), controllers=list(args.controllers),
               command="python -m irl_core " + " ".join(sys.argv[1:]))
    atomic_write_json(args.out, out)
    print(json.dumps({"clean": out["clean"], "rows": out["rows"]}, indent=1))
    print(f"wrote {args.out}")
    return 0


def _discover(args) -> int:
    from irl_core.controllers import load_base_for_layer
    from irl_core.discovery import discovery_preset, train
    from irl_core.runs import Run
    set_threads(args)
    with user_errors():
        cfg = discovery_preset(args.preset, alpha=args.alpha, variant=args.variant, layer=args.layer,
                               **_knob_values(args))
    base = load_base_for_layer(args.base, args.device, cfg.layer)
    run = Run(args.run_dir) if args.run_dir else Run.create("discover")
    print(f"run directory: {run.path}")
    with user_errors():
        result = train(base, cfg, run, args.seed, progress=not args.quiet, base_checkpoint=str(args.base))
    if args.export:
        import shutil
        src = run.checkpoint_dir / "metacontroller"
        Path(args.export).parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(src.with_suffix(suffix), Path(args.export).with_suffix(suffix))
        print(f"exported {args.export}")
    print(f"α={cfg.alpha} {cfg.variant}: distortion (action NLL/step) {result['distortion']:.4f}, rate (KL/step) "
          f"{result['rate']:.4f}, switches/episode {result['switches']:.2f} (true changes {result['true_changes']:.2f}), "
          f"F1 {result['f1']:.3f}, quasi-binary {result['binary_fraction']:.3f}")
    return 0


def _sweep(args) -> int:
    from irl_core.runs import Run
    from irl_core.sweeps import run_sweep
    if args.collect and not (args.out_dir and Path(args.out_dir, "points").is_dir()):
        raise UserError(f"--collect needs --out-dir naming an existing sweep directory (got {args.out_dir!r})")
    if args.merge_table and not args.table:
        raise UserError("--merge-table needs --table naming the table to merge into")
    root = Path(args.out_dir) if args.out_dir else Run.create("sweep").path
    with user_errors():
        alphas, seeds = _floats(args.alphas), _ints(args.seeds)
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        out = run_sweep(args.base, root, args.preset, alphas, seeds, variants, args.jobs, args.device,
                        _knob_values(args), args.table, collect=args.collect, backend=args.backend,
                        merge=args.merge_table)
    print(f"wrote {root / 'results.json'}{' and ' + args.table if args.table else ''}: {len(out['rows'])} points "
          f"({out['ran']} run now, {out['skipped']} skipped as done, {len(out['failed'])} failed)")
    for r in out["rows"]:
        print(f"  {r['variant']:9s} α={r['alpha']:<5g} seed {r['seed']}: rate {r['rate']:.3f} distortion "
              f"{r['distortion']:.3f} switches {r['switches']:.2f} F1 {r['f1']:.3f} binary {r['binary_fraction']:.3f}")
    return 1 if out["failed"] else 0


def _switching(args) -> int:
    from irl_core.discovery import export_switching
    with user_errors():
        m = export_switching(args.checkpoint, args.out, args.episodes, args.seed, args.device, args.base,
                             args.dstar_ties)
    print(f"wrote {args.out}: {args.episodes} held-out D* episodes ({args.dstar_ties} tie-break); "
          f"switches/episode {m['switches']:.2f} "
          f"(true changes {m['true_changes']:.2f}), precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
          f"F1 {m['f1']:.3f}, quasi-binary {m['binary_fraction']:.3f}")
    return 0


def run_gt_controllers(args) -> int:
    from irl_core.controllers import evaluate_gt_controllers, gt_preset, load_base_for_layer, save_gt_controllers, train_gt_controllers
    from irl_core.runs import Run
    set_threads(args)
    with user_errors():
        cfg = gt_preset(args.preset, steps=args.steps, batch_size=args.batch_size, layer=args.layer,
                        eval_episodes=args.episodes, dstar_ties=getattr(args, "dstar_ties", None))
    model = load_base_for_layer(args.base, args.device, cfg.layer)
    run = Run(args.run_dir) if args.run_dir else Run.create("gt-controllers")
    print(f"run directory: {run.path}")
    with user_errors():
        ctrl = train_gt_controllers(model, cfg, run, args.seed, progress=not args.quiet)
    ev = evaluate_gt_controllers(model, ctrl, cfg.eval_episodes, args.seed)
    run.log(cfg.steps, **{"eval/success_rate": ev["success_rate"]})
    report = {"base": str(args.base), "seed": args.seed, "layer": ctrl.layer, "config": cfg.to_dict(),
              "command": "python -m irl_core " + " ".join(sys.argv[1:]), **ev}
    write_report(run, report, args.report, args.export and (lambda: save_gt_controllers(args.export, ctrl, report)))
    print(f"GT controllers at layer {ctrl.layer}: success {ev['success_rate']:.4f} over {ev['episodes']} episodes "
          f"of the held-out task (mean colours completed {ev['mean_colours_completed']:.2f} of "
          f"{len(model.world.heldout_task)})")
    return 0


def run_layer_sweep(args) -> int:
    from irl_core.checkpoints import atomic_write_json
    from irl_core.controllers import default_layer, gt_preset
    from irl_core.runs import Run
    from irl_core.pretrain import load_base_model
    from irl_core.sweeps import run_layer_sweep as sweep_layers
    with user_errors():
        cfg = gt_preset(args.preset, steps=args.steps, batch_size=args.batch_size, eval_episodes=args.episodes)
        layers = [int(x) for x in args.layers.split(",")] if args.layers else None
        seeds = tuple(int(x) for x in args.seeds.split(","))
    bases = [args.base, *args.snapshots]
    models = [load_base_model(b, "cpu") for b in bases]  # every checkpoint loads before anything runs
    model = models[0]
    with user_errors():
        for m, b in zip(models, bases):
            if m.world.name != model.world.name or m.n_layers != model.n_layers:
                raise ValueError(f"{b}: a {m.n_layers}-layer {m.world.name} model; {args.base} is a "
                                 f"{model.n_layers}-layer {model.world.name} one")
        for layer in layers or []:
            default_layer(model, layer)  # validate every layer before creating anything
    run_root = Path(args.run_dir) if args.run_dir else Run.create("gt-layer-sweep").path
    with user_errors():
        rows = sweep_layers(bases, model.n_layers, run_root, args.preset, layers, seeds, args.steps, args.batch_size,
                            args.episodes, args.device, args.jobs, args.threads or 1, args.backend,
                            progress=not args.quiet)
    out = {"base": str(args.base), "world": model.world.name, "n_layers": model.n_layers, "config": cfg.to_dict(),
           "command": "python -m irl_core " + " ".join(sys.argv[1:]), "rows": rows}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}: " + ", ".join(f"layer {r['layer']}: {r['success_rate']:.3f}" for r in rows))
    return 0


def run_gt_rollouts(args) -> int:
    """``gt-rollouts``: the rollout export of docs/design.md for the ``gt-controllers`` policy."""
    from irl_core.controllers import gt_controller_rollouts, load_gt_controllers
    from irl_core.pretrain import load_base_model
    from irl_core.data import export_npz
    model = load_base_model(args.base, args.device)
    ctrl, _ = load_gt_controllers(args.checkpoint, args.device, base=model)
    with user_errors():
        eps = gt_controller_rollouts(model, ctrl, args.task, args.episodes, args.seed, args.greedy)
    export_npz(args.out, eps)
    print(f"wrote {args.out}: {args.episodes} episodes, success {eps['success'].float().mean():.4f}")
    return 0


def run_compile(args) -> int:
    from irl_core.rl.baselines.compile import compile_preset, save_compile, train
    from irl_core.runs import Run
    from irl_core.controllers import load_base_for_layer
    set_threads(args)
    with user_errors():
        cfg = compile_preset(args.preset, alpha_z=args.alpha_z, alpha_b=args.alpha_b, temperature=args.temperature,
                             steps=args.steps, batch_size=args.batch_size, layer=args.layer, lr=args.lr)
    base = load_base_for_layer(args.base, args.device, cfg.layer)
    run = Run(args.run_dir) if args.run_dir else Run.create("compile")
    print(f"run directory: {run.path}")
    net, result = train(base, cfg, run, args.seed, progress=not args.quiet, base_checkpoint=str(args.base))
    if args.export:
        save_compile(args.export, net, str(args.base), {"seed": args.seed, "result": result,
                                                        "command": "python -m irl_core " + " ".join(sys.argv[1:])})
        print(f"exported {args.export}")
    print(f"CompILE α_z={cfg.alpha_z} α_b={cfg.alpha_b}: action NLL/step {result['action_nll']:.4f}, "
          f"KL_z/step {result['kl_z']:.4f}, KL_b/step {result['kl_b']:.4f}, segments/episode {result['segments']:.2f}")
    return 0


# --- registration -------------------------------------------------------------------------------------
def register(sub) -> None:
    _register_controllers(sub)
    _register_metacontrollers(sub)


def _register_controllers(sub) -> None:
    """gt-controllers, layer-sweep, gt-rollouts, control-reading, compile: supervised controllers and CompILE."""
    p = sub.add_parser("gt-controllers", help="train ground-truth subgoal controllers and measure held-out success")
    p.add_argument("--preset", default="cpu", help="tiny, cpu or paper (Table A7) (default cpu)")
    p.add_argument("--layer", type=int, help="controlled layer (default L/2)")
    p.add_argument("--steps", type=int, help="override the preset's training steps")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--episodes", type=int, help="held-out-task evaluation episodes (default: the preset's)")
    p.add_argument("--run-dir", help="run directory (default runs/gt-controllers/<id>); an existing one is resumed")
    p.add_argument("--export", help="save the controllers as this checkpoint (e.g. checkpoints/grid5/gt_controllers)")
    p.add_argument("--report", help="also write the evaluation report to this JSON file")
    p.add_argument("--dstar-ties", choices=("random", "first"),
                   help="tie-breaking of the D* expert the controllers train on: random (the paper's, default) or "
                        "first (deterministic: up, right, down, left)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(handler=run_gt_controllers)

    p = sub.add_parser("layer-sweep", help="GT controllers at every controlled layer (Fig. 4), one gt-controllers job "
                                           "per (layer, seed) (local processes or Ray; resumable)")
    p.add_argument("--preset", default="cpu", help="tiny, cpu or paper (default cpu)")
    p.add_argument("--layers", help="comma-separated layers (default 0..L)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--steps", type=int, help="override the preset's training steps")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--episodes", type=int, help="held-out-task evaluation episodes per point")
    p.add_argument("--run-dir", help="directory of the per-layer runs (resumable)")
    p.add_argument("--out", required=True, help="output JSON (e.g. checkpoints/grid5/reports/controllers_layers.json)")
    p.add_argument("--snapshots", nargs="+", default=[],
                   help="more base checkpoints of the same world to sweep too (e.g. a pretraining run's "
                        "checkpoints/step<N>): controllability over training")
    p.add_argument("--jobs", type=int, default=1, help="points run at once (default 1; with --backend ray: the CPUs "
                                                        "of the local Ray it starts)")
    add_backend(p)
    p.add_argument("--threads", type=int, help="torch CPU threads of each point (default 1)")
    p.add_argument("--quiet", action="store_true")
    _common(p)
    p.set_defaults(handler=run_layer_sweep)

    p = sub.add_parser("gt-rollouts", help="export rollouts of the GT-controlled base model as .npz")
    p.add_argument("--checkpoint", default="checkpoints/grid5/gt_controllers", help="gt-controllers checkpoint")
    p.add_argument("--task", default="heldout", help="'heldout' (default), 'pretrain' or a task string")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--out", required=True, help="output .npz file")
    _common(p)
    p.set_defaults(handler=run_gt_rollouts)

    p = sub.add_parser("control-reading", help="what GT controllers at given layers do to the model's reading of "
                                               "its subgoal and of the layout (probes downstream of the controls)")
    p.add_argument("--controllers", nargs="*", default=[],
                   help="gt-controllers checkpoints trained on --base (e.g. at layer 0 and at L/2); none: only the "
                        "uncontrolled readings, layer by layer")
    p.add_argument("--read-layer", type=int, help="layer the probes read (default: one above the highest controlled layer)")
    p.add_argument("--episodes", type=int, default=600, help="held-out D* episodes (default 600)")
    p.add_argument("--out", required=True, help="output JSON (e.g. checkpoints/grid5/reports/control_reading.json)")
    _common(p)
    p.set_defaults(handler=_control_reading)

    p = sub.add_parser("compile", help="train the CompILE baseline (codes and segments from raw observations)")
    p.add_argument("--preset", default="cpu", help="tiny, cpu or paper (Table A11) (default cpu)")
    p.add_argument("--alpha-z", type=float, help="weight of the code KL (default 0.1)")
    p.add_argument("--alpha-b", type=float, help="weight of the boundary KL (default 0.1)")
    p.add_argument("--temperature", type=float, help="Gumbel-softmax temperature of the boundaries (default 1)")
    p.add_argument("--layer", type=int, help="controlled layer (default L/2)")
    p.add_argument("--steps", type=int, help="override the preset's training steps")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the learning rate")
    p.add_argument("--run-dir", help="run directory (default runs/compile/<id>); an existing one is resumed")
    p.add_argument("--export", help="save the trained CompILE as this checkpoint (e.g. checkpoints/grid5/compile)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true")
    _common(p)
    p.set_defaults(handler=run_compile)


def _register_metacontrollers(sub) -> None:
    """discover, sweep, switching: the metacontroller, its α sweep and its switching export."""
    p = sub.add_parser("discover", help="train one metacontroller (unsupervised abstract-action discovery)")
    p.add_argument("--preset", default="cpu", help="tiny, cpu or paper (Table A9) (default cpu)")
    p.add_argument("--alpha", type=float, help="KL strength α (default: the preset's, 0.1)")
    p.add_argument("--variant", choices=("frozen", "beta1", "cotrained"), help="default frozen")
    p.add_argument("--layer", type=int, help="controlled layer (default L/2)")
    _add_knobs(p)
    p.add_argument("--run-dir", help="run directory (default runs/discover/<id>); an existing one is resumed")
    p.add_argument("--export", help="copy the trained metacontroller to this checkpoint path")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true")
    _common(p)
    p.set_defaults(handler=_discover)

    p = sub.add_parser("sweep", help="α sweep of metacontrollers, one job per point (local processes or Ray; resumable)")
    p.add_argument("--preset", default="cpu", help="preset of every point (default cpu)")
    p.add_argument("--alphas", default="0,0.05,0.1,0.17,0.3,0.5,1", help="comma-separated α values (Table A9)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--variants", default="frozen", help="comma-separated: frozen, beta1, cotrained")
    p.add_argument("--jobs", type=int, default=1,
                   help="points run at once, one CPU thread each (default 1; with --backend ray: the CPUs of the "
                        "local Ray it starts; a cluster runs as many as it has CPUs)")
    add_backend(p)
    _add_knobs(p)
    p.add_argument("--out-dir", help="sweep directory (default runs/sweep/<id>); rerunning skips finished points")
    p.add_argument("--table", help="also write the results table here (e.g. checkpoints/grid5/reports/discovery.json)")
    p.add_argument("--merge-table", action="store_true",
                   help="keep the points of an existing --table that this --out-dir does not hold")
    p.add_argument("--collect", action="store_true",
                   help="run nothing: tabulate every point already finished in --out-dir (a partial sweep)")
    _common(p)
    p.set_defaults(handler=_sweep)

    p = sub.add_parser("switching", help="export β and subgoal labels of held-out D* episodes as .npz")
    p.add_argument("--checkpoint", required=True, help="metacontroller checkpoint")
    p.add_argument("--base", help="base-model checkpoint (default: the one recorded in the metacontroller)")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--dstar-ties", choices=("random", "first"), default="random",
                   help="the held-out D* expert's tie-breaking among optimal moves: random (the paper's, default) "
                        "or first (the fixed rule some metacontrollers are trained on)")
    _common(p, base=False)
    p.set_defaults(handler=_switching)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m irl_core")
