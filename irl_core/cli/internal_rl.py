"""Commands of internal RL: ``internal-rl`` (one run of any method) and ``rl-curves`` (Fig. 8's summary)."""
from __future__ import annotations

import sys

from irl_core.cli.common import set_threads, user_errors
from irl_core.errors import UserError


def _internal_rl(args) -> int:
    from irl_core.device import resolve_device
    from irl_core.rl.internal import save_policy
    from irl_core.rl.methods import make_learner
    from irl_core.rl.ppo import rl_preset, train
    from irl_core.runs import Run, new_run_id
    set_threads(args)
    with user_errors():
        cfg = rl_preset(args.preset, method=args.method, episodes=args.episodes, batch_size=args.batch_size,
                        lr=args.lr, task=args.task)
    device = resolve_device(args.device)
    learner = make_learner(cfg, device, args.seed, args.metacontroller, args.base, args.set)
    run = Run(args.run_dir) if args.run_dir else Run.create("internal-rl", new_run_id(f"{cfg.method}-seed{args.seed}-"))
    print(f"run directory: {run.path}")
    sources = {"metacontroller": str(args.metacontroller) if args.metacontroller else None,
               "base": str(args.base) if args.base else None, "preset": args.preset}
    result = train(learner, cfg, run, args.seed, progress=not args.quiet, extra_config=sources, stop_at=args.stop_at)
    if "stopped_at" in result:
        print(f"stopped after {result['stopped_at']} updates; run the same command to resume")
        return 0
    if args.export:
        if cfg.method == "raw-action":
            raise UserError("--export saves a policy over codes; raw-action RL finetunes the base model itself")
        from irl_core.paths import repo_relative
        from irl_core.rl.methods import default_metacontroller
        meta_path = repo_relative(args.metacontroller or default_metacontroller(cfg.method, args.set))
        save_policy(args.export, learner, cfg, {"metacontroller": meta_path, "base": sources["base"], "task": cfg.task,
                                                "seed": args.seed, "result": result,
                                                "command": "python -m irl_core " + " ".join(sys.argv[1:])})
        print(f"exported {args.export}")
    print(f"{cfg.method} seed {args.seed}: {result['episodes']:,} episodes; held-out success greedy "
          f"{result['eval/success_greedy']:.3f}, sampled {result['eval/success_sampled']:.3f}")
    return 0


def _rl_curves(args) -> int:
    from irl_core.checkpoints import atomic_write_json
    from irl_core.rl.curves import collect_curves, run_dirs_under
    command = f"python -m irl_core rl-curves --runs {args.runs} --out {args.out}" + (" --add" if args.add else "")
    out = collect_curves(run_dirs_under(args.runs), command)
    if not out["methods"]:
        raise UserError(f"no finished internal-RL runs under {args.runs}")
    if args.add:
        from pathlib import Path
        from irl_core.checkpoints import read_json
        if Path(args.out).exists():
            old = read_json(args.out)
            kept = {m: v for m, v in old.get("methods", {}).items() if m not in out["methods"]}
            out["methods"] = dict(sorted({**kept, **out["methods"]}.items()))
            earlier = old.get("meta", {}).get("commands") or [old.get("meta", {}).get("command", "")]
            out["meta"] = {"command": command, "commands": [c for c in earlier if c] + [command],
                           "kept_from_earlier": sorted(kept)}
    atomic_write_json(args.out, out)
    for method, m in out["methods"].items():
        median = m.get("eval_greedy", {}).get("median") or [float("nan")]
        print(f"  {method:12s} {m.get('runs', '?')} runs, median final held-out success (greedy) {median[-1]:.3f}")
    print(f"wrote {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("internal-rl", help="RL on the held-out task: internal RL or a baseline (resumable)")
    p.add_argument("--method", default="internal-rl",
                   help="internal-rl (default), beta1, cotrained, compile or raw-action (Fig. 8's methods)")
    p.add_argument("--preset", default="cpu", help="tiny, cpu or paper (Table A13) (default cpu)")
    p.add_argument("--episodes", type=int, help="training budget in episodes (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="episodes per update (default: the preset's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the preset's)")
    p.add_argument("--task", help="post-training task (default heldout)")
    p.add_argument("--set", help="checkpoint set whose checkpoints the method uses (default checkpoints/grid5)")
    p.add_argument("--metacontroller", help="metacontroller checkpoint (default <set>/metacontroller, _beta1 or "
                                            "_cotrained by method; compile: <set>/compile)")
    p.add_argument("--base", help="base-model checkpoint (default: the one the metacontroller records; raw-action: "
                                  "<set>/base)")
    p.add_argument("--run-dir", help="run directory (default runs/internal-rl/<method>-seed<seed>-<time>); an "
                                     "existing one is resumed")
    p.add_argument("--stop-at", type=int, help="checkpoint and stop after this many updates (run again to resume)")
    p.add_argument("--export", help="save the trained policy as this checkpoint (e.g. checkpoints/grid5/internal_rl_policy)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.set_defaults(handler=_internal_rl)

    p = sub.add_parser("rl-curves", help="median and 25–75%% band of every method's RL curves (Fig. 8) as JSON")
    p.add_argument("--runs", default="runs/internal-rl", help="directory holding the internal-RL run directories")
    p.add_argument("--out", default="checkpoints/grid5/reports/internal_rl.json", help="output JSON")
    p.add_argument("--add", action="store_true", help="keep the methods of an existing --out that these runs lack "
                                                     "(add one method's curves to a report)")
    p.set_defaults(handler=_rl_curves)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m irl_core")
