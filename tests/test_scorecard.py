"""The Overview's "what this set shows of the paper": each row read from the set's reports, judged by its yardstick,
and a set without a report (or with a broken one) told so row by row instead of failing."""
import json
from pathlib import Path

import numpy as np
import pytest

from irl_core.scorecard import ROWS, scorecard

ROOT = Path(__file__).resolve().parent.parent
G5 = ROOT / "checkpoints" / "grid5"


def _row(rows, figure):
    return next(r for r in rows if r.figure == figure)


def _set(tmp_path, **reports) -> Path:
    (tmp_path / "reports").mkdir(parents=True, exist_ok=True)
    for name, body in reports.items():
        (tmp_path / "reports" / f"{name}.json").write_text(json.dumps(body))
    return tmp_path


def test_shipped_grid5_rows_read_its_reports():
    rows = scorecard(G5)
    assert [r.figure for r in rows] == [r[0] for r in ROWS]
    probes = json.loads((G5 / "reports/probes.json").read_text())["subgoal_probe"]
    margin = probes["accuracy"][3] - probes["control"][3]
    probe = _row(rows, "Fig. 3, A1")
    assert f"({margin:+.2f})" in probe.measured and probe.shown == (margin >= 0.15 and probes["accuracy"][3] > probes["accuracy"][0])
    success = json.loads((G5 / "reports/controllers.json").read_text())["success_rate"]
    assert f"{success:.3f}" in _row(rows, "Fig. 4, A2").measured
    with np.load(G5 / "reports/switching.npz") as f:
        f1, binary = float(f["f1"]), float(f["binary_fraction"])
    switching = _row(rows, "Figs. 5, 6, A3")
    assert f"F1 {f1:.3f}" in switching.measured and switching.shown == (f1 >= 0.9 and binary >= 0.9)
    sweep = json.loads((G5 / "reports/discovery.json").read_text())["rows"]
    aligned = {v: sum(r["f1"] >= 0.9 for r in sweep if r["variant"] == v) for v in ("frozen", "cotrained")}
    counts = {v: sum(r["variant"] == v for r in sweep) for v in ("frozen", "cotrained")}
    contrast = _row(rows, "Fig. 7")
    assert f"{aligned['frozen']} of {counts['frozen']} frozen" in contrast.measured
    assert contrast.shown == (aligned["frozen"] / counts["frozen"] > aligned["cotrained"] / counts["cotrained"])
    first = json.loads((G5 / "reports/latent_map.json").read_text())["steering"]["first_colour"]
    assert _row(rows, "§5.4, Fig. A4").shown == (min(first.values()) >= 0.8)
    methods = json.loads((G5 / "reports/internal_rl.json").read_text())["methods"]
    final = methods["internal-rl"]["eval_greedy"]["median"][-1]
    rl = _row(rows, "Fig. 8")
    assert rl.measured.startswith(f"internal RL {final:.3f}") and "raw-action RL" in rl.measured
    assert all(r.source.startswith("reports/") for r in rows)  # every report is there: nothing to make


def test_a_set_without_reports_names_the_command_for_each(tmp_path):
    rows = scorecard(tmp_path)
    assert all(r.shown is None and r.measured == "not measured" for r in rows)
    assert "gt-controllers" in _row(rows, "Fig. 4, A2").source
    assert "irl_core sweep" in _row(rows, "Fig. 7").source
    assert "switching --checkpoint" in _row(rows, "Figs. 5, 6, A3").source


def test_a_broken_report_is_one_row_not_a_crash(tmp_path):
    _set(tmp_path, probes={"layers": [0, 1, 2, 3, 4, 5, 6]}, latent_map={"kind": "latent-map"})
    (tmp_path / "reports" / "discovery.json").write_text("{ not json")
    rows = scorecard(tmp_path)
    assert _row(rows, "Fig. 3, A1").shown is None and "has no 'subgoal_probe'" in _row(rows, "Fig. 3, A1").measured
    assert "without steering" in _row(rows, "§5.4, Fig. A4").measured
    assert _row(rows, "Fig. 7").shown is None and "discovery.json" in _row(rows, "Fig. 7").measured


@pytest.mark.parametrize("mid, embedding, shown", [(0.45, 0.30, True), (0.38, 0.30, False), (0.45, 0.50, False)])
def test_the_probe_must_clear_control_and_the_embedding(tmp_path, mid, embedding, shown):
    acc = [embedding, 0.3, 0.4, mid, 0.4, 0.4, 0.4]
    _set(tmp_path, probes={"layers": list(range(7)), "subgoal_probe": {"accuracy": acc, "control": [0.25] * 7}})
    assert _row(scorecard(tmp_path), "Fig. 3, A1").shown is shown


def _curves(final):
    return {"eval_greedy": {"episodes": [0, 1_000_000], "median": [0.0, final]}}


@pytest.mark.parametrize("ours, raw, shown", [(0.85, 0.1, True), (0.85, 0.5, False), (0.5, 0.0, False)])
def test_internal_rl_must_succeed_where_raw_actions_do_not(tmp_path, ours, raw, shown):
    _set(tmp_path, internal_rl={"methods": {"internal-rl": _curves(ours), "raw-action": _curves(raw)}})
    row = _row(scorecard(tmp_path), "Fig. 8")
    assert row.shown is shown and "1,000,000 episodes" in row.measured


@pytest.mark.parametrize("frozen_f1, cotrained_f1, shown", [(0.95, 0.2, True), (0.95, 0.95, False)])
def test_fig7_contrast_counts_aligned_points_per_variant(tmp_path, frozen_f1, cotrained_f1, shown):
    rows = [{"variant": v, "alpha": a, "seed": s, "rate": 0.5, "distortion": 0.1, "f1": f1}
            for v, f1 in (("frozen", frozen_f1), ("cotrained", cotrained_f1)) for a in (0.1, 0.3) for s in (0, 1)]
    _set(tmp_path, discovery={"rows": rows})
    row = _row(scorecard(tmp_path), "Fig. 7")
    assert row.shown is shown and "(α 0.1–0.3)" in row.measured
