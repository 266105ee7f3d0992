"""Fig. 8's curves: per method, the median and 25–75% band over seeds of the training success rate and of the
held-out evaluation, against episodes, from finished internal-RL run directories."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from irl_core.checkpoints import CheckpointError
from irl_core.runs import Run, iter_metrics


def curve_summary(rows: list[list[dict]], key: str = "charts/success_rate") -> dict[str, list[float]]:
    """Median and 25–75% band over runs of ``key`` against ``charts/episodes`` (rows per run)."""
    grids = [{int(r["charts/episodes"]): float(r[key]) for r in run if key in r and "charts/episodes" in r} for run in rows]
    common = sorted(set.intersection(*(set(g) for g in grids))) if grids else []
    values = np.array([[g[x] for x in common] for g in grids]) if common else np.zeros((0, 0))
    if not common:
        return {"episodes": [], "median": [], "q25": [], "q75": [], "runs": len(grids)}
    return {"episodes": common, "median": np.median(values, 0).tolist(), "q25": np.quantile(values, 0.25, 0).tolist(),
            "q75": np.quantile(values, 0.75, 0).tolist(), "runs": len(grids)}


def run_dirs_under(root) -> list[Path]:
    """Every run directory (a folder with a config.json) at any depth below ``root``."""
    return sorted(p.parent for p in Path(root).glob("**/config.json"))


def collect_curves(run_dirs, command: str = "") -> dict:
    """Fig. 8 from the finished internal-RL runs among ``run_dirs``: per method, median and 25–75% band over
    its runs of the training success rate and of the held-out evaluation (greedy and sampled), vs episodes."""
    by_method: dict[str, list[tuple[dict, list[dict]]]] = {}
    for path in run_dirs:
        run = Run(path)
        try:
            status, cfg = run.status() or {}, run.read_config()
        except CheckpointError:  # a run directory without a readable config is not a finished run
            continue
        if cfg.get("stage") != "internal-rl" or status.get("status") != "done":
            continue
        by_method.setdefault(cfg["method"], []).append((cfg, list(iter_metrics(run.path / "metrics.jsonl"))))
    methods = {}
    for method, runs in sorted(by_method.items()):
        rows = [r for _, r in runs]
        methods[method] = {"runs": len(runs), "seeds": [c["seed"] for c, _ in runs],
                           "episodes": max(c["episodes"] for c, _ in runs),
                           "train": curve_summary(rows, "charts/success_rate"),
                           "eval_greedy": curve_summary(rows, "eval/success_greedy"),
                           "eval_sampled": curve_summary(rows, "eval/success_sampled")}
    return {"methods": methods, "meta": {"command": command}}
