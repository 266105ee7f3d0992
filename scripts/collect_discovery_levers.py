"""Collect discovery runs (finished or not) into one report: what each optimisation lever did on a base model.

For each run directory: its knobs (the fields that differ from the ``cpu`` preset), the held-out eval curve
from ``metrics.jsonl`` (F1, quasi-binary fraction, switches, distortion, rate, code accuracy), and an
analysis of the metacontroller at its latest checkpoint on fresh held-out D* episodes:
:func:`irl_core.discovery.code_diagnosis` (how many code dimensions are used; whether the segment codes
predict the subgoal or the segment's first action) and, with ``--layouts N``, how often each subgoal's
centroid code, injected from t = 0, sends the agent to that subgoal's colour first
(:func:`irl_core.latent_map.code_steering`).

    python scripts/collect_discovery_levers.py runs/grid5/levers/* --out checkpoints/grid5/reports/discovery_levers.json
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from irl_core.checkpoints import atomic_write_json, read_json  # noqa: E402
from irl_core.data import heldout_episodes  # noqa: E402
from irl_core.discovery import code_diagnosis, discovery_preset, metacontroller_at  # noqa: E402
from irl_core.pretrain import load_base_model  # noqa: E402
from irl_core.latent_map import code_steering, segment_codes  # noqa: E402

CURVE_KEYS = ("f1", "precision", "recall", "binary_fraction", "switches", "action_nll", "kl", "code_accuracy")
BOOKKEEPING = {"log_every", "eval_every", "eval_episodes", "checkpoint_every", "steps"}


def knobs(cfg) -> dict:
    ref = asdict(discovery_preset("cpu"))
    return {k: v for k, v in asdict(cfg).items() if ref.get(k) != v and k not in BOOKKEEPING}


def curve(run_dir: Path) -> list[dict]:
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "eval/f1" in r:
            rows.append({"step": r["step"], **{k: round(float(r[f"eval/{k}"]), 4) for k in CURVE_KEYS if f"eval/{k}" in r}})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="discovery run directories")
    ap.add_argument("--out", required=True)
    ap.add_argument("--episodes", type=int, default=512, help="held-out D* episodes for the code analysis")
    ap.add_argument("--layouts", type=int, default=50, help="layouts per subgoal for the centroid steering (0: skip)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, bases = [], {}
    for d in map(Path, args.runs):
        if not (d / "checkpoints" / "last.json").exists():
            print(f"{d}: no checkpoint yet, skipped", file=sys.stderr)
            continue
        base_path = read_json(d / "config.json")["base_checkpoint"]
        base = bases.setdefault(base_path, load_base_model(ROOT / base_path if not Path(base_path).is_absolute() else base_path))
        meta, model, layer, cfg, step = metacontroller_at(d, base)
        ep = heldout_episodes(args.episodes, 1, model.world, "cpu", cfg.dstar_ties)
        row = {"run": d.name, "alpha": cfg.alpha, "variant": cfg.variant, "knobs": knobs(cfg), "step": step,
               "curve": curve(d), "codes": code_diagnosis(model, meta, layer, ep)}
        if args.layouts:
            seg = segment_codes(model, meta, layer, ep)
            cents = {str(g): seg["codes"][seg["labels"] == g].mean(0).tolist()
                     for g in sorted(set(seg["labels"].tolist())) if g >= 0}
            row["steering"] = code_steering(model, meta, layer, cents, args.layouts)
        last = row["curve"][-1] if row["curve"] else {}
        print(f"{d.name}: step {step}, F1 {last.get('f1', float('nan')):.3f}, binary {last.get('binary_fraction', float('nan')):.3f}, "
              f"dims used {row['codes']['dims_used']}, subgoal from code {row['codes']['subgoal_accuracy']:.2f} "
              f"(chance {row['codes']['subgoal_chance']:.2f}), first action {row['codes']['first_action_accuracy']:.2f} "
              f"(chance {row['codes']['first_action_chance']:.2f})"
              + (f", steering {row['steering']['first_colour']}" if "steering" in row else ""))
        rows.append(row)
    atomic_write_json(args.out, {"kind": "discovery-levers", "episodes": args.episodes, "layouts": args.layouts,
                                 "command": "python scripts/collect_discovery_levers.py " + " ".join(sys.argv[1:]),
                                 "runs": rows})
    print(f"wrote {args.out}: {len(rows)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
