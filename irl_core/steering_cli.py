"""CLI commands of steering: ``latent-map`` and ``steer`` (registered through ``irl_core.cli._EXTENSIONS``)."""
from __future__ import annotations


def _latent_map(args):
    from irl_core.steering import cli_latent_map
    return cli_latent_map(args)


def _steer(args):
    from irl_core.steering import cli_steer
    return cli_steer(args)


def register(sub) -> None:
    p = sub.add_parser("latent-map", help="2-D PCA map of the metacontroller's segment codes on held-out D* (report JSON)")
    p.add_argument("--checkpoint", default="checkpoints/grid5/metacontroller",
                   help="metacontroller checkpoint (default checkpoints/grid5/metacontroller)")
    p.add_argument("--base", help="base-model checkpoint (default: the one recorded in the metacontroller)")
    p.add_argument("--episodes", type=int, default=500, help="held-out D* episodes (default 500)")
    p.add_argument("--out", help="output JSON (default <checkpoint dir>/reports/latent_map.json)")
    p.add_argument("--steer-layouts", type=int, default=0,
                   help="also steer from t = 0 with each subgoal's centroid code on this many layouts and report how "
                        "often the agent enters that subgoal's colour first (default 0: skip)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out episodes (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.set_defaults(handler=_latent_map)

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
    p.set_defaults(handler=_steer)
