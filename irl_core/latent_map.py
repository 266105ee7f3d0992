"""The latent map of a metacontroller's codes (docs/paper.md §5, the Steering page's map).

The latent map (:func:`latent_map`): the metacontroller runs deterministically (z̃ = μ, β = σ(logit)) on
held-out D* episodes; a *segment* is a maximal run of steps between switches (β_t > 0.5 for t ≥ 1; the
first segment starts at t = 0); its code is the integrated z at its last step and its label the majority
ground-truth subgoal over its steps. The codes are projected to 2-D with PCA, and a 2-D point (x, y) maps
back to the code z = mean + [x, y] @ components (the point of the code plane closest to the codes).

:func:`code_steering` injects each subgoal's centroid code from t = 0 (with :func:`irl_core.steering.steer`) and
counts how often the agent enters that subgoal's colour first; :func:`axis_steering` injects codes along the map's
first axis and measures where the colour the agent enters first lies (its column and row offset from the start).

:func:`code_displacement` asks what a code carries when it does not name the subgoal: how well a linear read-out
of the segment codes predicts the displacement (rows, columns) from the agent to the colour the segment is
heading for, measured at the segment's first step (cross-validated R²). A code that reads "go left or right"
scores high on columns and at chance on the subgoal.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from irl_core.controllers import lower
from irl_core.data import heldout_episodes, training_tensors
from irl_core.discovery import centroid_accuracy, segments
from irl_core.envs.grid import colour_cells
from irl_core.envs.worlds import GridWorld
from irl_core.metacontroller import MetaController
from irl_core.models.transformer import GridTransformer
from irl_core.steering import steer

LATENT_MAP_KIND = "latent-map"


@torch.no_grad()
def segment_codes(model: GridTransformer, meta: MetaController, layer: int, episodes: dict[str, torch.Tensor],
                  batch: int = 256, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """The integrated code at the last step of every segment, with its majority subgoal.

    Returns ``codes`` (S, n_z) float32, ``labels`` (S,) int (−1 if the segment has no label), ``purity``
    (S,) (fraction of the segment's steps with the majority label), ``episode``, ``first``, ``last`` (S,) int.
    """
    was = meta.training, model.training
    meta.eval(), model.eval()
    T = int(episodes["length"].max())
    rows = {k: [] for k in ("codes", "labels", "purity", "episode", "first", "last")}
    try:
        for i0 in range(0, episodes["length"].shape[0], batch):
            part = {k: v[i0:i0 + batch] for k, v in episodes.items()}
            obs, actions = training_tensors(part, model.world, T)
            mask = actions >= 0
            out = meta(lower(model, obs[:, :-1], layer), mask, sample=False)
            z, beta = out.z.float().cpu().numpy(), out.beta.float().cpu().numpy()
            sub = part["subgoal"][:, :T].cpu().numpy()
            for b in range(z.shape[0]):
                n = int(part["length"][b])
                for first, last in segments(beta[b], n, threshold):
                    lab = sub[b, first:last + 1]
                    lab = lab[lab >= 0]
                    if len(lab):
                        counts = np.bincount(lab)
                        label, purity = int(counts.argmax()), float(counts.max() / len(lab))
                    else:
                        label, purity = -1, 0.0
                    rows["codes"].append(z[b, last])
                    rows["labels"].append(label)
                    rows["purity"].append(purity)
                    rows["episode"].append(i0 + b)
                    rows["first"].append(first)
                    rows["last"].append(last)
    finally:
        meta.train(was[0]), model.train(was[1])
    n_z = meta.cfg.n_z
    return {"codes": np.asarray(rows["codes"], dtype=np.float32).reshape(-1, n_z),
            "labels": np.asarray(rows["labels"], dtype=np.int64), "purity": np.asarray(rows["purity"], dtype=np.float64),
            "episode": np.asarray(rows["episode"], dtype=np.int64), "first": np.asarray(rows["first"], dtype=np.int64),
            "last": np.asarray(rows["last"], dtype=np.int64)}


@dataclass
class Projection:
    """A 2-D plane in code space: ``z = mean + xy @ components``, ``xy = (z − mean) @ componentsᵀ``."""

    mean: np.ndarray        # (n_z,)
    components: np.ndarray  # (2, n_z), orthonormal rows (a zero row when fewer than 2 directions exist)

    def to_code(self, xy) -> np.ndarray:
        return self.mean + np.asarray(xy, dtype=np.float64) @ self.components

    def to_xy(self, z) -> np.ndarray:
        return (np.asarray(z, dtype=np.float64) - self.mean) @ self.components.T

    @classmethod
    def from_dict(cls, d: dict) -> "Projection":
        mean, comp = np.asarray(d["mean"], dtype=np.float64), np.asarray(d["components"], dtype=np.float64)
        if mean.ndim != 1 or comp.shape != (2, mean.shape[0]):
            raise ValueError(f"a projection needs mean (n_z,) and components (2, n_z); got {mean.shape}, {comp.shape}")
        return cls(mean, comp)


def fit_projection(codes: np.ndarray) -> tuple[Projection, np.ndarray]:
    """PCA (scikit-learn) of codes (S, n_z) to 2-D: the projection and the explained-variance ratios (2,)."""
    from sklearn.decomposition import PCA
    codes = np.asarray(codes, dtype=np.float64)
    S, n_z = codes.shape
    if S == 0:
        raise ValueError("no segment codes to project")
    k = min(2, n_z, S)
    comp, ratio = np.zeros((2, n_z)), np.zeros(2)
    if S >= 2 and codes.var(0).sum() > 0:
        pca = PCA(n_components=k, svd_solver="full").fit(codes)
        comp[:k] = pca.components_
        ratio[:k] = np.nan_to_num(pca.explained_variance_ratio_)
        mean = pca.mean_
    else:
        mean = codes.mean(0)
    return Projection(mean, comp), ratio


def segment_displacement(episodes: dict[str, torch.Tensor], episode: np.ndarray, first: np.ndarray, world: GridWorld
                         ) -> np.ndarray:
    """(S, 2): for each segment (its episode and first step), the (row, column) offset from the agent's cell at
    that step to the cell of the colour the expert is heading for then (the task's colour at that progress)."""
    cells, size = colour_cells(episodes["layout"], world).cpu().numpy(), world.size
    progress = episodes["progress"].cpu().numpy()[episode, first].clip(min=0)
    target = cells[episode, episodes["task"].cpu().numpy()[episode, progress]]
    agent = episodes["pos"].cpu().numpy()[episode, first]
    return np.stack([target // size - agent // size, target % size - agent % size], 1).astype(np.float64)


def cross_validated_r2(x: np.ndarray, y: np.ndarray, folds: int = 3) -> float:
    """R² of an affine least-squares read-out of ``y`` (S,) from ``x`` (S, d), each fold predicted by a fit on
    the others (contiguous folds); 0 for a read-out no better than the mean, NaN with too few rows."""
    n = len(y)
    if n < 2 * folds or np.var(y) == 0:
        return float("nan")
    xa = np.concatenate([x, np.ones((n, 1))], 1)
    pred = np.empty(n)
    for idx in np.array_split(np.arange(n), folds):
        train = np.setdiff1d(np.arange(n), idx)
        w, *_ = np.linalg.lstsq(xa[train], y[train], rcond=None)
        pred[idx] = xa[idx] @ w
    return float(1 - ((pred - y) ** 2).mean() / np.var(y))


def code_displacement(codes: np.ndarray, displacement: np.ndarray) -> dict[str, float]:
    """How much of the displacement to the segment's target (rows, columns) the codes carry linearly."""
    return {"rows": cross_validated_r2(codes, displacement[:, 0]), "columns": cross_validated_r2(codes, displacement[:, 1])}


def file_digest(path) -> str:
    """sha256 of a file (to tell whether a latent map was made from this metacontroller)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def map_bounds(points: np.ndarray) -> dict[str, list[float]]:
    """The map's axis ranges: the points' extent with 15% room on each side to pick codes a little beyond the
    data; the second axis spans at least a quarter of the first's range, so that codes spread along one axis
    only are drawn as a line, not stretched into a cloud."""
    lo, hi = points.min(0), points.max(0)
    pad = np.where(hi - lo > 0, 0.15 * (hi - lo), 0.5)
    lo, hi = lo - pad, hi + pad
    half, mid = max(hi[1] - lo[1], 0.25 * (hi[0] - lo[0])) / 2, (lo[1] + hi[1]) / 2
    return {"x": [float(lo[0]), float(hi[0])], "y": [float(mid - half), float(mid + half)]}


def latent_map(model: GridTransformer, meta: MetaController, layer: int, episodes: int = 500, seed: int = 0,
               threshold: float = 0.5) -> dict:
    """The 2-D map of discovered segment codes on ``episodes`` held-out D* episodes (see the module docstring).

    Returns a JSON-ready dict: ``points`` (S, 2), ``labels`` (S,) subgoal 0..3 (−1 unlabelled), ``codes``
    (S, n_z), ``purity``, ``projection`` {mean, components}, per-subgoal ``centroids`` (2-D and n_z-d),
    ``explained_variance_ratio``, ``displacement_r2`` (:func:`code_displacement`: {rows, columns}), ``bounds`` and
    summary numbers.
    """
    if episodes <= 0:
        raise ValueError(f"the number of episodes must be positive, got {episodes}")
    dev = next(model.parameters()).device
    ep = heldout_episodes(episodes, seed, model.world, dev)
    seg = segment_codes(model, meta, layer, ep, threshold=threshold)
    proj, ratio = fit_projection(seg["codes"])
    pts = proj.to_xy(seg["codes"])
    labels = seg["labels"]
    centroids = {}
    for g in sorted(set(int(x) for x in labels if x >= 0)):
        m = labels == g
        centroids[str(g)] = {"xy": pts[m].mean(0).tolist(), "code": seg["codes"][m].mean(0).astype(float).tolist(),
                             "count": int(m.sum())}
    known = labels >= 0
    displacement = segment_displacement(ep, seg["episode"][known], seg["first"][known], model.world)
    return {
        "kind": LATENT_MAP_KIND, "n_z": int(meta.cfg.n_z), "layer": int(layer), "episodes": int(episodes), "seed": int(seed),
        "threshold": threshold, "n_segments": int(len(labels)),
        "segments_per_episode": float(len(labels) / episodes),
        "mean_purity": float(seg["purity"][known].mean()) if known.any() else float("nan"),
        "centroid_accuracy": centroid_accuracy(seg["codes"], labels),
        "explained_variance_ratio": ratio.tolist(),
        "displacement_r2": code_displacement(seg["codes"][known].astype(np.float64), displacement),
        "projection": {"mean": proj.mean.tolist(), "components": proj.components.tolist()},
        "bounds": map_bounds(pts),
        "points": np.round(pts, 5).tolist(), "labels": labels.tolist(),
        "codes": np.round(seg["codes"].astype(np.float64), 6).tolist(),
        "purity": np.round(seg["purity"], 4).tolist(),
        "episode": seg["episode"].tolist(), "first": seg["first"].tolist(), "last": seg["last"].tolist(),
        "centroids": centroids,
    }


def code_steering(model: GridTransformer, meta: MetaController, layer: int, codes: dict, layouts: int = 100,
                  task: str = "heldout") -> dict:
    """Does a code send the agent to its subgoal? For each ``codes[g]`` (n_z floats, e.g. subgoal g's centroid),
    greedy rollouts controlled from t = 0 on the layouts of seeds ``0..layouts−1``: the fraction of layouts
    where the first colour the agent enters is g (colours and subgoals coincide on the 4-colour worlds; on
    the paper's grid, subgoal g is the pair 2g, 2g+1). Returns ``{"layouts", "first_colour": {g: fraction},
    "none": {g: fraction of layouts where no colour is entered}}``.
    """
    if layouts <= 0:
        raise ValueError(f"the number of layouts must be positive, got {layouts}")
    subgoal_of = model.world.tasks.subgoal_of_colour
    first, none = {}, {}
    for g, z in codes.items():
        hits = miss = 0
        for seed in range(layouts):
            r = steer(model, layer, list(map(float, z)), meta=meta, layout_seed=seed, task=task, end_on_wrong=False)
            if not r.colours:
                miss += 1
            elif int(subgoal_of(r.colours[0])) == int(g):
                hits += 1
        first[str(g)], none[str(g)] = hits / layouts, miss / layouts
    return {"layouts": int(layouts), "first_colour": first, "none": none}


def axis_steering(model: GridTransformer, meta: MetaController, layer: int, report: dict, points: int = 5,
                  layouts: int = 100, task: str = "heldout") -> dict:
    """Where do codes along the map's first axis send the agent? ``points`` codes at evenly spaced quantiles
    (10%…90%) of the segments' first map coordinate (second coordinate 0), each injected from t = 0 in greedy
    rollouts on the layouts of seeds ``0..layouts−1``. For the first colour entered: its column minus the start's
    (``column_offset``, mean per code), its row offset (``row_offset``) and its column rank among the layout's
    colours (``column_rank``, 0 = leftmost, ties shared), with ``none`` the fraction of layouts where no colour is
    entered. Returns those lists beside the map ``x`` of each code and ``layouts``."""
    if layouts <= 0 or points < 2:
        raise ValueError(f"axis steering needs ≥ 1 layout and ≥ 2 points, got {layouts} and {points}")
    proj = Projection.from_dict(report["projection"])
    xs = np.quantile(np.asarray(report["points"], dtype=np.float64)[:, 0], np.linspace(0.1, 0.9, points))
    size = model.world.size
    out = {"layouts": int(layouts), "x": [float(x) for x in xs], "column_offset": [], "row_offset": [],
           "column_rank": [], "none": []}
    for x in xs:
        z = proj.to_code([[x, 0.0]])[0]
        cols, rows, ranks, miss = [], [], [], 0
        for seed in range(layouts):
            r = steer(model, layer, list(map(float, z)), meta=meta, layout_seed=seed, task=task, end_on_wrong=False)
            if not r.colours:
                miss += 1
                continue
            cell = int(np.flatnonzero(np.asarray(r.layout) == r.colours[0])[0])
            colour_cols = np.flatnonzero(np.asarray(r.layout) >= 0) % size
            cols.append(cell % size - r.start % size)
            rows.append(cell // size - r.start // size)
            ranks.append(float((colour_cols < cell % size).sum() + 0.5 * ((colour_cols == cell % size).sum() - 1)))
        for key, vals in (("column_offset", cols), ("row_offset", rows), ("column_rank", ranks)):
            out[key].append(float(np.mean(vals)) if vals else float("nan"))
        out["none"].append(miss / layouts)
    return out


def validate_latent_map(report: dict) -> Projection:
    """Check a latent-map report's shape; returns its projection (ValueError naming the problem otherwise)."""
    if not isinstance(report, dict) or report.get("kind") != LATENT_MAP_KIND:
        raise ValueError("not a latent-map report (kind != 'latent-map')")
    try:
        proj = Projection.from_dict(report["projection"])
        pts, labels = np.asarray(report["points"], dtype=np.float64), np.asarray(report["labels"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed latent-map report ({type(e).__name__}: {e})") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or labels.shape != (pts.shape[0],):
        raise ValueError(f"latent-map points must be (S, 2) with S labels; got {pts.shape} and {labels.shape}")
    if proj.mean.shape[0] != int(report.get("n_z", proj.mean.shape[0])):
        raise ValueError("latent-map projection does not match its n_z")
    return proj
