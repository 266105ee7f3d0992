"""CLI commands of steering: ``latent-map`` and ``steer`` (registered through ``irl_core.cli._EXTENSIONS``)."""
from __future__ import annotations

import sys
from pathlib import Path

from irl_core.cli.common import set_threads, user_errors
from irl_core.errors import UserError


def _parse_code(text: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UserError(f"--code must be comma-separated numbers, got {text!r}") from None


def run_latent_map(args) -> int:
    import time
    from irl_core.latent_map import axis_steering, code_steering, file_digest, latent_map
    from irl_core.checkpoints import atomic_write_json
    from irl_core.discovery import load_metacontroller
    from irl_core.reports import axis_line, displacement_line
    set_threads(args)
    meta, model, layer, info = load_metacontroller(args.checkpoint, args.device, args.base)
    t = time.perf_counter()
    with user_errors():
        report = latent_map(model, meta, layer, args.episodes, args.seed)
        if args.steer_layouts:
            codes = {g: c["code"] for g, c in report["centroids"].items()}
            report["steering"] = code_steering(model, meta, layer, codes, args.steer_layouts)
            report["axis_steering"] = axis_steering(model, meta, layer, report, layouts=args.steer_layouts)
    weights = f"{Path(args.checkpoint).with_suffix('')}.safetensors"
    report["metacontroller"] = str(args.checkpoint)
    report["metacontroller_sha256"] = file_digest(weights)
    report["base_checkpoint"] = str(args.base or info.get("base_checkpoint"))
    report["seconds"] = round(time.perf_counter() - t, 2)
    report["command"] = "python -m irl_core " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["latent-map"] else \
        f"python -m irl_core latent-map --checkpoint {args.checkpoint} --episodes {args.episodes} --out {args.out}"
    out = args.out or Path(args.checkpoint).parent / "reports" / "latent_map.json"
    atomic_write_json(out, report)
    ev = report["explained_variance_ratio"]
    print(f"wrote {out}: {report['n_segments']} segments from {args.episodes} held-out D* episodes "
          f"({report['segments_per_episode']:.2f}/episode, majority-label purity {report['mean_purity']:.3f}); "
          f"PCA explains {ev[0]:.2f} + {ev[1]:.2f} of the code variance; nearest-centroid subgoal accuracy "
          f"{report['centroid_accuracy']:.3f}")
    print(displacement_line(report["displacement_r2"], report["centroid_accuracy"]))
    if "steering" in report:
        first = report["steering"]["first_colour"]
        print(f"centroid codes steered from t = 0 on {args.steer_layouts} layouts: first colour entered is the code's "
              "subgoal in " + ", ".join(f"{g}: {v:.2f}" for g, v in first.items()))
        print(axis_line(report["axis_steering"]))
    return 0


def run_steer(args) -> int:
    import numpy as np
    from irl_core.envs.tasks import format_task
    from irl_core.latent_map import validate_latent_map
    from irl_core.steering import export_steered, steer_batch
    from irl_core.controllers import default_layer, load_gt_controllers
    from irl_core.discovery import load_metacontroller
    from irl_core.pretrain import load_base_model
    meta = gt = None
    if args.code is not None and args.subgoal is not None:
        raise UserError("give either --code (a metacontroller code) or --subgoal (a ground-truth controller), not both")
    if args.code is not None or args.xy is not None:
        meta, model, layer, _ = load_metacontroller(args.metacontroller, args.device, args.base)
        if args.xy is not None:
            from irl_core.checkpoints import read_json
            try:
                proj = validate_latent_map(read_json(args.latent_map))
                xy = _parse_code(args.xy)
                if len(xy) != 2:
                    raise ValueError(f"--xy needs 2 numbers, got {len(xy)}")
            except ValueError as e:
                raise UserError(f"{args.latent_map}: {e}") from None
            control = proj.to_code(xy).tolist()
        else:
            control = _parse_code(args.code)
    elif args.subgoal is not None:
        model = load_base_model(args.base or "checkpoints/grid5/base", args.device)
        gt, _ = load_gt_controllers(args.controllers, args.device)
        layer = gt.layer
        control = args.subgoal if args.subgoal == "gt-sequence" else int(args.subgoal) if args.subgoal.isdigit() else args.subgoal
    else:
        model = load_base_model(args.base or "checkpoints/grid5/base", args.device)
        layer, control = default_layer(model, args.layer), None
    with user_errors():
        results = steer_batch(model, layer, control, layout_seed=args.layout_seed, t0=args.t0, task=args.task,
                              greedy=not args.sample, episodes=args.episodes, seed=args.seed,
                              end_on_wrong=not args.no_cut, diagnostic_steps=args.diagnostic_steps, meta=meta, gt=gt)
    export_steered(args.out, results)
    r = results[0]
    rate = np.mean([x.success for x in results])
    print(f"wrote {args.out}: {len(results)} episode(s) on layout seed {args.layout_seed}, task {format_task(r.task)}, "
          f"control from t0={args.t0} at layer {layer}; paper-rules success {rate:.3f}; first episode: "
          f"{r.outcome} after {r.end_step} steps, colours {'-'.join(map(str, r.paper_colours)) or 'none'} "
          f"({r.seconds * 1000:.0f} ms)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("latent-map", help="2-D PCA map of the metacontroller's segment codes on held-out D* (report JSON)")
    p.add_argument("--checkpoint", default="checkpoints/grid5/metacontroller",
                   help="metacontroller checkpoint (default checkpoints/grid5/metacontroller)")
    p.add_argument("--base", help="base-model checkpoint (default: the one recorded in the metacontroller)")
    p.add_argument("--episodes", type=int, default=500, help="held-out D* episodes (default 500)")
    p.add_argument("--out", help="output JSON (default <checkpoint dir>/reports/latent_map.json)")
    p.add_argument("--steer-layouts", type=int, default=0,
                   help="also steer from t = 0 with each subgoal's centroid code on this many layouts and report how "
                        "often the agent enters that subgoal's colour first, and with 5 codes along the map's first "
                        "axis and report where the colour entered first lies (default 0: skip)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out episodes (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.set_defaults(handler=run_latent_map)

    p = sub.add_parser("steer", help="rollouts of the base model steered from step t0 by a latent code or a GT controller (.npz)")
    p.add_argument("--base", help="base-model checkpoint (default checkpoints/grid5/base, or the metacontroller's)")
    p.add_argument("--metacontroller", default="checkpoints/grid5/metacontroller", help="metacontroller (with --code/--xy)")
    p.add_argument("--code", help="latent code z as comma-separated floats (n_z of them), decoded by the metacontroller")
    p.add_argument("--xy", help="a point 'x,y' of the latent map, mapped back to a code (with --latent-map)")
    p.add_argument("--latent-map", default="checkpoints/grid5/reports/latent_map.json", help="latent-map report (with --xy)")
    p.add_argument("--controllers", default="checkpoints/grid5/gt_controllers", help="ground-truth controllers (with --subgoal)")
    p.add_argument("--subgoal", help="ground-truth controller held fixed: 0..3 (A..D), or 'gt-sequence'")
    p.add_argument("--layer", type=int, help="layer of the reported Δresid without control (default L/2)")
    p.add_argument("--layout-seed", type=int, default=0, help="seed of the layout (and of the task with --task pretrain)")
    p.add_argument("--task", default="heldout", help="'heldout' (default), 'pretrain' or a task string")
    p.add_argument("--t0", type=int, default=0, help="first controlled time step (default 0)")
    p.add_argument("--episodes", type=int, default=1, help="episodes on this layout (default 1; use with --sample)")
    p.add_argument("--sample", action="store_true", help="sample actions (default: greedy)")
    p.add_argument("--no-cut", action="store_true", help="keep going after a wrong colour (diagnostic; success is still the paper's)")
    p.add_argument("--diagnostic-steps", type=int, help="with --no-cut: stop this many steps after the paper's end (and t0)")
    p.add_argument("--out", required=True, help="output .npz file (docs/design.md rollouts format + delta_ratio)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled actions (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.set_defaults(handler=run_steer)
