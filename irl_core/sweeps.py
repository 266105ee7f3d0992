"""Many runs of one stage through the job layer (``irl_core.jobs``): the α sweep of metacontrollers and the
seeds of any command.

Each run is one job in its own run directory, submitted through the chosen backend (``local``: at most
``jobs`` worker processes at once; ``ray``: every run submitted at once as a Ray task asking for one CPU,
Ray queueing them by resources). Rerunning the same command with the same ``--out-dir`` skips finished runs
and resumes the others from their last checkpoints; a run still alive from an earlier call is waited for.

- :func:`run_sweep`: every (variant, α, seed) point as ``discover`` in ``<root>/points/<variant>_alpha<α>_seed<s>``,
  then the table of every finished point (:func:`sweep_table`).
- :func:`run_layer_sweep`: ground-truth controllers at every layer (Fig. 4), ``gt-controllers`` per (base, layer,
  seed) in ``<root>/layer<l>_seed<s>``, then one row per point.
- :func:`run_seeds`: one command (``internal-rl --method internal ...``, ``pretrain --preset cpu ...``) once per
  seed in ``<root>/seed<s>``, each with ``--seed s``.
"""
from __future__ import annotations

import itertools
import json
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from irl_core.checkpoints import atomic_write_json, read_json
from irl_core.data import heldout_episodes
from irl_core.discovery import PAPER_ALPHAS, discovery_preset, export_switching, infer, load_metacontroller
from irl_core.jobs import JobBackend, JobError, get_backend, run_all, run_status
from irl_core.paths import REPO_ROOT, repo_relative

__all__ = ["add_switching_exports", "collect_results", "discover_argv", "gt_controllers_argv", "point_name",
           "point_switching", "run_layer_sweep", "run_seeds", "run_sweep", "seed_argv", "sweep_table"]


# --- the α sweep's points and table -----------------------------------------------------------------
def point_name(variant: str, alpha: float, seed: int) -> str:
    return f"{variant}_alpha{alpha:g}_seed{seed}"


EXAMPLE_EPISODES = 4  # held-out episodes whose β, subgoal and length the sweep table keeps per point
EXAMPLE_SEED = 0      # the same episodes for every point, so that points can be compared


def _resolve(path: str | Path) -> Path:
    """A checkpoint path as recorded (often relative to the repository, where the sweep's subprocesses run)."""
    p = Path(path)
    return p if p.is_absolute() or p.with_suffix(".json").exists() else REPO_ROOT / p


def _point_base(point_dir: Path) -> Path | None:
    """The base-model checkpoint a finished point recorded (None for a co-trained one, which carries its own)."""
    recorded = read_json(point_dir / "result.json").get("base_checkpoint")
    return _resolve(recorded) if recorded else None


SWITCHING_DIR = "sweep_switching"  # beside the sweep table: one switching export per point, <point>.npz
SWITCHING_EPISODES = 200


def point_switching(point_dir: str | Path, out_dir: str | Path, episodes: int = SWITCHING_EPISODES) -> Path:
    """A finished point's switching export (:func:`irl_core.discovery.export_switching`) as
    ``out_dir/<point>.npz``: ``episodes`` held-out D* episodes (seed 0, the same for every point) made with the
    tie-break the point was trained on, so that its F1 measures what the table's does. An export newer than the
    point's metacontroller, of as many episodes, is kept."""
    point_dir = Path(point_dir)
    ckpt = point_dir / "checkpoints" / "metacontroller"
    out = Path(out_dir) / f"{point_dir.name}.npz"
    if out.exists() and out.stat().st_mtime >= ckpt.with_suffix(".safetensors").stat().st_mtime:
        try:
            with np.load(out) as f:
                if len(f["length"]) == episodes:
                    return out
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass
    export_switching(ckpt, out, episodes, 0, "cpu", _point_base(point_dir), _point_ties(point_dir))
    return out


def _point_ties(point_dir: Path) -> str:
    """The D* tie-break a point was trained on (``random``, the paper's, for points that predate the knob)."""
    return read_json(point_dir / "config.json").get("dstar_ties", "random")


def point_examples(point_dir: str | Path, n: int = EXAMPLE_EPISODES, seed: int = EXAMPLE_SEED,
                   base: str | Path | None = None) -> dict:
    """β, subgoal and length of ``n`` held-out D* episodes under a finished point's metacontroller, made with
    the tie-break the point was trained on (as its switching export and its table row are).

    Cached in ``<point>/examples.json`` (recomputed when ``n``, ``seed`` or the tie-break differ): ``{"n",
    "seed", "ties", "beta": [[float]] (each cut to its episode's length, 4 decimals), "subgoal": [[int]],
    "length": [int]}``.
    """
    point_dir = Path(point_dir)
    cache = point_dir / "examples.json"
    ties = _point_ties(point_dir)
    if cache.exists():
        try:
            ex = json.loads(cache.read_text())
            if ex.get("n") == n and ex.get("seed") == seed and ex.get("ties", "random") == ties:
                return ex
        except json.JSONDecodeError:
            pass
    meta, model, layer, _ = load_metacontroller(point_dir / "checkpoints" / "metacontroller", "cpu",
                                                base if base is not None else _point_base(point_dir))
    r = infer(model, meta, layer, heldout_episodes(n, seed, model.world, torch.device("cpu"), ties))
    lengths = [int(x) for x in r["length"]]
    ex = {"n": n, "seed": seed, "ties": ties,
          "beta": [[round(float(b), 4) for b in row[:k]] for row, k in zip(r["beta"], lengths)],
          "subgoal": [[int(g) for g in row[:k]] for row, k in zip(r["subgoal"], lengths)],
          "length": lengths}
    atomic_write_json(cache, ex)
    return ex


def collect_results(root: str | Path, examples: int = 0) -> list[dict]:
    """``result.json`` of every finished point under ``root/points``; with ``examples > 0`` each row also gets
    ``examples`` (see :func:`point_examples`; a point whose metacontroller cannot be loaded gets none)."""
    rows = []
    for p in sorted(Path(root).glob("points/*/result.json")):
        try:
            row = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(row.get("rate"), float):  # a KL: results written before evaluation clamped it hold −1e-8
            row["rate"] = max(0.0, row["rate"])
        if examples > 0:
            try:
                row["examples"] = point_examples(p.parent, examples)
            except (RuntimeError, OSError, ValueError, KeyError) as e:  # CheckpointError is a RuntimeError
                print(f"  {p.parent.name}: no example episodes ({e})", file=sys.stderr)
        rows.append(row)
    return rows


TABLE_KEYS = ("variant", "alpha", "seed", "rate", "distortion", "switches", "true_changes", "precision", "recall",
              "f1", "binary_fraction", "code_accuracy", "mean_length", "steps", "run_dir", "examples", "switching")


def sweep_table(rows: list[dict], base_checkpoint, preset_name: str, overrides: dict | None = None, ran: int = 0,
                skipped: int = 0, failed: list[str] | None = None) -> dict:
    """The sweep table (``discovery.json``) from result rows, sorted by (variant, α, seed); ``run_dir`` relative to
    the repository when it lies inside it (the shipped table holds no machine's paths)."""
    return {"base_checkpoint": str(base_checkpoint), "preset": preset_name, "overrides": overrides or {},
            "ran": ran, "skipped": skipped, "failed": failed or [],
            "rows": [{**{k: r.get(k) for k in TABLE_KEYS}, "run_dir": r.get("run_dir") and repo_relative(r["run_dir"])}
                     for r in sorted(rows, key=lambda r: (r["variant"], r["alpha"], r["seed"]))]}


def discover_argv(base_checkpoint, preset_name: str, variant: str, alpha: float, seed: int, device: str,
                  overrides: dict | None = None) -> list[str]:
    """The ``discover`` command of one sweep point (one CPU thread, no progress bar)."""
    argv = ["discover", "--base", str(base_checkpoint), "--preset", preset_name, "--alpha", str(alpha), "--seed",
            str(seed), "--variant", variant, "--device", device, "--threads", "1", "--quiet"]
    for k, val in (overrides or {}).items():
        flag = f"--{k.replace('_', '-')}"
        if isinstance(val, bool):
            argv += [flag] if val else []
        elif val is not None:
            argv += [flag, str(val)]
    return argv


def _backend(backend: str | JobBackend | None, jobs: int) -> JobBackend:
    """A backend by name; a local Ray started for this call gets ``jobs`` CPUs (runs at once)."""
    if backend is None or isinstance(backend, str):
        return get_backend(backend, num_cpus=jobs)
    return backend


def _max_active(backend: JobBackend, jobs: int) -> int | None:
    return None if getattr(backend, "queues", False) else jobs


def run_sweep(base_checkpoint: str | Path, root: str | Path, preset_name: str = "cpu",
              alphas=PAPER_ALPHAS, seeds=(0,), variants=("frozen",), jobs: int = 1, device: str = "cpu",
              overrides: dict | None = None, table: str | Path | None = None, progress: bool = True,
              collect: bool = False, backend: str | JobBackend | None = None, merge: bool = False) -> dict:
    """Run every (variant, α, seed) point as a ``discover`` job, then tabulate every finished point.

    With ``collect`` nothing is run: the table lists every point already finished under ``root`` (a partial
    sweep tabulated while, or after, its points run elsewhere).

    Points whose ``result.json`` exists are skipped (a rerun resumes an interrupted sweep; an interrupted
    point resumes from its own last checkpoint). The table (``root/results.json`` and ``table`` if given)
    lists every finished point: rate, distortion, switches, precision, recall, F1, binary fraction, and
    ``examples``: β, subgoal and length of :data:`EXAMPLE_EPISODES` held-out episodes
    (for the app's rate–distortion page, so that it never has to load a metacontroller); with ``table``, also
    ``switching``: the point's switching export, written beside the table (:func:`point_switching`, in
    ``<table's folder>/sweep_switching/``) for the app's Switching page (named in ``table`` only, unless that is
    ``root/results.json`` itself).

    ``merge``: rows of an existing ``table`` for points this sweep directory does not hold are kept (a sweep
    continued in another directory, or on another machine); the table must be of the same base, preset and knobs.
    """
    for v, a in itertools.product(variants, alphas):  # validate every point before launching anything
        discovery_preset(preset_name, variant=v, alpha=float(a), **(overrides or {}))
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if merge and table and Path(table).exists():
        merged_rows([], table, base_checkpoint, preset_name, overrides)  # refuse a mismatched table before running
    root = Path(root)
    (root / "points").mkdir(parents=True, exist_ok=True)
    points = [(v, float(a), int(s)) for v, a, s in itertools.product(variants, alphas, seeds)]
    if collect:
        points = [(r["variant"], float(r["alpha"]), int(r["seed"])) for r in collect_results(root)]
    todo = [p for p in points if not (root / "points" / point_name(*p) / "result.json").exists()]
    skipped = len(points) - len(todo)
    failed = []
    if todo:
        runner = _backend(backend, jobs)
        if progress:
            print(f"sweep {root}: {len(points)} points, {skipped} already done, {len(todo)} to run "
                  f"({type(runner).__name__}, {jobs} at a time)")

        def finished(run_dir: Path, st: dict) -> None:
            if st["status"] != "done":
                failed.append(run_dir.name)
            if progress:
                print(f"  {run_dir.name}: " + ("done" if st["status"] == "done" else
                                               f"{st['status'].upper()} (see {run_dir / 'log.txt'})"))

        run_all(runner, [(discover_argv(base_checkpoint, preset_name, v, a, s, device, overrides),
                          root / "points" / point_name(v, a, s)) for v, a, s in todo],
                _max_active(runner, jobs), on_finish=finished)
    elif progress:
        print(f"sweep {root}: {len(points)} points, all done")
    rows = collect_results(root, examples=EXAMPLE_EPISODES)
    wanted = {point_name(*p) for p in points}
    rows = [r for r in rows if point_name(r["variant"], float(r["alpha"]), int(r["seed"])) in wanted]
    if table:
        add_switching_exports(rows, root, Path(table).parent / SWITCHING_DIR, progress)
    if merge and table and Path(table).exists():
        rows = merged_rows(rows, table, base_checkpoint, preset_name, overrides)
    out = sweep_table(rows, base_checkpoint, preset_name, overrides, len(todo) - len(failed), skipped, failed)
    if table:
        atomic_write_json(table, out)
    atomic_write_json(root / "results.json", out if not table or Path(table).parent.resolve() == root.resolve()
                      else _without_switching(out))
    return out


def _without_switching(table: dict) -> dict:
    """A sweep table whose rows name no switching export: the copy kept in a sweep folder other than the table's,
    from where the exports (named relative to the table's folder) cannot be found."""
    return {**table, "rows": [{k: v for k, v in r.items() if k != "switching"} for r in table["rows"]]}


def add_switching_exports(rows: list[dict], root: Path, out_dir: Path, progress: bool = True,
                          episodes: int = SWITCHING_EPISODES) -> None:
    """Write (or keep) the switching export (``episodes`` held-out episodes) of every finished point of ``rows``
    under ``root/points``, in ``out_dir``, and name it in the row's ``switching`` (a path relative to the table's
    folder); a point that cannot be exported is named on stderr and gets none."""
    for r in tqdm(rows, desc="switching exports", unit="point", disable=not progress):
        point = root / "points" / point_name(r["variant"], float(r["alpha"]), int(r["seed"]))
        try:
            r["switching"] = f"{out_dir.name}/{point_switching(point, out_dir, episodes).name}"
        except (RuntimeError, OSError, ValueError, KeyError) as e:  # CheckpointError is a RuntimeError
            print(f"  {point.name}: no switching export ({e})", file=sys.stderr)


def merged_rows(rows: list[dict], table, base_checkpoint, preset_name: str, overrides: dict | None) -> list[dict]:
    """``rows`` plus the rows of sweep table ``table`` for the points ``rows`` lack; ValueError if the table was
    made with another base model, preset or knobs (its points would not be comparable)."""
    old = read_json(table)
    mine = (str(base_checkpoint), preset_name, overrides or {})
    theirs = (str(old.get("base_checkpoint")), old.get("preset"), old.get("overrides") or {})
    if mine != theirs:
        raise ValueError(f"{table} was made with another base, preset or knobs ({theirs[0]}, {theirs[1]}); "
                         "merge only points of one sweep")
    have = {point_name(r["variant"], float(r["alpha"]), int(r["seed"])) for r in rows}
    return rows + [r for r in old.get("rows", []) if point_name(r["variant"], float(r["alpha"]), int(r["seed"])) not in have]


def seed_argv(argv: Sequence[str], seed: int, run_dir: str | Path) -> list[str]:
    """``argv`` with ``--seed`` and ``--run-dir`` added; a JobError if it already names either."""
    argv = [str(a) for a in argv]
    for flag in ("--seed", "--run-dir"):
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            raise JobError(f"the command already gives {flag}; the seeds command sets it for each run")
    return [*argv, "--seed", str(seed), "--run-dir", str(run_dir)]


def run_seeds(argv: Sequence[str], seeds: Sequence[int], root: str | Path, jobs: int = 1,
              backend: str | JobBackend | None = None, progress: bool = True) -> list[dict]:
    """Run ``argv`` once per seed as a job in ``root/seed<s>``; runs already ``done`` are skipped, the others
    (failed, cancelled, interrupted) resume. Returns each seed's final status, in the order of ``seeds``."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if not seeds:
        raise ValueError("no seeds given")
    root = Path(root).resolve()
    runs = [(s, root / f"seed{s}") for s in seeds]
    commands = [(seed_argv(argv, s, d), d) for s, d in runs]  # every command is checked before any is submitted
    todo = [(a, d) for a, d in commands if not (d.is_dir() and run_status(d)["status"] == "done")]
    if progress:
        print(f"seeds {root}: {len(runs)} runs, {len(runs) - len(todo)} already done, {len(todo)} to run")
    if todo:
        runner = _backend(backend, jobs)

        def finished(run_dir: Path, st: dict) -> None:
            if progress:
                print(f"  {run_dir.name}: {st['status']}" + ("" if st["status"] == "done" else
                                                             f" ({st.get('error') or run_dir / 'log.txt'})"))

        run_all(runner, todo, _max_active(runner, jobs), on_finish=finished)
    return [{"seed": s, **run_status(d)} for s, d in runs]


REPORT_META = ("base", "seed", "layer", "relative_layer", "config", "command")  # a report's keys that are not results


def gt_controllers_argv(base, preset_name: str, layer: int, seed: int, device: str, steps: int | None = None,
                        batch_size: int | None = None, episodes: int | None = None, threads: int = 1) -> list[str]:
    """The ``gt-controllers`` command of one layer-sweep point (it writes ``report.json`` in its run directory)."""
    argv = ["gt-controllers", "--base", str(base), "--preset", preset_name, "--layer", str(layer), "--seed", str(seed),
            "--device", device, "--threads", str(threads), "--quiet"]
    for flag, value in (("--steps", steps), ("--batch-size", batch_size), ("--episodes", episodes)):
        argv += [flag, str(value)] if value is not None else []
    return argv


def run_layer_sweep(bases: Sequence[str | Path], n_layers: int, root: str | Path, preset_name: str = "cpu",
                    layers: Sequence[int] | None = None, seeds: Sequence[int] = (0,), steps: int | None = None,
                    batch_size: int | None = None, episodes: int | None = None, device: str = "cpu", jobs: int = 1,
                    threads: int = 1, backend: str | JobBackend | None = None, progress: bool = True) -> list[dict]:
    """Fig. 4 (and Fig. A2 over ``bases``): ground-truth controllers at every layer, one ``gt-controllers`` job per
    (base, layer, seed) in ``root/layer{l}_seed{s}`` (the k-th further base in ``root/base{k}/...``).

    Points whose ``report.json`` exists are skipped, the others run (or resume) through the backend. Returns one
    row per point, in the order (base, layer, seed): ``base``, ``base_episodes``, ``layer``, ``relative_layer``
    (0 = L/2), ``seed`` and the evaluation (``success_rate``, ...); a JobError names the points that failed.
    """
    from irl_core.checkpoints import load_checkpoint, read_json
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    layers = list(range(n_layers + 1)) if layers is None else list(layers)
    root = Path(root).resolve()
    points = [(b, (root if k == 0 else root / f"base{k}") / f"layer{l}_seed{s}", l, s)
              for k, b in enumerate(bases) for l in layers for s in seeds]
    todo = [(gt_controllers_argv(b, preset_name, l, s, device, steps, batch_size, episodes, threads), d)
            for b, d, l, s in points if not (d / "report.json").exists()]
    failed: list[str] = []
    if progress:
        print(f"layer sweep {root}: {len(points)} points, {len(points) - len(todo)} already done, {len(todo)} to run")
    if todo:
        runner = _backend(backend, jobs)

        def finished(run_dir: Path, st: dict) -> None:
            ok = st["status"] == "done" and (run_dir / "report.json").exists()
            if not ok:
                failed.append(str(run_dir.relative_to(root)))
            if progress:
                print(f"  {run_dir.relative_to(root)}: " + ("done" if ok else f"{st['status'].upper()} (see {run_dir / 'log.txt'})"))

        run_all(runner, todo, _max_active(runner, jobs), on_finish=finished)
    if failed:
        raise JobError(f"{len(failed)} layer-sweep point(s) failed: {', '.join(failed)}; rerun the same command to resume them")
    base_episodes = {str(b): int(load_checkpoint(b)[2].get("episodes", 0)) for b in bases}
    rows = []
    for b, d, l, s in points:
        report = read_json(d / "report.json")
        rows.append({"base": str(b), "base_episodes": base_episodes[str(b)], "layer": l,
                     "relative_layer": l - n_layers // 2, "seed": s,
                     **{k: v for k, v in report.items() if k not in REPORT_META}})
    return rows
