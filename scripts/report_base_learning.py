"""Print, as Markdown, how base models learned: the diagnostics of every checkpoint of ``probe-curve`` reports.

    python scripts/report_base_learning.py checkpoints/grid-continued/reports/probes_curve.json [more.json …]
        [--eval "λ = 0.01=checkpoints/grid/reports/pretrain_curve.json" --eval "λ = 0.1=runs/pretrain/study-obs0.1"]

One table per report (one row per checkpoint, ordered by training episodes) with the issue's targets:
the accuracy at segment starts where the target is known (2nd of a pair) and open (1st of a pair),
each beside the Bayes-optimal task-blind predictor's on the same episodes, the subgoal probe at mid-depth against its shuffled control, sampled success on the
pretraining and held-out tasks, the first colour reached, and how often uncut rollouts spell a
pretraining task, and the two mistakes a perfect task-blind agent never makes (sampled episodes that end
by leaving a pair unfinished, or by starting a pair that no task allows after the last one).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("episodes", "action acc (Bayes task-blind)", "segment start, known (Bayes)", "segment start, open (Bayes)", "subgoal probe L/2 (control)",
           "last-colour probe L/2", "sampled success, pretraining", "held-out", "right first colour",
           "uncut: spells a pretraining task", "pair left unfinished", "next pair no task allows")


def rows(curve: dict) -> list[str]:
    mid = len(curve["layers"]) // 2
    out = []
    for p in curve["points"]:
        acc, h, sm, sg = p["action_accuracy"], p["history_use"], p["sampled"], p["subgoal_probe"]
        ref = p.get("history_use_bayes", {})
        out.append("| " + " | ".join([
            f"{p['episodes']:,}" if p.get("episodes") is not None else "?",
            f"{acc['model']:.3f} ({acc['bayes_task_blind']:.3f})",
            *(f"{h[k]:.3f} ({ref[k]:.3f})" if ref else f"{h[k]:.3f}" for k in ("determined_acc", "undetermined_acc")),
            f"{sg['accuracy'][mid]:.3f} ({sg['control'][mid]:.3f})",
            f"{p['last_colour_probe']['accuracy'][mid]:.3f}",
            f"{sm['success_pretraining_tasks']:.3f}", f"{sm['success_heldout_task']:.3f}",
            f"{sm['reached_correct_first_colour']:.3f}", f"{sm['uncut_follows_pretraining_task']:.3f}",
            *(f"{sm['ends'][k]:.3f}" if "ends" in sm else "—" for k in ("partner_missed", "next_pair_no_task_allows"))]) + " |")
    return out


def eval_curve(path: Path) -> dict[int, float]:
    """Held-out action accuracy by training episodes, from a run directory or an exported pretrain_curve.json."""
    if not path.exists():
        raise SystemExit(f"{path}: not found")
    if path.is_dir():
        if not (path / "metrics.jsonl").exists():
            raise SystemExit(f"{path}: no metrics.jsonl (not a run directory, or nothing logged yet)")
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    else:
        rows = json.loads(path.read_text())["curve"]
    return {int(r["charts/episodes"]): r["eval/action_acc"] for r in rows if "eval/action_acc" in r}


def eval_table(specs: list[str]) -> list[str]:
    """One column per ``LABEL=PATH``: held-out action accuracy at the episodes every run was evaluated at."""
    curves = {}
    for spec in specs:
        label, _, path = spec.rpartition("=")
        curves[label] = eval_curve(Path(path))
    episodes = sorted(set().union(*curves.values()))
    out = ["| training episodes | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    for e in episodes:
        out.append(f"| {e:,} | " + " | ".join(f"{c[e]:.4f}" if e in c else "" for c in curves.values()) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("curves", nargs="*", help="probe-curve reports (JSON)")
    ap.add_argument("--eval", action="append", default=[], metavar="LABEL=PATH",
                    help="a run directory or pretrain_curve.json whose held-out accuracy curve to tabulate")
    args = ap.parse_args()
    if args.eval:
        print("\n".join(eval_table(args.eval)) + "\n")
    for path in args.curves:
        curve = json.loads(Path(path).read_text())
        print(f"`{path}` ({curve.get('command', '')}; {curve['n_episodes']} probe episodes, "
              f"{curve['sample_episodes']} sampled rollouts per diagnostic)\n")
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        print("\n".join(rows(curve)) + "\n")


if __name__ == "__main__":
    main()
