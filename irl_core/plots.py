"""Plotly figures shared by the app's pages, drawn with the shared palette."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from irl_core.envs.grid import G, WALL
from irl_core.palette import AGENT, COLOURS, EMPTY, WALL as WALL_COLOUR, hex_to_rgb


def text_colour(background: str) -> str:
    """Black on light colours (yellow, cyan), white on dark ones, for legible labels."""
    r, g, b = hex_to_rgb(background)
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def grid_figure(layout: np.ndarray, agent: int | None = None, path: Sequence[int] | None = None,
                size: int = 360) -> go.Figure:
    """A gridworld layout ((49,) or (7,7) codes) with its colours numbered, the walls, the agent and a path."""
    layout = np.asarray(layout).reshape(G, G)
    fig = go.Figure()
    for r in range(G):
        for c in range(G):
            code = int(layout[r, c])
            fill = COLOURS[code] if code >= 0 else (WALL_COLOUR if code == WALL else EMPTY)
            fig.add_shape(type="rect", x0=c, x1=c + 1, y0=r, y1=r + 1, fillcolor=fill, layer="below",
                          line=dict(color="#cccccc", width=1))
            if code >= 0:
                fig.add_annotation(x=c + 0.5, y=r + 0.5, text=str(code), showarrow=False,
                                   font=dict(size=16, color=text_colour(fill)))
    if path is not None and len(path) > 1:
        cells = np.asarray(path)
        fig.add_trace(go.Scatter(x=cells % G + 0.5, y=cells // G + 0.5, mode="lines", line=dict(color="black", width=3),
                                 opacity=0.5, name="path", hoverinfo="skip"))
    if agent is not None:
        fig.add_trace(go.Scatter(x=[agent % G + 0.5], y=[agent // G + 0.5], mode="markers", name="agent",
                                 marker=dict(size=22, color=AGENT, symbol="circle", line=dict(color="white", width=2))))
    fig.update_xaxes(range=[0, G], visible=False, constrain="domain")
    fig.update_yaxes(range=[G, 0], visible=False, scaleanchor="x")
    fig.update_layout(width=size, height=size, margin=dict(l=5, r=5, t=5, b=5), showlegend=False, plot_bgcolor="white")
    return fig


def task_html(task: Sequence[int]) -> str:
    """A task as a row of coloured, numbered chips (for st.markdown with unsafe_allow_html)."""
    chips = "".join(
        f"<span style='display:inline-block;width:1.7em;height:1.7em;line-height:1.7em;margin:1px;border-radius:4px;"
        f"text-align:center;color:{text_colour(COLOURS[c])};font-weight:600;background:{COLOURS[c]}'>{c}</span>" for c in task)
    return f"<span style='white-space:nowrap'>{chips}</span>"
