"""What a gridworld checkpoint set shows of the paper: one row per effect, measured from the set's own reports.

Each row names the paper's figure, what the paper shows there (docs/paper.md), the yardstick this project holds
the effect to (the targets of its issues), what the set's report measures, and whether that meets the yardstick
(``shown``: True or False; None when the set has no such report yet, or it cannot be read). Nothing here is
typed in: a row is computed from the report each time, so a set rebuilt or retrained says what it now shows.

Choices (README "Choices"):
* The yardsticks are the project's targets, which turn the paper's figures into numbers where the paper gives
  none: a mid-depth subgoal probe ≥ shuffled control + 0.15 and above the embedding (Fig. 3/A1); ground-truth
  controllers at L/2 solving the held-out task in ≥ 0.6 of episodes (Fig. 4/A2 show 0.5–0.7); switch F1 ≥ 0.9
  with ≥ 90% of β values below 0.1 or above 0.9 (Figs. 5–6, "quasi-binary, sparsely-switching"); each subgoal's
  mean code sending the agent to its colour first in ≥ 80% of layouts (the latent codes "name" subgoals); internal
  RL's median held-out success ≥ 0.8 with raw-action RL below half of it (Fig. 8).
* Fig. 7's contrast counts as shown when a larger share of the frozen-base points of the α sweep are
  subgoal-aligned than of the co-trained ones, the criterion the Rate–distortion page states
  (:func:`irl_core.reports.contrast_note`), so the two pages never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from irl_core.checkpoints import CheckpointError
from irl_core.palette import METHOD_LABELS
from irl_core.reports import (SUBGOAL_ALIGNED_F1, MissingReport, aligned_counts, command_for, contrast_shown,
                              load_report, load_sweep, load_switching)

PROBE_MARGIN = 0.15
CONTROLLER_SUCCESS = 0.6
SWITCH_F1 = SUBGOAL_ALIGNED_F1  # a switching export is judged as a sweep point's ★
QUASI_BINARY = 0.9
STEERING = 0.8
RL_SUCCESS = 0.8


@dataclass(frozen=True)
class Finding:
    """One effect of the paper and what a set's report measures of it."""

    figure: str           # where the paper shows it
    effect: str           # what it shows
    yardstick: str        # what counts as shown here
    measured: str         # what the set's report says, in one line
    shown: bool | None    # None: not measured (no report, or an unreadable one)
    source: str           # the report read (``reports/<file>``), or the command that makes the missing one
    missing: bool = False  # the report is not there yet (``source`` is then its command)


def _probe(set_dir: Path) -> tuple[str, bool]:
    r = load_report("probes", set_dir=set_dir)
    layers, acc, ctrl = r["layers"], r["subgoal_probe"]["accuracy"], r["subgoal_probe"]["control"]
    mid = layers.index(max(layers) // 2)
    margin = acc[mid] - ctrl[mid]
    return (f"layer {layers[mid]}: {acc[mid]:.2f} against {ctrl[mid]:.2f} with shuffled labels ({margin:+.2f}); "
            f"embedding {acc[0]:.2f}"), margin >= PROBE_MARGIN and acc[mid] > acc[0]


def _controllers(set_dir: Path) -> tuple[str, bool]:
    r = load_report("controllers", set_dir=set_dir)
    success = float(r["success_rate"])
    return (f"{success:.3f} of {int(r['episodes'])} held-out episodes (layer {r['layer']})",
            success >= CONTROLLER_SUCCESS)


def _switching(set_dir: Path) -> tuple[str, bool]:
    m = load_switching(set_dir)["metrics"]
    f1, binary = float(m["f1"]), float(m["binary_fraction"])
    return (f"F1 {f1:.3f}, {binary:.1%} of β quasi-binary, {float(m['switches']):.2f} switches for "
            f"{float(m['true_changes']):.2f} subgoal changes per episode"), f1 >= SWITCH_F1 and binary >= QUASI_BINARY


def _contrast(set_dir: Path) -> tuple[str, bool]:
    rows = load_sweep(set_dir)["rows"]
    counts = aligned_counts(rows)
    shown = contrast_shown(counts)
    if shown is None:
        raise ValueError("the sweep table lacks the frozen or the co-trained variant")
    (fa, fn), (ca, cn) = counts["frozen"], counts["cotrained"]
    alphas = sorted({float(r["alpha"]) for r in rows})
    return (f"subgoal-aligned: {fa} of {fn} frozen, {ca} of {cn} co-trained points (α {alphas[0]:g}–{alphas[-1]:g})",
            shown)


def _steering(set_dir: Path) -> tuple[str, bool]:
    r = load_report("latent_map", set_dir=set_dir)
    if "steering" not in r:
        raise ValueError("this latent map was made without steering (latent-map --steer-layouts N)")
    first = {int(g): float(v) for g, v in r["steering"]["first_colour"].items()}
    rates = ", ".join(f"{v:.2f}" for _, v in sorted(first.items()))
    return (f"{rates} for subgoals {', '.join(str(g) for g in sorted(first))} "
            f"({r['steering']['layouts']} layouts each; chance ≈ {1 / len(first):.2f})"), min(first.values()) >= STEERING


def _internal_rl(set_dir: Path) -> tuple[str, bool]:
    methods = load_report("internal_rl", set_dir=set_dir)["methods"]

    def final(m):
        curve = methods[m]["eval_greedy"]
        return float(curve["median"][-1]), int(curve["episodes"][-1])

    ours, episodes = final("internal-rl")
    raw = final("raw-action")[0] if "raw-action" in methods else None
    others = {m: final(m)[0] for m in methods if m != "internal-rl"}
    line = f"internal RL {ours:.3f} after {episodes:,} episodes"
    if others:
        line += "; " + ", ".join(f"{METHOD_LABELS.get(m, m)} {v:.3f}" for m, v in sorted(others.items()))
    return line, ours >= RL_SUCCESS and raw is not None and raw < ours / 2


ROWS: tuple[tuple[str, str, str, str, Callable[[Path], tuple[str, bool]]], ...] = (
    ("Fig. 3, A1", "the pretrained model's residual stream holds the subgoal, linearly, from mid-depth",
     f"mid-depth subgoal probe ≥ shuffled control + {PROBE_MARGIN}, above the embedding", "probes.json", _probe),
    ("Fig. 4, A2", "subgoal controllers at mid-depth, switched in order, solve the held-out task (0.5–0.7)",
     f"held-out success ≥ {CONTROLLER_SUCCESS}", "controllers.json", _controllers),
    ("Figs. 5, 6, A3", "the metacontroller's gate switches, quasi-binary and sparse, where the subgoal changes",
     f"switch F1 ≥ {SWITCH_F1}, ≥ {QUASI_BINARY:.0%} of β below 0.1 or above 0.9", "switching.npz", _switching),
    ("Fig. 7", "a frozen base model gives subgoal-aligned switching over a band of α; co-training does not",
     "a larger share of frozen than of co-trained sweep points aligned", "discovery.json", _contrast),
    ("§5.4, Fig. A4", "a subgoal's latent code, injected, sends the agent to that subgoal",
     f"each subgoal's mean code: its colour first in ≥ {STEERING:.0%} of layouts", "latent_map.json", _steering),
    ("Fig. 8", "internal RL solves the held-out task; RL on raw actions and the other baselines fail",
     f"internal RL's median success ≥ {RL_SUCCESS}, raw-action RL below half of it", "internal_rl.json", _internal_rl),
)


def scorecard(set_dir: str | Path) -> list[Finding]:
    """One :class:`Finding` per effect of :data:`ROWS`, measured from ``<set_dir>/reports``."""
    set_dir = Path(set_dir)
    out = []
    for figure, effect, yardstick, report, measure in ROWS:
        source, missing = f"reports/{report}", False
        try:
            measured, shown = measure(set_dir)
        except MissingReport:
            measured, shown, missing = "not measured", None, True
            source = command_for(Path(report).stem, set_dir)
        except KeyError as e:
            measured, shown = f"not measured: {source} has no {e}", None
        except (CheckpointError, IndexError, TypeError, ValueError) as e:
            measured, shown = f"not measured: {e}", None
        out.append(Finding(figure, effect, yardstick, measured, None if shown is None else bool(shown), source, missing))
    return out
