"""Reading the reports of a checkpoint set (``<set>/reports/*.json`` and ``*.npz``) for the app, with clear errors.

A checkpoint set is a folder such as the shipped ``checkpoints/grid`` (see :mod:`irl_core.app_state`);
functions take its folder as ``set_dir`` and default to the shipped set of ``env`` under the checkpoints
root. A missing report raises :class:`MissingReport`, whose message names the command that makes it; a
malformed one raises :class:`CheckpointError` naming the file and the problem.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from irl_core.checkpoints import CheckpointError, read_json
from irl_core.paths import SHIPPED_SETS, checkpoints_root, repo_relative
from irl_core.switching import SWITCHING_METRICS, switch_alignment

# what makes each artifact of a set (checkpoints and reports), for pages that find one missing ({set} = the set's folder)
REPORT_COMMANDS = {
    "base": "python -m irl_core pretrain --preset cpu --export {set}/base",
    "gt_controllers": "python -m irl_core gt-controllers --base {set}/base --preset cpu --export {set}/gt_controllers "
                      "--report {set}/reports/controllers.json",
    "metacontroller": "python -m irl_core discover --base {set}/base --preset cpu --alpha 0.1 --seed 0 "
                      "--export {set}/metacontroller",
    "latent_map": "python -m irl_core latent-map --checkpoint {set}/metacontroller --episodes 500 "
                  "--out {set}/reports/latent_map.json",
    "probes": "python -m irl_core probes --checkpoint {set}/base",
    "pretrain_curve": "python -m irl_core pretrain --preset cpu --export {set}/base",
    "probes_curve": "python -m irl_core probe-curve --run-dir <a pretraining run with --snapshot-every> "
                    "--out {set}/reports/probes_curve.json",
    "switching": "python -m irl_core switching --checkpoint {set}/metacontroller --episodes 200 "
                 "--out {set}/reports/switching.npz",
    "internal_rl": "bash scripts/reproduce_grid_rl.sh",
    "discovery": "python -m irl_core sweep --base {set}/base --variants frozen,cotrained --seeds 0,1,2 --gumbel "
                 "--switch-bias 1.0 --decoder-init-std 0.1 --dstar-ties first --alpha-warmup 1000 "
                 "--out-dir runs/discovery-sweep --table {set}/reports/discovery.json (resumable; "
                 "add --collect to tabulate the points finished so far)",
    "controllers_layers": "python -m irl_core layer-sweep --base {set}/base --seeds 0,1,2 "
                          "--out {set}/reports/controllers_layers.json",
    "controllers_snapshots": "python -m irl_core layer-sweep --base <snapshot> --snapshots <snapshots …> --layers 0,3 "
                             "--out {set}/reports/controllers_snapshots.json (scripts/reproduce_grid5.sh)",
    "control_reading": "python -m irl_core control-reading --base {set}/base --controllers {set}/gt_controllers_layer0 "
                       "{set}/gt_controllers --out {set}/reports/control_reading.json",
}
REPORT_COMMANDS["controllers"] = REPORT_COMMANDS["gt_controllers"]  # the report beside the checkpoint it describes
SUBGOAL_ALIGNED_F1 = 0.9  # a sweep point with F1 ≥ this is drawn as subgoal-aligned (★)


class MissingReport(CheckpointError):
    """A report that has not been made yet; the message says which command makes it."""


def set_folder(set_dir: str | Path | None = None, env: str = "grid", root: str | Path | None = None) -> Path:
    """``set_dir``, or the shipped set of ``env`` under ``root`` (default: the checkpoints root)."""
    return Path(set_dir) if set_dir is not None else Path(root or checkpoints_root()) / env


def command_for(name: str, set_dir: str | Path | None = None, env: str = "grid") -> str:
    template = REPORT_COMMANDS.get(name)
    return template.format(set=repo_relative(set_folder(set_dir, env))) if template else "the stage that writes it"


def report_path(name: str, set_dir: str | Path | None = None, env: str = "grid", root: str | Path | None = None,
                suffix: str = ".json") -> Path:
    return set_folder(set_dir, env, root) / "reports" / f"{name}{suffix}"


def _missing(name: str, path: Path, set_dir, env: str) -> MissingReport:
    return MissingReport(f"{repo_relative(path)} is missing; make it with `{command_for(name, set_dir, env)}`")


def load_report(name: str, env: str = "grid", root: str | Path | None = None,
                set_dir: str | Path | None = None) -> dict:
    """``<set>/reports/<name>.json``; raises MissingReport (with the command) or CheckpointError."""
    path = report_path(name, set_dir, env, root)
    if not path.exists():
        raise _missing(name, path, set_dir if set_dir is not None else set_folder(None, env, root), env)
    report = read_json(path)
    if not isinstance(report, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return report


# --- switching export (irl_core.discovery.export_switching) ---------------------------------------------
def episode_counts(beta: np.ndarray, subgoal: np.ndarray, length: np.ndarray,
                   threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per episode: (steps with β > threshold, subgoal changes at t ≥ 1), within each episode's length."""
    valid = np.arange(beta.shape[1])[None, :] < np.asarray(length)[:, None]
    switches = ((beta > threshold) & valid).sum(1)
    changes = ((subgoal[:, 1:] != subgoal[:, :-1]) & valid[:, 1:]).sum(1)
    return switches, changes


def load_switching(set_dir: str | Path | None = None, env: str = "grid", root: str | Path | None = None,
                   path: str | Path | None = None) -> dict:
    """The switching export of a set (``<set>/reports/switching.npz``, or ``path``), checked.

    Returns ``beta`` (N, T) float32, ``subgoal`` (N, T), ``length`` (N,), ``switches`` and ``changes`` (N,)
    per episode, ``metrics`` (the alignment over all episodes), ``checkpoint`` and ``dstar_ties`` (str or None:
    the D* tie-break the episodes were made with, when the export records it), ``path``, and
    ``layout`` (N, G, G) (G the side of a known world: 7 for grid7, 5 for grid5), ``pos`` (N, T+1), ``task``
    (N, 12) when the file has them (``has_grid``).
    """
    path = Path(path) if path is not None else report_path("switching", set_dir, env, root, ".npz")
    if not path.exists():
        raise _missing("switching", path, set_folder(set_dir, env, root), env)
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a readable .npz file ({e})") from None
    missing = [k for k in ("beta", "subgoal", "length") if k not in data]
    if missing:
        raise CheckpointError(f"{path}: missing arrays {missing} (expected docs/design.md's switching export)")
    beta, subgoal, length = data["beta"].astype(np.float32), data["subgoal"].astype(np.int64), data["length"]
    if beta.ndim != 2 or beta.shape[0] == 0 or subgoal.shape != beta.shape or length.shape != beta.shape[:1]:
        raise CheckpointError(f"{path}: expected beta (N, T), subgoal (N, T), length (N,) with N > 0; got "
                              f"{beta.shape}, {subgoal.shape}, {length.shape}")
    n, t_max = beta.shape
    length = length.astype(np.int64)
    if (length < 1).any() or (length > t_max).any():
        raise CheckpointError(f"{path}: episode lengths must lie in 1..{t_max}")
    if not np.isfinite(beta).all():
        raise CheckpointError(f"{path}: beta holds NaN or infinite values")
    out: dict = {"path": str(path), "beta": beta, "subgoal": subgoal, "length": length}
    from irl_core.envs.worlds import WORLDS
    sides = sorted({w.size for w in WORLDS.values()})
    side = data["layout"].shape[-1] if "layout" in data and data["layout"].ndim == 3 else sides[-1]
    shapes = {"layout": (n, side, side), "pos": (n, t_max + 1), "task": (n, 12)}
    present = [k for k in shapes if k in data]
    for k in present:
        if data[k].shape != shapes[k] or (k == "layout" and side not in sides):
            want = " or ".join(f"({n}, {g}, {g})" for g in sides) if k == "layout" else str(shapes[k])
            raise CheckpointError(f"{path}: {k} has shape {data[k].shape}, expected {want}")
        out[k] = data[k].astype(np.int64)
    out["has_grid"] = len(present) == len(shapes)
    if all(k in data and data[k].shape == () for k in SWITCHING_METRICS):
        out["metrics"] = {k: float(data[k]) for k in SWITCHING_METRICS}
    else:  # an export made before the metrics were stored
        out["metrics"] = switch_alignment(beta, subgoal, length)
    out["checkpoint"] = str(data["checkpoint"]) if "checkpoint" in data and data["checkpoint"].shape == () else None
    out["dstar_ties"] = str(data["dstar_ties"]) if "dstar_ties" in data and data["dstar_ties"].shape == () else None
    out["switches"], out["changes"] = episode_counts(beta, subgoal, length)
    return out


# --- α-sweep table (irl_core.discovery.run_sweep) -------------------------------------------------------
def _number(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _examples(ex) -> dict | None:
    """A row's example episodes, or None when absent or malformed."""
    if not isinstance(ex, dict):
        return None
    beta, subgoal, length = ex.get("beta"), ex.get("subgoal"), ex.get("length")
    if not (isinstance(beta, list) and isinstance(subgoal, list) and isinstance(length, list)):
        return None
    if not (len(beta) == len(subgoal) == len(length) > 0):
        return None
    try:
        eps = [(np.asarray(b, dtype=np.float32), np.asarray(g, dtype=np.int64), int(n))
               for b, g, n in zip(beta, subgoal, length)]
    except (TypeError, ValueError):
        return None
    if any(b.ndim != 1 or b.shape != g.shape or n < 1 or b.shape[0] < n or not np.isfinite(b).all() for b, g, n in eps):
        return None
    ties = ex.get("ties", "random")  # tables written before examples followed the point's tie-break: random
    return {"beta": [b[:n] for b, _, n in eps], "subgoal": [g[:n] for _, g, n in eps], "length": [n for *_, n in eps],
            "ties": ties if ties in ("random", "first") else "random"}


def _beside(table: Path, name) -> str | None:
    """A file a report names relative to its own folder, if it is there (and inside that folder)."""
    if not isinstance(name, str) or not name:
        return None
    folder = table.parent.resolve()
    p = (folder / name).resolve()
    return str(p) if p.is_file() and folder in p.parents else None


def load_sweep(set_dir: str | Path | None = None, env: str = "grid", root: str | Path | None = None) -> dict:
    """The rate–distortion table of a set (``<set>/reports/discovery.json``), checked.

    Returns the table with ``rows`` kept only when they have a variant and finite α, seed, rate and
    distortion (``invalid_rows`` counts the others). Each kept row gets ``aligned`` (F1 ≥
    :data:`SUBGOAL_ALIGNED_F1`), ``examples`` as arrays (None when the table has none for it) and
    ``switching``: the path of the point's switching export beside the table (None when it names none or the
    file is not there).
    """
    table = load_report("discovery", env, root, set_dir)
    path = report_path("discovery", set_dir, env, root)
    rows = table.get("rows")
    if not isinstance(rows, list):
        raise CheckpointError(f"{path}: no 'rows' list (expected the table of `python -m irl_core sweep --table`)")
    kept, invalid = [], 0
    for r in rows:
        if not isinstance(r, dict) or not isinstance(r.get("variant"), str):
            invalid += 1
            continue
        nums = {k: _number(r.get(k)) for k in ("alpha", "seed", "rate", "distortion")}
        if any(v is None for v in nums.values()):
            invalid += 1
            continue
        row = dict(r, **nums)
        row["seed"] = int(nums["seed"])
        row["rate"] = max(0.0, nums["rate"])  # a KL; older results carry float rounding's −1e-8 for a collapsed code
        for k in ("f1", "precision", "recall", "switches", "true_changes", "binary_fraction", "mean_length"):
            row[k] = _number(r.get(k))
        row["aligned"] = row["f1"] is not None and row["f1"] >= SUBGOAL_ALIGNED_F1
        row["examples"] = _examples(r.get("examples"))
        row["switching"] = _beside(path, r.get("switching"))
        kept.append(row)
    return dict(table, rows=kept, invalid_rows=invalid, path=str(path))


# --- one-sentence explanations of null results (pages) ---------------------------------------------------
def switching_null_note(metrics: dict, set_dir: str | Path | None = None, root: str | Path | None = None) -> str | None:
    """A sentence for a switching export whose gate does not follow the subgoals (F1 < 0.5), with the measured
    reason and where it is documented, pointing at another shipped gridworld set whose export does; None otherwise."""
    f1, switches, binary = metrics.get("f1", 0.0), metrics.get("switches", 0.0), metrics.get("binary_fraction", 0.0)
    if f1 >= 0.5:
        return None
    if switches < 1.05:
        why = f"it collapsed: β exceeds 0.5 {switches:.2f} times per episode, so one code is held for the whole episode"
    elif switches > 1.5 * (metrics.get("true_changes", 0.0) + 1):
        why = f"it over-switches ({switches:.2f} switches per episode for {metrics.get('true_changes', 0.0):.2f} subgoal changes)"
    else:
        why = f"its switches ({switches:.2f} per episode, {binary:.0%} quasi-binary) miss the subgoal changes"
    note = f"F1 {f1:.2f}: this metacontroller does not switch where the subgoal changes, because {why} (BENCHMARKS.md)."
    better = _best_other_set("switching", set_dir, root, lambda d: load_switching(d)["metrics"]["f1"], 0.9)
    if better:
        note += f" Choose **{better[0]}** in the sidebar: its metacontroller reaches F1 {better[1]:.2f}."
    return note


def aligned_counts(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """Per variant of a sweep table (``load_sweep``'s rows): (subgoal-aligned points, points)."""
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        a, n = out.get(r["variant"], (0, 0))
        out[r["variant"]] = (a + bool(r["aligned"]), n + 1)
    return out


def contrast_shown(counts: dict[str, tuple[int, int]]) -> bool | None:
    """Fig. 7's contrast: a larger share of frozen-base than of co-trained points aligned (None without both)."""
    (fa, fn), (ca, cn) = counts.get("frozen", (0, 0)), counts.get("cotrained", (0, 0))
    return fa / fn > ca / cn if fn and cn else None


def contrast_note(rows: list[dict]) -> str | None:
    """A sentence on whether a sweep table shows the paper's Fig. 7 contrast (frozen-base metacontrollers align
    with the subgoals, co-trained ones do not): the aligned count per variant; None without both variants."""
    counts = aligned_counts(rows)
    shown = contrast_shown(counts)
    if shown is None:
        return None
    (fa, fn), (ca, cn) = counts["frozen"], counts["cotrained"]
    measured = f"In this table {fa} of {fn} frozen and {ca} of {cn} co-trained points are subgoal-aligned (★)"
    if shown:
        return measured + ": the paper's contrast shows."
    return (measured + ": the paper's contrast does not show here — co-trained metacontrollers align at least as "
            "often as frozen ones over the α of this table (BENCHMARKS.md, \"Discovery on the 5×5 world\").")


def alignment_by_alpha(rows: list[dict], variants: tuple[str, ...] = ("frozen", "cotrained")) -> list[dict]:
    """Fig. 7's contrast α by α: for each α of a sweep table (ascending) and each variant, how many of its seeds
    are subgoal-aligned, and the median switch F1, rate and distortion over them (None where no seed has the
    value). Keys per row: ``alpha``, and per variant ``<v>_aligned``, ``<v>_seeds``, ``<v>_median_f1``,
    ``<v>_median_rate``, ``<v>_median_distortion``."""
    out = []
    for alpha in sorted({float(r["alpha"]) for r in rows}):
        row: dict = {"alpha": alpha}
        for v in variants:
            part = [r for r in rows if r["variant"] == v and float(r["alpha"]) == alpha]
            row[f"{v}_aligned"] = sum(bool(r["aligned"]) for r in part)
            row[f"{v}_seeds"] = len(part)
            for key in ("f1", "rate", "distortion"):
                xs = [float(r[key]) for r in part if r.get(key) is not None]
                row[f"{v}_median_{key}"] = float(np.median(xs)) if xs else None
        out.append(row)
    return out


def displacement_line(r2: dict, centroid_accuracy: float, chance: float = 0.25) -> str:
    """A sentence on what a latent map's codes carry: the subgoal (nearest-mean accuracy against ``chance``) and
    the displacement to the segment's target (cross-validated R² of a linear read-out, rows and columns)."""
    rows, cols = float(r2.get("rows", float("nan"))), float(r2.get("columns", float("nan")))
    line = (f"A linear read-out of the codes predicts the offset to the colour the segment heads for with R² "
            f"{rows:.2f} (rows) and {cols:.2f} (columns)")
    best = max((v for v in (rows, cols) if v == v), default=float("nan"))
    if best >= 0.3 and centroid_accuracy < chance + 0.1:
        return line + ": these codes say which way to go, not which colour."
    return line + "."


def axis_line(axis: dict) -> str:
    """A sentence on codes along a latent map's first axis: where the first colour entered lies, at each end."""
    cols, ranks = axis["column_offset"], axis["column_rank"]
    return (f"Codes along the map's horizontal axis, injected from t = 0 on {axis['layouts']} layouts: the colour the agent "
            f"enters first lies {cols[0]:+.1f} columns from its start at the left end and {cols[-1]:+.1f} at the right "
            f"end (column rank among the colours {ranks[0]:.1f} → {ranks[-1]:.1f}, 0 = leftmost).")


def rl_null_note(methods: dict, threshold: float = 0.05) -> str | None:
    """A sentence for shipped internal-RL curves that all stay near zero (final median greedy success < threshold)."""
    finals = {m: (v.get("eval_greedy", {}).get("median") or [0.0])[-1] for m, v in methods.items()}
    if not finals or max(finals.values()) >= threshold:
        return None
    best = max(finals, key=finals.get)
    return (f"Every shipped curve stays near 0 (best final held-out success {finals[best]:.3f}, {best}): no shipped "
            "metacontroller yet has codes that name subgoals, which internal RL needs — on grid5 its codes are hints "
            "that choose among the targets the base model already expects, and even a policy told where each next "
            "colour lies reaches it less than half the time with them (BENCHMARKS.md, \"What the shipped codes carry\" "
            "and \"Metacontrollers on the shipped base model\").")


def _best_other_set(name: str, set_dir, root, score, at_least: float) -> tuple[str, float] | None:
    """The shipped gridworld set other than ``set_dir`` whose report ``name`` scores highest (≥ ``at_least``)."""
    base = Path(root) if root is not None else checkpoints_root()
    here = Path(set_dir).resolve() if set_dir is not None else None
    best = None
    for s in SHIPPED_SETS["grid"]:
        d = base / s
        if here is not None and d.resolve() == here:
            continue
        try:
            v = float(score(d))
        except (CheckpointError, OSError, KeyError, ValueError):
            continue
        if v >= at_least and (best is None or v > best[1]):
            best = (s, v)
    return best
