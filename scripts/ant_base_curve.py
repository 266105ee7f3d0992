"""Closed-loop success of the ant base model over its training: every snapshot of an ``ant-pretrain`` run acting
alone in MuJoCo, judged on completing any pretraining task (the model is not told its task), sampled and mean.

    python scripts/ant_base_curve.py --run-dir runs/ant_pretrain/cpu-seed0 [--episodes 200] \
        [--out checkpoints/ant/reports/base_curve.json]

One row per snapshot (``checkpoints/step<N>``) with the run's held-out action NLL at that step; printed as a
Markdown table (for BENCHMARKS.md) and written as JSON. Resumable: snapshots already in ``--out`` (same run and
episode count) are not evaluated again, so a run that goes on across sittings extends its curve a snapshot at a time.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from irl_core.ant_base import BaseModelActor  # noqa: E402
from irl_core.ant_pretrain import load_ant_base  # noqa: E402
from irl_core.checkpoints import atomic_write_json, read_json  # noqa: E402
from irl_core.envs.tasks import ANT_PRETRAIN_TASKS  # noqa: E402
from irl_core.experts.ant_episodes import evaluate  # noqa: E402
from irl_core.runs import iter_metrics  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", required=True, help="an ant-pretrain run directory with snapshots")
    p.add_argument("--episodes", type=int, default=200, help="episodes per snapshot and policy (default 200)")
    p.add_argument("--out", help="write the curve JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    run = Path(args.run_dir)
    snaps = sorted(run.glob("checkpoints/step*.json"), key=lambda f: int(f.stem[4:]))
    if not snaps:
        p.error(f"{run}: no snapshots (checkpoints/step<N>); train with --snapshot-every")
    nll = {r["step"]: r["eval/action_nll"] for r in iter_metrics(run / "metrics.jsonl") if "eval/action_nll" in r}
    done = {}
    if args.out and Path(args.out).exists():
        prev = read_json(args.out)
        if prev.get("run_dir") == str(args.run_dir) and prev.get("episodes") == args.episodes:
            done = {r["step"]: r for r in prev.get("points", [])}
    rows = []
    for f in snaps:
        step = int(f.stem[4:])
        if step in done:
            rows.append({**done[step], "eval_action_nll": nll.get(step, done[step].get("eval_action_nll"))})
            continue
        model = load_ant_base(f.with_suffix(""))
        row = {"step": step, "eval_action_nll": nll.get(step)}
        for name, sample in (("sampled", True), ("mean", False)):
            r = evaluate(BaseModelActor(model, sample), ANT_PRETRAIN_TASKS, args.episodes, 0, any_task=True)
            row[name] = {"success_rate": r["success_rate"], "events": r["events"], "mean_length": r["mean_length"]}
        rows.append(row)
        if args.out:  # after every snapshot, so that an interrupted curve keeps what it measured
            write(args, rows)
        print(f"step {step}: any-task success sampled {row['sampled']['success_rate']:.3f}, "
              f"mean {row['mean']['success_rate']:.3f}", file=sys.stderr)
    print("| step | held-out action NLL | success, sampled | success, mean | wall endings (sampled) |")
    print("|---|---|---|---|---|")
    for r in rows:
        n = "n/a" if r["eval_action_nll"] is None else f"{r['eval_action_nll']:.3f}"
        print(f"| {r['step']} | {n} | {r['sampled']['success_rate']:.3f} | {r['mean']['success_rate']:.3f} | "
              f"{r['sampled']['events']['wall'] / args.episodes:.2f} |")
    if args.out:
        write(args, rows)
    return 0


def write(args, rows: list[dict]) -> None:
    atomic_write_json(args.out, {"run_dir": str(args.run_dir), "episodes": args.episodes, "judged": "any pretraining task",
                                 "command": "python scripts/ant_base_curve.py " + " ".join(sys.argv[1:]), "points": rows})


if __name__ == "__main__":
    sys.exit(main())
