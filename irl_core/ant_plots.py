"""Plotly drawings of ant-pinpad seen from above, in cell units: the world (4×4 cells, colours, the wall) and a
rollout's torso path with the colours entered in order and a marker for the current time step.

Cell ``(r, c)`` spans ``[c, c+1) × [r, r+1)`` with ``u`` to the right and ``v`` downwards (row 0 at the top),
as in ``envs/ant.py``, so the drawing is oriented as the top-down camera's video. Figures are built from plain
dicts (one ``go.Figure`` at the end); the path is one line trace per run of steps seeking the same colour,
drawn in that colour, so the plot shows which subgoal the ant pursued where. The marker is the *last* trace
(:func:`marker_trace`), which the Rollouts page moves in the browser without a rerun.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from irl_core.envs import ant as A
from irl_core.palette import COLOURS, COLOUR_NAMES, EMPTY, WALL, hex_to_rgb

MARKER_NAME = "ant"
_PATH_GREY = "#8a8a8a"


def text_on(colour: str) -> str:
    """Black or white, whichever reads better on ``colour``."""
    r, g, b = hex_to_rgb(colour)
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def colour_chip(colour: int, suffix: str = "") -> str:
    """An inline HTML chip for an ant colour (its number on its colour), with optional text after it."""
    bg = COLOURS[int(colour)]
    return (f"<span title='{COLOUR_NAMES[int(colour)]}' style='display:inline-block;min-width:1.6em;height:1.6em;"
            f"line-height:1.6em;margin:1px 2px;border-radius:4px;text-align:center;font-weight:600;"
            f"color:{text_on(bg)};background:{bg}'>{int(colour)}</span>{suffix}")


def task_chips(task: Sequence[int]) -> str:
    return "<span style='white-space:nowrap'>" + "".join(colour_chip(c) for c in task) + "</span>"


def _cells(layout: np.ndarray) -> tuple[list[dict], list[dict]]:
    """Shapes (one square per cell) and annotations (colour numbers) of a layout."""
    shapes, notes = [], []
    for r in range(A.G):
        for c in range(A.G):
            code = int(layout[r][c])
            fill = WALL if code == A.WALL_CODE else COLOURS[code] if code >= 0 else EMPTY
            shapes.append({"type": "rect", "x0": c, "x1": c + 1, "y0": r, "y1": r + 1, "fillcolor": fill,
                           "line": {"color": "#ffffff", "width": 2}, "layer": "below"})
            if code >= 0:
                notes.append({"x": c + 0.12, "y": r + 0.14, "text": str(code), "showarrow": False,
                              "font": {"color": text_on(fill), "size": 13}, "xanchor": "left", "yanchor": "top"})
            elif code == A.WALL_CODE:
                notes.append({"x": c + 0.5, "y": r + 0.5, "text": "wall", "showarrow": False,
                              "font": {"color": "#ffffff", "size": 12}})
    return shapes, notes


def _layout(shapes: list[dict], notes: list[dict], size: int, title: str | None) -> dict:
    axis = {"range": [-0.05, A.G + 0.05], "showgrid": False, "zeroline": False, "tickvals": list(range(A.G + 1)),
            "fixedrange": True}
    return {"width": size, "height": size + (30 if title else 0), "shapes": shapes, "annotations": notes,
            "xaxis": {**axis, "title": {"text": "u (columns)"}, "constrain": "domain"},
            "yaxis": {**axis, "range": [A.G + 0.05, -0.05], "scaleanchor": "x", "scaleratio": 1,
                      "title": {"text": "v (rows)"}},
            "margin": {"l": 40, "r": 10, "t": 40 if title else 10, "b": 40}, "plot_bgcolor": "#ffffff",
            "showlegend": False, "title": {"text": title} if title else None}


def world_figure(layout: np.ndarray, start_uv: Sequence[float] | None = None, size: int = 360,
                 title: str | None = None) -> go.Figure:
    """The 4×4 world; ``start_uv`` adds the ant's start (cell units)."""
    shapes, notes = _cells(np.asarray(layout))
    data = []
    if start_uv is not None:
        data.append({"type": "scatter", "x": [float(start_uv[0])], "y": [float(start_uv[1])], "mode": "markers+text",
                     "marker": {"size": 16, "color": "#000000", "symbol": "circle"}, "text": ["ant"],
                     "textposition": "bottom center", "name": "start", "hoverinfo": "name"})
    return go.Figure({"data": data, "layout": _layout(shapes, notes, size, title)})


def _runs(sought: Sequence[int]) -> list[tuple[int, int, int]]:
    """(first step, last step, colour) of maximal runs of the same sought colour."""
    out = []
    for t, c in enumerate(sought):
        if out and out[-1][2] == c:
            out[-1] = (out[-1][0], t, c)
        else:
            out.append((t, t, int(c)))
    return out


def path_figure(record: dict, size: int = 440, t: int = 0) -> go.Figure:
    """A rollout record (``ant_media.read_record``) drawn over its layout, the marker at time step ``t``."""
    uv = np.asarray(record["uv"], dtype=float)
    shapes, notes = _cells(np.asarray(record["layout"]))
    data: list[dict] = []
    sought = list(record.get("sought") or [])
    if len(sought) == len(uv) - 1 and sought:
        for lo, hi, c in _runs(sought):  # step k goes from uv[k] to uv[k+1]
            seg = uv[lo:hi + 2]
            data.append({"type": "scatter", "x": seg[:, 0].round(3).tolist(), "y": seg[:, 1].round(3).tolist(),
                         "mode": "lines", "line": {"color": COLOURS[c], "width": 3},
                         "name": f"seeking {c}", "hoverinfo": "name"})
    else:
        data.append({"type": "scatter", "x": uv[:, 0].round(3).tolist(), "y": uv[:, 1].round(3).tolist(),
                     "mode": "lines", "line": {"color": _PATH_GREY, "width": 3}, "name": "path"})
    data.append({"type": "scatter", "x": [uv[0, 0]], "y": [uv[0, 1]], "mode": "markers", "name": "start",
                 "marker": {"size": 11, "color": "#ffffff", "line": {"color": "#000000", "width": 2}},
                 "hoverinfo": "name"})
    entries = record.get("entries") or []
    if entries:
        ts = [int(e["t"]) for e in entries]
        data.append({"type": "scatter", "x": uv[ts, 0].round(3).tolist(), "y": uv[ts, 1].round(3).tolist(),
                     "mode": "markers+text", "name": "entered",
                     "text": [f"{i + 1}" if e["correct"] else "✗" for i, e in enumerate(entries)],
                     "textposition": "top center", "textfont": {"size": 14, "color": "#000000"},
                     "marker": {"size": 14, "color": [COLOURS[int(e["colour"])] for e in entries],
                                "symbol": ["circle" if e["correct"] else "x" for e in entries],
                                "line": {"color": "#000000", "width": 1.5}},
                     "hovertext": [f"t = {e['t']}: entered colour {e['colour']}" + ("" if e["correct"] else " (wrong)")
                                   for e in entries], "hoverinfo": "text"})
    t = int(np.clip(t, 0, len(uv) - 1))
    data.append({"type": "scatter", "x": [uv[t, 0]], "y": [uv[t, 1]], "mode": "markers", "name": MARKER_NAME,
                 "marker": {"size": 15, "color": "#000000", "symbol": "diamond", "line": {"color": "#ffffff", "width": 2}},
                 "hoverinfo": "name"})
    return go.Figure({"data": data, "layout": _layout(shapes, notes, size, None)})


def marker_trace(fig: go.Figure) -> int:
    """Index of the time-step marker in a :func:`path_figure`."""
    return next(i for i, tr in enumerate(fig.data) if tr.name == MARKER_NAME)
