"""Plotly figures shared by the app's pages, drawn with the shared palette."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from irl_core.envs.grid_render import grid_side
from irl_core.envs.worlds import WALL
from irl_core.palette import AGENT, COLOURS, EMPTY, WALL as WALL_COLOUR, hex_to_rgb, subgoal_palette


def text_colour(background: str) -> str:
    """Black on light colours (yellow, cyan), white on dark ones, for legible labels."""
    r, g, b = hex_to_rgb(background)
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def figure_from_dicts(data: list[dict], layout: dict, frames: list[dict] | None = None) -> go.Figure:
    """A figure from plain dicts, without plotly's per-property validation: building a grid's 49 cells through
    ``add_shape`` takes plotly most of a second on a small CPU, this a few milliseconds. The tests build each
    figure of this module once more with validation, so a misspelt property still fails there."""
    return go.Figure({"data": data, "layout": layout, **({"frames": frames} if frames else {})}, _validate=False)


def grid_figure(layout: np.ndarray, agent: int | None = None, path: Sequence[int] | None = None,
                size: int = 360) -> go.Figure:
    """A gridworld layout ((G²,) or (G, G) codes, any world) with its colours numbered, the walls, the agent and a path."""
    return figure_from_dicts(*_grid_dicts(layout, agent, path, size))


def _grid_dicts(layout: np.ndarray, agent: int | None = None, path: Sequence[int] | None = None,
                size: int = 360) -> tuple[list[dict], dict]:
    """The traces and layout of :func:`grid_figure` as plain dicts (figures drawn on a grid add to them).

    The cells are one heatmap trace, the grid lines one line trace and the numbers one text trace: three
    traces draw much faster in the browser than 49 shapes and 49 annotations, which matters on the Steering
    page where every new code redraws two grids.
    """
    G = grid_side(layout)
    layout = np.asarray(layout).reshape(G, G)
    palette = [EMPTY, WALL_COLOUR, *COLOURS]  # heatmap value i + 0.5 → palette[i]
    index = np.where(layout >= 0, layout + 2, np.where(layout == WALL, 1, 0))
    scale = [[edge, c] for i, c in enumerate(palette) for edge in (i / len(palette), (i + 1) / len(palette))]
    across, along = [v for k in range(G + 1) for v in (k, k, None)], [v for _ in range(G + 1) for v in (0, G, None)]
    rows, cols = np.nonzero(layout >= 0)
    codes = layout[rows, cols].tolist()
    data = [dict(type="heatmap", z=(index + 0.5).tolist(), x=[c + 0.5 for c in range(G)], y=[r + 0.5 for r in range(G)],
                 zmin=0, zmax=len(palette), colorscale=scale, showscale=False, hoverinfo="skip"),
            dict(type="scatter", x=across + along, y=along + across, mode="lines", hoverinfo="skip",
                 line=dict(color="#cccccc", width=1), name="grid lines"),
            dict(type="scatter", x=(cols + 0.5).tolist(), y=(rows + 0.5).tolist(), mode="text", hoverinfo="skip",
                 text=[str(c) for c in codes], name="colours",
                 textfont=dict(size=16, color=[text_colour(COLOURS[c]) for c in codes]))]
    if path is not None and len(path) > 1:
        cells = np.asarray(path)
        data.append(dict(type="scatter", x=(cells % G + 0.5).tolist(), y=(cells // G + 0.5).tolist(), mode="lines",
                         line=dict(color="black", width=3), opacity=0.5, name="path", hoverinfo="skip"))
    if agent is not None:
        data.append(dict(type="scatter", x=[agent % G + 0.5], y=[agent // G + 0.5], mode="markers", name="agent",
                         marker=dict(size=22, color=AGENT, symbol="circle", line=dict(color="white", width=2))))
    return data, dict(
        width=size, height=size, margin=dict(l=2, r=2, t=2, b=2), showlegend=False, plot_bgcolor="white",
        xaxis=dict(range=[0, G], visible=False, constrain="domain", fixedrange=True),
        yaxis=dict(range=[G, 0], visible=False, scaleanchor="x", constrain="domain", fixedrange=True))


def _path_line(xs, ys, colour: str, width: float, name: str, dash: str = "solid", opacity: float = 0.8) -> dict:
    return dict(type="scatter", x=list(xs), y=list(ys), mode="lines", hoverinfo="skip", name=name, opacity=opacity,
                line=dict(color=colour, width=width, dash=dash))


def rollout_figure(r: dict, size: int = 380) -> go.Figure:
    """The layout with the path; frames replay the episode (path before t₀ grey, after t₀ orange; dashed and
    faint after the step where the paper's rules end the episode, which is marked ✕).

    ``r`` is :meth:`irl_core.steering.SteerResult.to_dict`; the initial view is the last frame, so the whole
    path shows.
    """
    path = np.asarray(r["path"])
    n = len(r["path"]) - 1
    t0 = min(r["t0"], n + 1)
    G = grid_side(r["layout"])
    xs, ys = (path % G + 0.5).tolist(), (path // G + 0.5).tolist()

    end = min(r["end_step"], n)  # the paper's rules end the episode here; later steps are the diagnostic's

    def part(lo: int, hi: int) -> tuple[list, list]:
        return (xs[lo:hi + 1], ys[lo:hi + 1]) if hi > lo else ([], [])

    def state(k: int) -> list[dict]:
        """Frame k: the path so far, split at t₀ (grey → orange) and at the paper's end (solid → faint)."""
        return [_path_line(*part(0, min(k, t0, end)), "#555555", 4, "before t₀", opacity=0.75),
                _path_line(*part(end, min(k, t0)), "#555555", 2, "before t₀ (diagnostic)", dash="dash", opacity=0.35),
                _path_line(*part(t0, min(k, end)), "#ff7f0e", 4, "steered", opacity=0.9),
                _path_line(*part(max(t0, end), k), "#ff7f0e", 2, "steered (diagnostic)", dash="dash", opacity=0.45),
                dict(type="scatter", x=[xs[k]], y=[ys[k]], mode="markers", name="agent", hovertext=[f"t = {k}"],
                     marker=dict(size=22, color="#000000", line=dict(color="white", width=2)))]

    data, layout = _grid_dicts(np.asarray(r["layout"]), size=size)
    first = len(data)
    data += [_path_line(xs, ys, "#999999", 1, "whole path", dash="dot", opacity=1.0), *state(n)]
    if r["outcome"] == "wrong colour" or end < n:  # where the paper's rules end the episode
        data.append(dict(type="scatter", x=[xs[end]], y=[ys[end]], mode="markers", name="end",
                         hovertext=["the paper's rules end the episode here"],
                         marker=dict(symbol="x", size=16, color="#d62728", line=dict(width=2))))
    idx = list(range(first + 1, first + 6))
    frames = [dict(name=str(k), traces=idx, data=state(k)) for k in range(n + 1)]
    anim = dict(mode="immediate", frame=dict(duration=0, redraw=False), transition=dict(duration=0))
    layout.update(
        height=size + 70, margin=dict(l=5, r=5, t=5, b=60),
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.02, xanchor="left", yanchor="top",
                          buttons=[dict(label="▶ play", method="animate",
                                        args=[None, dict(frame=dict(duration=120, redraw=False), fromcurrent=False,
                                                         transition=dict(duration=0), mode="immediate")])])],
        sliders=[dict(active=n, x=0.18, len=0.82, y=-0.02, yanchor="top", pad=dict(t=0),
                      currentvalue=dict(prefix="t = ", font=dict(size=12)),
                      steps=[dict(method="animate", label=str(k), args=[[str(k)], anim]) for k in range(n + 1)])])
    return figure_from_dicts(data, layout, frames)


def ratio_figure(ratio: Sequence[float], t0: int, name: str = "steered", colour: str = "#ff7f0e") -> go.Figure:
    """‖U e‖ / ‖e‖ per time step of a steered rollout, with t₀ marked."""
    return figure_from_dicts(
        [dict(type="scatter", x=list(range(len(ratio))), y=[float(v) for v in ratio], mode="lines+markers", name=name,
              line=dict(color=colour, width=2), marker=dict(size=4))],
        dict(height=260, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.15),
             xaxis=dict(title=dict(text="time step t")), yaxis=dict(title=dict(text="‖U e‖ / ‖e‖"), rangemode="tozero"),
             shapes=[dict(type="line", xref="x", yref="y domain", x0=t0, x1=t0, y0=0, y1=1,
                          line=dict(color=colour, dash="dash"))],
             annotations=[dict(x=t0, y=1, xref="x", yref="y domain", text="t₀", showarrow=False, xanchor="left",
                               yanchor="top")]))


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
                       legend: bool = True, subgoals: str = "pair") -> go.Figure:
    """Fig. 6 / A3: the gate β_t over time on bands coloured by the ground-truth subgoal (the colour pair, or
    the colour itself with ``subgoals="colour"``).

    ``beta``, ``subgoal`` per step (cut to ``length``); ``t`` draws a marker line at that step; steps with
    β > ``threshold`` (switches) are drawn as diamonds.
    """
    n = len(beta) if length is None else int(length)
    beta, subgoal = np.asarray(beta, dtype=float)[:n], np.asarray(subgoal)[:n]
    shapes, notes, data = [], [], []
    SUBGOAL_NAMES, SUBGOAL_COLOURS = subgoal_palette(subgoals)
    for start, end, g in _segments(subgoal):
        if g < 0:
            continue
        shapes.append(dict(type="rect", x0=start - 0.5, x1=end - 0.5, y0=0, y1=1, xref="x", yref="paper",
                           fillcolor=SUBGOAL_COLOURS[g % len(SUBGOAL_COLOURS)], opacity=0.55, layer="below",
                           line=dict(width=0)))
        notes.append(dict(x=(start + end - 1) / 2, y=1.0, yref="paper", yanchor="top", showarrow=False,
                          text=SUBGOAL_NAMES[g % len(SUBGOAL_NAMES)].split()[0], font=dict(size=12, color="#333333")))
    for g in sorted({int(x) for x in subgoal if x >= 0}) if legend else []:
        data.append(dict(type="scatter", x=[None], y=[None], mode="markers", name=f"subgoal {SUBGOAL_NAMES[g]}",
                         marker=dict(symbol="square", size=12, color=SUBGOAL_COLOURS[g])))
    shapes.append(dict(type="line", xref="x domain", yref="y", x0=0, x1=1, y0=threshold, y1=threshold,
                       line=dict(color="#777777", dash="dot", width=1)))
    on = beta > threshold
    data.append(dict(type="scatter", x=list(range(n)), y=beta.tolist(), mode="lines+markers", name="β<sub>t</sub>",
                     line=dict(color=AGENT, width=2), showlegend=legend,
                     marker=dict(size=np.where(on, 11, 5).tolist(), color=AGENT,
                                 symbol=np.where(on, "diamond", "circle").tolist()),
                     hovertemplate="t=%{x}<br>β=%{y:.3f}<extra></extra>"))
    if t is not None and 0 <= t <= n:
        shapes.append(dict(type="line", xref="x", yref="y domain", x0=t, x1=t, y0=0, y1=1, line=dict(color="#d62728", width=2)))
    layout = dict(
        shapes=shapes, annotations=notes, height=height, margin=dict(l=50, r=10, t=35 if title else 10, b=40),
        plot_bgcolor="white", showlegend=legend, legend=dict(orientation="h", y=-0.3, x=0),
        xaxis=dict(title=dict(text="time step t"), range=[-0.5, max(n, t + 1 if t is not None else 0) - 0.5],
                   zeroline=False, showgrid=False),
        yaxis=dict(title=dict(text="β<sub>t</sub>"), range=[-0.05, 1.12], tickvals=[0, 0.5, 1], showgrid=False))
    if title:
        layout["title"] = dict(text=title, font=dict(size=14))
    return figure_from_dicts(data, layout)


def rate_cap(rates: Sequence[float], factor: float = 5.0, most: float = 0.25) -> float | None:
    """Where to cut the rate axis so that a few outlying rates (as α = 0 runs' tens of nats beside the others' fractions
    of one, one such run per variant) do not flatten the rest: at the lowest break in the sorted rates where a rate is
    over ``factor`` times the one below it (floored at 0.5) and at most ``most`` of the points lie above it, the axis
    stops at 1.3× the rate below the break and the outliers are drawn at its top; None when no rate stands out so."""
    ordered = sorted(float(r) for r in rates)
    n = len(ordered)
    for i in range(1, n):
        rest = max(ordered[i - 1], 0.5)
        if ordered[i] > factor * rest and n - i <= max(1, int(most * n)):
            return 1.3 * rest
    return None


def _near_groups(rows: Sequence[dict], x_range: tuple[float, float] | None, near: float = 0.06) -> list[list[dict]]:
    """``rows`` in runs of neighbours along the distortion axis (gaps under ``near`` of its span), so that the
    points drawn at a cut axis's top (the seeds of α = 0 sit side by side) share one label instead of overprinting."""
    xs = sorted(rows, key=lambda r: r["distortion"])
    if not xs:
        return []
    span = (x_range[1] - x_range[0]) if x_range else (xs[-1]["distortion"] - xs[0]["distortion"]) or 1.0
    groups = [[xs[0]]]
    for r in xs[1:]:
        if r["distortion"] - groups[-1][-1]["distortion"] < near * span:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def rate_distortion_figure(rows: Sequence[dict], title: str, alphas: Sequence[float],
                           x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
                           selected: int | None = None, height: int = 420, cap: float | None = None) -> go.Figure:
    """Fig. 7: one point per sweep run, x = distortion (action NLL), y = rate (KL); colour = α; ★ = aligned.

    Colours step through ``alphas`` (every α of the table, shared by the charts drawn side by side) by rank, one
    distinct colour per α with its value on the colour bar: Table A9's α are nearly geometric (0, 0.05, 0.1, 0.17,
    …), so a linear scale would give 0–0.17 one shade.

    ``rows`` are :func:`irl_core.reports.load_sweep` rows with an ``index`` key, carried as each point's
    ``customdata`` so that a chart selection can be mapped back to its row; ``selected`` rings that row.
    A point whose rate exceeds ``cap`` (:func:`rate_cap`) is drawn at ``cap``, labelled with its true rate (hover too;
    neighbours along the distortion axis share one label giving their range).
    """
    shown = (lambda r: min(r["rate"], cap)) if cap is not None else (lambda r: r["rate"])  # noqa: E731
    above = (lambda r: cap is not None and r["rate"] > cap)  # noqa: E731
    levels = sorted({float(a) for a in alphas} | {float(r["alpha"]) for r in rows})
    rank = {a: i for i, a in enumerate(levels)}
    fig = go.Figure()
    scale_shown = False
    for aligned, symbol, name in ((False, "circle", "not subgoal-aligned"), (True, "star", "subgoal-aligned (F1 ≥ 0.9)")):
        part = [r for r in rows if bool(r["aligned"]) == aligned]
        scale, scale_shown = bool(part) and not scale_shown, scale_shown or bool(part)
        fig.add_trace(go.Scatter(  # an empty part keeps its legend entry through one null point
            x=[r["distortion"] for r in part] or [None], y=[shown(r) for r in part] or [None], mode="markers",
            name=name,
            customdata=[[r["index"], r["alpha"], r["seed"], r["f1"] if r["f1"] is not None else float("nan"),
                         r["switches"] if r["switches"] is not None else float("nan"), r["rate"]] for r in part] or None,
            hovertemplate=("α=%{customdata[1]:g}, seed %{customdata[2]}<br>distortion %{x:.4f}<br>rate %{customdata[5]:.4f}"
                           "<br>F1 %{customdata[3]:.2f}, switches/episode %{customdata[4]:.2f}<extra></extra>"),
            marker=dict(symbol=symbol, size=20 if aligned else 12, color=[rank[r["alpha"]] for r in part] or "#999999",
                        colorscale="Viridis", cmin=0, cmax=max(len(levels) - 1, 1),
                        line=dict(color="white" if not aligned else "#222222", width=1),
                        colorbar=dict(title=dict(text="α"), thickness=12, tickvals=list(range(len(levels))),
                                      ticktext=[f"{a:g}" for a in levels]), showscale=scale)))
    chosen = [r for r in rows if r["index"] == selected]
    if chosen:
        r = chosen[0]
        fig.add_trace(go.Scatter(x=[r["distortion"]], y=[shown(r)], mode="markers", name="selected",
                                 hoverinfo="skip", customdata=[[r["index"]]],
                                 marker=dict(symbol="circle-open", size=30, color="#d62728", line=dict(width=3))))
    fig.update_xaxes(title_text="distortion: action NLL per step", range=x_range, showgrid=True, gridcolor="#eeeeee")
    for group in _near_groups([r for r in rows if above(r)], x_range):
        lo, hi = min(r["rate"] for r in group), max(r["rate"] for r in group)
        text = f"rate {lo:.3g} ↑" if f"{lo:.3g}" == f"{hi:.3g}" else f"rate {lo:.3g}–{hi:.3g} ↑"
        fig.add_annotation(x=float(np.mean([r["distortion"] for r in group])), y=cap, text=text, showarrow=False,
                           yshift=16, font=dict(size=11, color="#555555"))
    fig.update_yaxes(title_text="rate: KL to the prior per step", range=y_range, showgrid=True, gridcolor="#eeeeee")
    fig.update_layout(title=dict(text=title, font=dict(size=15)), height=height, plot_bgcolor="white", showlegend=True,
                      margin=dict(l=60, r=10, t=40, b=50), legend=dict(orientation="h", y=-0.2, x=0),
                      clickmode="event+select", dragmode="zoom")
    return fig


def subgoal_legend_html(subgoals: str = "pair") -> str:
    """The subgoal (abstract action) colours of the timelines as a one-line legend (st.markdown, unsafe HTML)."""
    SUBGOAL_NAMES, SUBGOAL_COLOURS = subgoal_palette(subgoals)
    chips = "".join(
        f"<span style='white-space:nowrap;margin-right:1em'><span style='display:inline-block;width:1em;height:1em;"
        f"vertical-align:-0.15em;border-radius:2px;background:{c}'></span> subgoal {n}</span>"
        for c, n in zip(SUBGOAL_COLOURS, SUBGOAL_NAMES))
    return f"<span style='font-size:0.9em'>{chips}<span style='white-space:nowrap'>◆ switch (β &gt; 0.5)</span></span>"
