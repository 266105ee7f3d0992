"""The app's figures (irl_core.plots): built from plain dicts without plotly's validation, so every figure is
validated here once, and the grid's cells must show the palette's colours."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from irl_core.envs.grid import EMPTY, WALL
from irl_core.palette import COLOURS, EMPTY as EMPTY_COLOUR, WALL as WALL_COLOUR
from irl_core.plots import (figure_from_dicts, grid_figure, ratio_figure, rollout_figure, switching_timeline,
                            text_colour)

G = 7  # the figures below are drawn in the paper's 7×7 world (the last test draws the 5×5 one)


def layout() -> np.ndarray:
    lay = np.full(G * G, EMPTY)
    lay[[3, 10, 17, 24, 31, 38, 45, 48]] = np.arange(8)
    lay[[0, 1, 20, 40]] = WALL
    return lay


def steered_result(t0: int = 3, end_step: int = 7, outcome: str = "wrong colour") -> dict:
    path = list(range(42, 49)) + [41, 34, 27, 20, 13, 6]  # along the bottom row, then up the right column
    return {"layout": layout().tolist(), "path": path, "t0": t0, "end_step": end_step, "outcome": outcome}


def validated(fig: go.Figure) -> dict:
    """The figure's dict after plotly's full validation (raises ValueError on a property plotly lacks)."""
    return go.Figure(fig.to_dict()).to_dict()


def test_validation_catches_a_misspelt_property():
    bad = figure_from_dicts([dict(type="scatter", x=[0], y=[0], colour="red")], {})  # accepted unvalidated
    with pytest.raises(ValueError, match="colour"):
        validated(bad)


@pytest.mark.parametrize("fig", [
    lambda: grid_figure(layout()),
    lambda: grid_figure(layout(), agent=5, path=[5, 6, 13, 12]),
    lambda: switching_timeline(np.linspace(0, 1, 30), np.repeat([0, 1, 2, -1, 3], 6), 28, t=4, title="episode 1"),
    lambda: switching_timeline(np.linspace(1, 0, 10), np.zeros(10, int), legend=False),
    lambda: rollout_figure(steered_result()),
    lambda: rollout_figure(steered_result(t0=20, end_step=13, outcome="time limit")),
    lambda: ratio_figure(np.linspace(0, 0.3, 12), t0=3),
], ids=["grid", "grid-agent-path", "timeline", "timeline-no-legend", "rollout", "rollout-uncontrolled", "ratio"])
def test_every_figure_validates(fig):
    out = validated(fig())
    assert out["data"]


def test_grid_cells_show_the_palette_colours_and_numbers():
    lay = layout()
    fig = validated(grid_figure(lay, agent=2))
    cells = next(t for t in fig["data"] if t["type"] == "heatmap")
    z = np.asarray(cells["z"], dtype=float)
    scale, zmin, zmax = cells["colorscale"], cells["zmin"], cells["zmax"]

    def colour(v: float) -> str:  # the colour a discrete colorscale gives a value inside one band
        u = (v - zmin) / (zmax - zmin)
        return next(c for (lo, c), (hi, _) in zip(scale[::2], scale[1::2]) if lo <= u <= hi)

    for cell, code in enumerate(lay):
        r, c = divmod(cell, G)
        want = COLOURS[code] if code >= 0 else WALL_COLOUR if code == WALL else EMPTY_COLOUR
        assert colour(z[r][c]) == want, (cell, code)
    assert cells["x"] == [c + 0.5 for c in range(G)] and cells["y"] == [r + 0.5 for r in range(G)]
    numbers = next(t for t in fig["data"] if t.get("mode") == "text")
    shown = {(x, y): (t, col) for x, y, t, col in zip(numbers["x"], numbers["y"], numbers["text"],
                                                        numbers["textfont"]["color"])}
    want = {(cell % G + 0.5, cell // G + 0.5): (str(code), text_colour(COLOURS[code]))
            for cell, code in enumerate(lay) if code >= 0}
    assert shown == want
    agent = next(t for t in fig["data"] if t.get("name") == "agent")
    assert (agent["x"], agent["y"]) == ([2.5], [0.5])
    assert fig["layout"]["yaxis"]["range"] == [G, 0]  # row 0 on top, as the environment prints it


def test_rollout_frames_replay_the_path():
    r = steered_result()
    fig = validated(rollout_figure(r))
    n = len(r["path"]) - 1
    assert [f["name"] for f in fig["frames"]] == [str(k) for k in range(n + 1)]
    agent_at = [f["data"][-1] for f in fig["frames"]]
    assert [(a["x"][0], a["y"][0]) for a in agent_at] == [(p % G + 0.5, p // G + 0.5) for p in r["path"]]
    # frame k draws k steps: the four path parts together hold k segments
    for k in (0, 5, n):
        parts = fig["frames"][k]["data"][:4]
        assert sum(max(len(p.get("x", [])) - 1, 0) for p in parts) == k
    assert any(t.get("name") == "end" for t in fig["data"])  # the paper's end is marked
    assert fig["layout"]["sliders"][0]["active"] == n


def test_a_5x5_layout_draws_a_5x5_grid():
    lay = np.full(25, EMPTY)
    lay[[0, 6, 12, 18]] = np.arange(4)
    lay[24] = WALL
    fig = validated(grid_figure(lay, agent=7, path=[5, 6, 7]))
    assert fig["layout"]["xaxis"]["range"] == [0, 5] and fig["layout"]["yaxis"]["range"] == [5, 0]
    cells = next(t for t in fig["data"] if t["type"] == "heatmap")
    assert len(cells["z"]) == 5 and len(cells["z"][0]) == 5
    fig = validated(switching_timeline([0.9, 0.1, 0.8], [2, 2, 3], subgoals="colour"))
    assert any("subgoal 2 (blue)" == t.get("name") for t in fig["data"])


def sweep_rows(rates):
    return [{"index": i, "alpha": a, "seed": 0, "f1": 1.0 if i % 2 else 0.2, "switches": 3.0, "distortion": 0.1 + 0.01 * i,
             "rate": r, "aligned": bool(i % 2)} for i, (a, r) in enumerate(zip([0.0, 0.1, 0.17, 0.3, 0.5], rates))]


def test_an_outlying_rate_is_drawn_at_the_top_of_a_cut_axis():
    from irl_core.plots import rate_cap, rate_distortion_figure
    rates = [29.1, 0.46, 0.37, 0.12, 0.0]
    cap = rate_cap(rates)
    assert cap == pytest.approx(1.3 * 0.5)  # the next largest (0.46) is below the 0.5 floor
    assert rate_cap([0.8, 0.46, 0.37]) is None and rate_cap([3.0]) is None
    # one α = 0 run per variant: both are cut, at the break below them; two of three points are not outliers
    assert rate_cap([29.3, 29.1, 1.06, 0.8, 0.46, 0.37, 0.12, 0.0]) == pytest.approx(1.3 * 1.06)
    assert rate_cap([29.1, 29.3, 1.0]) is None
    out = validated(rate_distortion_figure(sweep_rows(rates), "frozen", [0.0, 0.1, 0.17, 0.3, 0.5, 1.0], cap=cap, selected=0))
    drawn = [(y, cd[5]) for tr in out["data"][:2] for y, cd in zip(tr["y"], tr["customdata"])]
    assert (cap, 29.1) in drawn  # at the top; its hover keeps the true rate
    assert all(y == true for y, true in drawn if true <= cap)
    assert [a["text"] for a in out["layout"]["annotations"]] == ["rate 29.1 ↑"]
    assert out["data"][-1]["y"] == [cap]  # the selection ring sits on the drawn point
    # one colour step per α of the table (rank, not value), named on the colour bar
    colours = {a: c for tr in out["data"][:2] for a, c in zip([cd[1] for cd in tr["customdata"]], tr["marker"]["color"])}
    assert colours == {0.0: 0, 0.1: 1, 0.17: 2, 0.3: 3, 0.5: 4}
    bar = next(tr["marker"]["colorbar"] for tr in out["data"][:2] if tr["marker"].get("showscale"))
    assert bar["ticktext"] == ["0", "0.1", "0.17", "0.3", "0.5", "1"] and out["data"][0]["marker"]["cmax"] == 5
    # three α = 0 seeds side by side share one label with their range; a far one keeps its own
    seeds = [dict(r, index=i, distortion=d, rate=rate) for i, (r, d, rate) in
             enumerate(zip(sweep_rows([29.1] * 4), [0.027, 0.031, 0.029, 0.3], [29.46, 29.06, 29.12, 31.0]))]
    out = validated(rate_distortion_figure(seeds + sweep_rows(rates)[1:], "frozen", [0.0, 0.5], x_range=(0.0, 0.4),
                                           cap=cap))
    notes = sorted((round(a["x"], 3), a["text"]) for a in out["layout"]["annotations"])
    assert notes == [(0.029, "rate 29.1–29.5 ↑"), (0.3, "rate 31 ↑")]
    plain = validated(rate_distortion_figure(sweep_rows(rates), "frozen", [0.0, 0.5]))
    assert 29.1 in [y for tr in plain["data"][:2] for y in tr["y"]]
