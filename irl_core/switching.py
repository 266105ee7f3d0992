"""How well a metacontroller's switching gate β follows the subgoals (numpy only: the writer,
:func:`irl_core.discovery.export_switching`, and the reader, :mod:`irl_core.reports`, share it).

Switching alignment (our metric; the paper labels alignment by hand): a *switch* is a step t ≥ 1 (0-based)
with β_t > 0.5; a *ground-truth change* is a step t ≥ 1 whose subgoal differs from step t−1's. Switches
are matched one-to-one to changes within ±1 step; precision = matched switches / switches, recall =
matched changes / changes, pooled over all episodes. The first step is left out (it starts the first
subgoal in every episode) but a switch there still counts in ``switches``. "Quasi-binary" = the fraction
of valid steps with β < 0.1 or β > 0.9.
"""
from __future__ import annotations

import numpy as np

SWITCHING_METRICS = ("action_nll", "kl", "precision", "recall", "f1", "binary_fraction", "switches", "true_changes",
                     "mean_length")  # the scalars of a switching export (docs/design.md)


def switch_alignment(beta: np.ndarray, subgoal: np.ndarray, length: np.ndarray, threshold: float = 0.5,
                     tolerance: int = 1) -> dict[str, float]:
    """Precision / recall / F1 of switch times against subgoal changes (module docstring).

    ``beta`` (N, T) float, ``subgoal`` (N, T) int, ``length`` (N,) valid steps per episode.
    """
    beta, subgoal, length = np.asarray(beta, dtype=np.float64), np.asarray(subgoal), np.asarray(length)
    if beta.shape != subgoal.shape or beta.ndim != 2 or length.shape != beta.shape[:1]:
        raise ValueError(f"expected beta (N, T), subgoal (N, T), length (N,); got {beta.shape}, {subgoal.shape}, {length.shape}")
    n_pred = n_true = matched_pred = matched_true = 0
    switches, binary, steps = 0, 0, 0
    for b, g, n in zip(beta, subgoal, length):
        n = int(n)
        b, g = b[:n], g[:n]
        on = b > threshold
        switches += int(on.sum())
        binary += int(((b < 0.1) | (b > 0.9)).sum())
        steps += n
        pred = [t for t in range(1, n) if on[t]]
        true = [t for t in range(1, n) if g[t] != g[t - 1]]
        n_pred += len(pred)
        n_true += len(true)
        free = set(pred)
        for t in true:  # exact match first, then the earlier neighbour, then the later one
            for c in [t] + [t + s * d for d in range(1, tolerance + 1) for s in (-1, 1)]:
                if c in free:
                    free.discard(c)
                    matched_true += 1
                    break
    matched_pred = matched_true  # the matching is one-to-one
    precision = matched_pred / n_pred if n_pred else float(n_true == 0)
    recall = matched_true / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "binary_fraction": binary / max(1, steps), "switches": switches / max(1, len(length)),
            "true_changes": n_true / max(1, len(length)), "mean_length": steps / max(1, len(length))}
