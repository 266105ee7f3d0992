"""One colour palette shared by the environments' drawings, the app's charts and their legends.

Colour ``i`` of the gridworld (0..7) and of the ant (0..3, the first four) is ``COLOURS[i]``; the
abstract actions of the paper's grid (pairs A=0-1, B=2-3, C=4-5, D=6-7) use ``SUBGOAL_COLOURS``; where a
subgoal is a colour (``grid5``, the ant) it is drawn in that colour (:func:`subgoal_palette`).
"""
from __future__ import annotations

COLOURS: tuple[str, ...] = (
    "#e6194b",  # 0 red
    "#3cb44b",  # 1 green
    "#4363d8",  # 2 blue
    "#ffe119",  # 3 yellow
    "#f58231",  # 4 orange
    "#911eb4",  # 5 purple
    "#42d4f4",  # 6 cyan
    "#f032e6",  # 7 magenta
)
COLOUR_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple", "cyan", "magenta")
WALL = "#404040"
EMPTY = "#f4f4f4"
AGENT = "#000000"
SUBGOAL_NAMES: tuple[str, ...] = ("A (0-1)", "B (2-3)", "C (4-5)", "D (6-7)")
SUBGOAL_COLOURS: tuple[str, ...] = ("#8dd3c7", "#fdb462", "#bebada", "#fb8072")


def subgoal_palette(kind: str = "pair") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(names, colours)`` of the subgoals: the pairs A..D (``kind="pair"``) or the colours 0..3 (``"colour"``)."""
    if kind == "pair":
        return SUBGOAL_NAMES, SUBGOAL_COLOURS
    return tuple(f"{c} ({COLOUR_NAMES[c]})" for c in range(4)), COLOURS[:4]


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """``"#e6194b"`` → ``(230, 25, 75)``."""
    colour = colour.lstrip("#")
    return tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def hex_to_rgba01(colour: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """``"#e6194b"`` → RGBA floats in [0, 1] (MuJoCo materials)."""
    r, g, b = hex_to_rgb(colour)
    return (r / 255, g / 255, b / 255, alpha)

# the methods of Fig. 8 (internal RL and its baselines)
METHOD_COLOURS: dict[str, str] = {"internal-rl": "#4363d8", "raw-action": "#808080", "beta1": "#f58231",
                                  "cotrained": "#911eb4", "compile": "#3cb44b"}
METHOD_LABELS: dict[str, str] = {"internal-rl": "internal RL", "raw-action": "raw-action RL", "beta1": "internal RL, β ≡ 1",
                                 "cotrained": "internal RL, co-trained metacontroller", "compile": "CompILE"}
