"""Plotly figures shared by the app's pages, drawn with the shared palette."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from irl_core.envs.grid import G, WALL
from irl_core.palette import (AGENT, COLOURS, EMPTY, SUBGOAL_COLOURS, SUBGOAL_NAMES, WALL as WALL_COLOUR,
                             hex_to_rgb)


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


def _segments(subgoal: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal subgoal: (start, end exclusive, subgoal)."""
    out, start = [], 0
    for t in range(1, len(subgoal) + 1):
        if t == len(subgoal) or subgoal[t] != subgoal[start]:
            out.append((start, t, int(subgoal[start])))
            start = t
    return out


def switching_timeline(beta: Sequence[float], subgoal: Sequence[int], length: int | None = None,
                       t: int | None = None, threshold: float = 0.5, height: int = 260, title: str | None = None,
                       legend: bool = True) -> go.Figure:
    """Fig. 6 / A3: the gate β_t over time on bands coloured by the ground-truth subgoal (colour pair).

    ``beta``, ``subgoal`` per step (cut to ``length``); ``t`` draws a marker line at that step; steps with
    β > ``threshold`` (switches) are drawn as diamonds.
    """
    n = len(beta) if length is None else int(length)
    beta, subgoal = np.asarray(beta, dtype=float)[:n], np.asarray(subgoal)[:n]
    steps = np.arange(n)
    fig = go.Figure()
    for start, end, g in _segments(subgoal):
        if g < 0:
            continue
        fig.add_shape(type="rect", x0=start - 0.5, x1=end - 0.5, y0=0, y1=1, xref="x", yref="paper",
                      fillcolor=SUBGOAL_COLOURS[g % len(SUBGOAL_COLOURS)], opacity=0.55, layer="below", line_width=0)
        fig.add_annotation(x=(start + end - 1) / 2, y=1.0, yref="paper", yanchor="top", showarrow=False,
                           text=SUBGOAL_NAMES[g % len(SUBGOAL_NAMES)].split()[0], font=dict(size=12, color="#333333"))
    for g in sorted({int(x) for x in subgoal if x >= 0}) if legend else []:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"subgoal {SUBGOAL_NAMES[g]}",
                                 marker=dict(symbol="square", size=12, color=SUBGOAL_COLOURS[g])))
    fig.add_hline(y=threshold, line=dict(color="#777777", dash="dot", width=1))
    on = beta > threshold
    fig.add_trace(go.Scatter(x=steps, y=beta, mode="lines+markers", name="β<sub>t</sub>", line=dict(color=AGENT, width=2),
                             marker=dict(size=np.where(on, 11, 5), symbol=np.where(on, "diamond", "circle"),
                                         color=AGENT),
                             hovertemplate="t=%{x}<br>β=%{y:.3f}<extra></extra>", showlegend=legend))
    if t is not None and 0 <= t <= n:
        fig.add_vline(x=t, line=dict(color="#d62728", width=2))
    fig.update_xaxes(title_text="time step t", range=[-0.5, max(n, t + 1 if t is not None else 0) - 0.5],
                     zeroline=False, showgrid=False)
    fig.update_yaxes(title_text="β<sub>t</sub>", range=[-0.05, 1.12], tickvals=[0, 0.5, 1], showgrid=False)
    fig.update_layout(height=height, margin=dict(l=50, r=10, t=35 if title else 10, b=40), plot_bgcolor="white",
                      title=dict(text=title, font=dict(size=14)) if title else None, showlegend=legend,
                      legend=dict(orientation="h", y=-0.3, x=0))
    return fig


def rate_distortion_figure(rows: Sequence[dict], title: str, alpha_range: tuple[float, float],
                           x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
                           selected: int | None = None, height: int = 420) -> go.Figure:
    """Fig. 7: one point per sweep run, x = distortion (action NLL), y = rate (KL); colour = α; ★ = aligned.

    ``rows`` are :func:`irl_core.reports.load_sweep` rows with an ``index`` key, carried as each point's
    ``customdata`` so that a chart selection can be mapped back to its row; ``selected`` rings that row.
    """
    fig = go.Figure()
    scale_shown = False
    for aligned, symbol, name in ((False, "circle", "not subgoal-aligned"), (True, "star", "subgoal-aligned (F1 ≥ 0.9)")):
        part = [r for r in rows if bool(r["aligned"]) == aligned]
        scale, scale_shown = bool(part) and not scale_shown, scale_shown or bool(part)
        fig.add_trace(go.Scatter(  # an empty part keeps its legend entry through one null point
            x=[r["distortion"] for r in part] or [None], y=[r["rate"] for r in part] or [None], mode="markers",
            name=name,
            customdata=[[r["index"], r["alpha"], r["seed"], r["f1"] if r["f1"] is not None else float("nan"),
                         r["switches"] if r["switches"] is not None else float("nan")] for r in part] or None,
            hovertemplate=("α=%{customdata[1]:g}, seed %{customdata[2]}<br>distortion %{x:.4f}<br>rate %{y:.4f}"
                           "<br>F1 %{customdata[3]:.2f}, switches/episode %{customdata[4]:.2f}<extra></extra>"),
            marker=dict(symbol=symbol, size=20 if aligned else 12, color=[r["alpha"] for r in part] or "#999999",
                        colorscale="Viridis", cmin=alpha_range[0], cmax=max(alpha_range[1], alpha_range[0] + 1e-9),
                        line=dict(color="white" if not aligned else "#222222", width=1),
                        colorbar=dict(title=dict(text="α"), thickness=12), showscale=scale)))
    chosen = [r for r in rows if r["index"] == selected]
    if chosen:
        r = chosen[0]
        fig.add_trace(go.Scatter(x=[r["distortion"]], y=[r["rate"]], mode="markers", name="selected",
                                 hoverinfo="skip", customdata=[[r["index"]]],
                                 marker=dict(symbol="circle-open", size=30, color="#d62728", line=dict(width=3))))
    fig.update_xaxes(title_text="distortion: action NLL per step", range=x_range, showgrid=True, gridcolor="#eeeeee")
    fig.update_yaxes(title_text="rate: KL to the prior per step", range=y_range, showgrid=True, gridcolor="#eeeeee")
    fig.update_layout(title=dict(text=title, font=dict(size=15)), height=height, plot_bgcolor="white", showlegend=True,
                      margin=dict(l=60, r=10, t=40, b=50), legend=dict(orientation="h", y=-0.2, x=0),
                      clickmode="event+select", dragmode="zoom")
    return fig


def subgoal_legend_html() -> str:
    """The subgoal (abstract action) colours of the timelines as a one-line legend (st.markdown, unsafe HTML)."""
    chips = "".join(
        f"<span style='white-space:nowrap;margin-right:1em'><span style='display:inline-block;width:1em;height:1em;"
        f"vertical-align:-0.15em;border-radius:2px;background:{c}'></span> subgoal {n}</span>"
        for c, n in zip(SUBGOAL_COLOURS, SUBGOAL_NAMES))
    return f"<span style='font-size:0.9em'>{chips}<span style='white-space:nowrap'>◆ switch (β &gt; 0.5)</span></span>"
