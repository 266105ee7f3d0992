"""The app's pages under Streamlit's AppTest: the shipped checkpoints, an empty checkpoints root, a checkpoint set
made with the tiny presets, and malformed reports. Chart clicks and the console need a browser: test_browser.py.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from irl_core import app_state
from irl_core.reports import SWITCHING_METRICS, load_sweep, load_switching

pytest_plugins = ["browser_support"]  # tiny_app_set
ROOT = Path(__file__).resolve().parent.parent
G5, G7 = app_state.SHIPPED_LABELS["grid5"], app_state.SHIPPED_LABELS["grid"]  # the menu's shipped gridworld sets


def _page(name: str) -> str:
    return str(ROOT / "app_pages" / "grid" / f"{name}.py")


def _run(path: str, set_dir: Path | None = None, **state) -> AppTest:
    """Run a page alone; ``set_dir`` chooses its checkpoint set (the default is the first shipped one, grid5)."""
    at = AppTest.from_file(path, default_timeout=60)
    if set_dir is not None:
        state[app_state.SET_KEY] = str(set_dir)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def _charts(at: AppTest) -> list:
    return at.get("plotly_chart")


@pytest.fixture(autouse=True)
def _fresh_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture
def empty_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("IRL_CHECKPOINTS_DIR", str(tmp_path))
    return tmp_path


def _root_with(tmp_path: Path, monkeypatch, grid_set: Path) -> Path:
    """A checkpoints root whose shipped grid set is ``grid_set``."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "grid").symlink_to(grid_set, target_is_directory=True)
    monkeypatch.setenv("IRL_CHECKPOINTS_DIR", str(root))
    return root


@pytest.fixture
def tiny_root(tiny_app_set, tmp_path, monkeypatch) -> Path:
    return _root_with(tmp_path, monkeypatch, tiny_app_set)


def _copy_set(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- the shell: sidebar, catalogue, page list -------------------------------------------------------------
def test_overview_renders():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("Gridworld-pinpad" in h.value for h in at.header)
    at.number_input[0].set_value(5).run()
    assert not at.exception


def _scorecard_table(at: AppTest) -> str:
    assert not at.exception and any(h.value == "What this set shows of the paper" for h in at.header)
    return next(m.value for m in at.markdown if m.value.startswith("| | the paper"))


def test_overview_says_what_the_shipped_set_shows_of_the_paper():
    """The scorecard on the shipped grid5 set: every row measured from its reports, some shown, some not."""
    from irl_core.scorecard import scorecard
    table = _scorecard_table(_run(_page("overview")))
    rows = scorecard(ROOT / "checkpoints" / "grid5")
    assert table.count("\n") == len(rows) + 1 and all(r.measured in table for r in rows)
    assert ":green[✓ shown]" in table and ":red[✗ not shown]" in table


def test_overview_scorecard_of_a_set_without_reports(tiny_root):
    """A tiny set has few reports: its rows say "not measured" with the command, and the page still renders."""
    table = _scorecard_table(_run(_page("overview")))
    assert table.count(":gray[– not measured]") >= 4 and "irl_core sweep" in table


def test_sidebar_chooses_environment_checkpoint_set_and_device(tiny_app_set, tmp_path, monkeypatch):
    root = _root_with(tmp_path, monkeypatch, ROOT / "checkpoints" / "grid")
    (root / "experiments").mkdir()
    (root / "experiments" / "tiny").symlink_to(tiny_app_set, target_is_directory=True)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    env, ck, dev = (at.sidebar.selectbox(key=k) for k in (app_state.ENV_KEY, app_state.SET_KEY, app_state.DEVICE_KEY))
    assert env.value == "grid" and "cpu" in dev.options
    assert ck.options == [G5, G7, "experiments/tiny"]  # AppTest gives the options as shown
    ck.set_value(str(root / "experiments" / "tiny")).run()
    assert not at.exception
    assert at.session_state[app_state.SET_KEY] == str(root / "experiments" / "tiny")
    assert any("switching" in c.value for c in at.sidebar.caption)
    at.sidebar.selectbox(key=app_state.ENV_KEY).set_value("ant").run()
    assert not at.exception
    assert at.session_state[app_state.SET_KEY] == str(root / "ant")  # the set follows the environment
    assert "Ant-pinpad" in [t.value for t in at.title]  # and the menu: the ant's overview (tests/test_ant_app.py)


def test_catalogue_lists_shipped_first_then_folders_with_a_base(tmp_path):
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "base.json").write_text(json.dumps({"kind": "grid-transformer"}))
    for rel, kind in (("runs/a", "grid-transformer"), ("b", "nonsense"), ("ant/wide", "ant-transformer"),
                      ("x/y/z/too_deep", "grid-transformer")):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "base.json").write_text(json.dumps({"kind": kind}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "base.json").write_text("{not json")
    grid = app_state.catalogue("grid", tmp_path)
    assert [s.label for s in grid] == [G5, G7, "b", "broken", "runs/a"]
    assert grid[1].shipped and grid[1].contents() == ["base model"] and not grid[0].contents()
    assert [s.label for s in app_state.catalogue("ant", tmp_path)] == ["ant (shipped)", "ant/wide"]
    assert [s.label for s in app_state.catalogue("grid", tmp_path / "missing")] == [G5, G7]
    # each gridworld set knows its world: from its base model's config, else from its name
    (tmp_path / "runs" / "a" / "base.json").write_text(json.dumps({"kind": "grid-transformer", "config": {"world": "grid5"}}))
    assert app_state.set_world(tmp_path / "runs" / "a").name == "grid5"
    assert app_state.set_world(tmp_path / "grid5").name == "grid5" and app_state.set_world(tmp_path / "b").name == "grid7"
    with pytest.raises(ValueError, match="unknown environment"):
        app_state.catalogue("mars", tmp_path)
    # a stale or bogus choice falls back to the defaults
    sel = app_state.resolve({app_state.ENV_KEY: "mars", app_state.SET_KEY: "/nowhere", app_state.DEVICE_KEY: "tpu"})
    assert sel.env == "grid" and sel.checkpoint_set.shipped and sel.device == "cpu"


def test_app_state_is_light():
    """The sidebar must not pull in torch (the app opens in seconds)."""
    code = "import sys, irl_core.app_state; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_page_list():
    urls = [p.url_path for p in app_state.pages()]
    assert urls[:4] == ["", "probes", "switching", "rate-distortion"]
    assert all((ROOT / p.file).exists() for p in app_state.pages())


# --- shipped checkpoints and an empty root ------------------------------------------------------------
def test_probes_page_renders_on_shipped_reports():
    at = _run(_page("base_model"))
    assert not at.exception
    assert len(_charts(at)) >= 1 and not at.warning


def test_probes_page_plots_probes_over_training(tmp_path, monkeypatch):
    grid = tmp_path / "grid"
    (grid / "reports").mkdir(parents=True)
    probes = json.loads((ROOT / "checkpoints" / "grid" / "reports" / "probes.json").read_text())
    probes["sampled"]["ends"] = {"success": 0.1, "first_pair_of_another_task": 0.7, "partner_missed": 0.2}
    (grid / "reports" / "probes.json").write_text(json.dumps(probes))
    keys = ("subgoal_probe", "last_colour_probe", "action_accuracy", "history_use", "sampled")
    points = [{"checkpoint": f"step{i}", "steps": i, "episodes": i * 128, **{k: probes[k] for k in keys}} for i in (500, 1000)]
    (grid / "reports" / "probes_curve.json").write_text(json.dumps({"layers": probes["layers"], "points": points}))
    monkeypatch.setenv("IRL_CHECKPOINTS_DIR", str(tmp_path))
    at = _run(_page("base_model"), grid)
    assert not at.exception
    assert "Over training (Fig. A1)" in [h.value for h in at.subheader]
    assert "How sampled episodes end" in [h.value for h in at.subheader]
    assert len(_charts(at)) == 4  # by layer; the ends; the Fig. A1 heatmap; the diagnostics over training (no pretrain curve)


@pytest.mark.parametrize("name", ["switching", "rate_distortion"])
def test_new_pages_render_on_shipped_checkpoints(name):
    """Before the metacontroller is shipped the pages say which command makes their file; after, they plot it."""
    at = _run(_page(name))
    assert not at.exception
    command = {"switching": "python -m irl_core switching", "rate_distortion": "python -m irl_core sweep"}[name]
    assert (at.warning and command in at.warning[0].value) or len(_charts(at)) >= 2


@pytest.mark.parametrize("name, command", [("base_model", "python -m irl_core probes"),
                                           ("switching", "python -m irl_core switching --checkpoint"),
                                           ("rate_distortion", "python -m irl_core sweep --base")])
def test_pages_explain_missing_reports(empty_root, name, command):
    """On an empty checkpoint folder every page says which command makes its report, and does not crash."""
    at = _run(_page(name))
    assert not at.exception
    assert at.warning and command in at.warning[0].value


@pytest.mark.parametrize("name", ["base_model", "switching", "rate_distortion"])
def test_grid_pages_say_grid_only_for_the_ant(name):
    at = _run(_page(name), **{app_state.ENV_KEY: "ant"})
    assert not at.exception
    assert at.info and "grid only for now" in at.info[0].value


# --- a tiny-preset checkpoint set ---------------------------------------------------------------------
def test_tiny_set_files(tiny_app_set):
    sw = load_switching(tiny_app_set)
    n, t = sw["beta"].shape
    assert n == 8 and sw["has_grid"] and sw["layout"].shape == (n, 7, 7) and sw["pos"].shape == (n, t + 1)
    assert set(sw["metrics"]) == set(SWITCHING_METRICS)
    assert (sw["pos"][np.arange(n), sw["length"]] >= 0).all()  # the last cell of each episode is there
    table = load_sweep(tiny_app_set)
    assert {r["variant"] for r in table["rows"]} == {"frozen", "cotrained"} and table["invalid_rows"] == 0
    for r in table["rows"]:
        ex = r["examples"]
        assert len(ex["beta"]) == 4 and [len(b) for b in ex["beta"]] == ex["length"]


def test_switching_page_plots_the_tiny_export(tiny_root):
    at = _run(_page("switching"), tiny_root / "grid")
    assert not at.exception and not at.warning
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Precision", "Recall", "F1 (±1 step)"] and "Quasi-binary" in labels
    sw = load_switching(tiny_root / "grid")
    assert at.metric[2].value == f"{sw['metrics']['f1']:.2f}"
    assert len(_charts(at)) == 5  # timeline, grid, three examples
    assert any(md.value.startswith("**Step 0**") for md in at.markdown)
    at.slider(key="switching_t_0").set_value(4).run()
    assert not at.exception
    assert any(md.value.startswith("**Step 4**") for md in at.markdown)
    next(box for box in at.selectbox if box.label == "Episode").set_value(3).run()
    assert not at.exception and at.slider(key="switching_t_3").max == int(sw["length"][3])
    last = int(sw["length"][3])
    at.slider(key="switching_t_3").set_value(last).run()
    assert not at.exception and any("episode is over" in md.value for md in at.markdown)


def test_switching_page_shows_any_sweep_point(tiny_root):
    """The Switching page offers the shipped export and every sweep point's; the Rate–distortion page opens it."""
    at = _run(_page("switching"), tiny_root / "grid")
    box = at.selectbox(key=app_state.SWITCHING_SOURCE_KEY)
    rows = load_sweep(tiny_root / "grid")["rows"]
    assert box.value == "" and len(box.options) == 1 + len(rows)  # the shipped one first, then every point
    k = next(i for i, r in enumerate(rows) if r["variant"] == "cotrained")
    box.set_value(rows[k]["switching"]).run()
    assert not at.exception
    sw = load_switching(path=rows[k]["switching"])
    assert at.metric[2].value == f"{sw['metrics']['f1']:.2f}" and len(sw["length"]) == 8
    assert any("cotrained_alpha0.1_seed0.npz" in c.value and "random tie-break" in c.value for c in at.caption)
    # from the Rate–distortion page: the selected point's button chooses its export for the Switching page
    rd = _run(_page("rate_distortion"), tiny_root / "grid")
    rd.selectbox(key="rd_point").set_value(k).run()
    rd.button(key="rd_open_switching").click().run()
    assert rd.session_state[app_state.SWITCHING_SOURCE_KEY] == rows[k]["switching"]


def test_switching_page_on_an_export_without_grids(tiny_app_set, tmp_path, monkeypatch):
    """A file in docs/design.md's minimal format (beta, subgoal, length) still plots, and says what is missing."""
    s = _copy_set(tiny_app_set, tmp_path / "set")
    path = s / "reports" / "switching.npz"
    with np.load(path) as f:
        arrays = {k: f[k] for k in ("beta", "subgoal", "length")}
    np.savez_compressed(path, **arrays)
    root = _root_with(tmp_path, monkeypatch, s)
    at = _run(_page("switching"), root / "grid")
    assert not at.exception
    assert any("older version" in i.value for i in at.info)
    assert at.metric[0].label == "Precision" and len(_charts(at)) == 4


def test_rate_distortion_page_plots_the_tiny_table(tiny_root):
    at = _run(_page("rate_distortion"), tiny_root / "grid")
    assert not at.exception and not at.warning
    assert len(_charts(at)) == 2 + 4  # frozen, co-trained; four example episodes of the selected point
    assert "Frozen" in at.subheader[0].value  # the default point is a frozen one
    per_alpha = at.dataframe[0].value  # the contrast α by α, one row per α of the table
    rows = load_sweep(tiny_root / "grid")["rows"]
    assert list(per_alpha.columns) == ["α", "frozen: aligned · median F1", "co-trained: aligned · median F1"]
    assert list(per_alpha["α"]) == [f"{a:g}" for a in sorted({r["alpha"] for r in rows})]
    for a, cell in zip(sorted({r["alpha"] for r in rows}), per_alpha["frozen: aligned · median F1"]):
        part = [r for r in rows if r["variant"] == "frozen" and r["alpha"] == a]
        aligned = sum(r["aligned"] for r in part)
        assert cell == "—" if not part else cell.startswith(f"{aligned} of {len(part)} aligned · F1 ")
    box = at.selectbox(key="rd_point")
    k = next(i for i, shown in enumerate(box.options) if shown.startswith("cotrained"))
    assert rows[k]["variant"] == "cotrained"
    box.set_value(k).run()
    assert not at.exception
    assert "Co-trained" in at.subheader[0].value
    assert at.metric[0].value == f"{rows[k]['distortion']:.3f}"


def test_benchmarks_sweep_table_is_written_from_the_shipped_table(tiny_app_set):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "report_grid5.py"), "--part", "sweep", "--set",
                          str(tiny_app_set)], capture_output=True, text=True, check=True).stdout
    rows = load_sweep(tiny_app_set)["rows"]
    lines = [l for l in out.splitlines() if l.startswith("| ") and not l.startswith("| α")]
    assert [l.split(" | ")[0][2:] for l in lines] == [f"{a:g}" for a in sorted({r["alpha"] for r in rows})]
    assert f"{len(rows)} points" in out


def test_rate_distortion_marks_aligned_points_and_handles_gaps(tiny_app_set, tmp_path, monkeypatch):
    s = _copy_set(tiny_app_set, tmp_path / "set")
    path = s / "reports" / "discovery.json"
    table = json.loads(path.read_text())
    frozen = [r for r in table["rows"] if r["variant"] == "frozen"]
    frozen[1]["f1"] = 0.95  # α = 0.5
    assert frozen[1]["examples"]["ties"] == "random"  # a tiny point trains on the paper's D*
    frozen[1]["examples"]["ties"] = "first"
    frozen[0].pop("examples")  # α = 0
    frozen[0]["switching"] = "sweep_switching/not_there.npz"
    frozen[0]["rate"] = -1.5e-08  # a collapsed code's KL as float rounding left it in a result
    table["rows"] = [r for r in table["rows"] if r["variant"] == "frozen"] + [{"variant": "frozen", "alpha": "x"}]
    path.write_text(json.dumps(table))
    assert load_sweep(s)["rows"][0]["rate"] == 0.0
    root = _root_with(tmp_path, monkeypatch, s)
    at = _run(_page("rate_distortion"), root / "grid")
    assert not at.exception
    specs = [json.loads(c.proto.spec) for c in _charts(at)]
    symbols = [tr["marker"]["symbol"] for tr in specs[0]["data"] if any(v is not None for v in tr.get("x", []))]
    assert "star" in symbols  # the aligned point
    assert "α = 0.5," in at.subheader[0].value  # the default point: a subgoal-aligned frozen one
    assert any("the expert's moves with a fixed tie-break" in m.value for m in at.markdown)  # its examples' D*
    assert any("1 row(s)" in w.value for w in at.warning)  # the malformed row is reported, not plotted
    assert any("No cotrained points" in i.value for i in at.info)
    at.selectbox(key="rd_point").set_value(0).run()  # the point without examples
    assert not at.exception and any("no example episodes" in i.value for i in at.info)
    assert any("No switching export of this point" in c.value for c in at.caption)
    assert not at.button  # nothing to open on the Switching page


@pytest.mark.parametrize("name, content, message", [
    ("switching.npz", b"not a zip file", "not a readable .npz"),
    ("switching.npz", None, "missing arrays"),
    ("discovery.json", b"{oops", "not valid JSON"),
    ("discovery.json", b'{"points": []}', "no 'rows' list"),
])
def test_bad_reports_give_clear_messages(tmp_path, monkeypatch, name, content, message):
    s = tmp_path / "set"
    (s / "reports").mkdir(parents=True)
    path = s / "reports" / name
    if content is None:
        np.savez(path, beta=np.zeros((2, 3), np.float32))
    else:
        path.write_bytes(content)
    root = _root_with(tmp_path, monkeypatch, s)
    at = _run(_page("switching" if name.endswith(".npz") else "rate_distortion"), root / "grid")
    assert not at.exception
    assert at.warning and message in at.warning[0].value



# --- internal RL ------------------------------------------------------------------------------------------
def _rl_report(folder: Path) -> None:
    """A curves report in the format of `python -m irl_core rl-curves` (two methods, two points each)."""
    curve = {"episodes": [0, 512], "median": [0.0, 0.25], "q25": [0.0, 0.125], "q75": [0.0, 0.5], "runs": 3}
    methods = {m: {"runs": 3, "seeds": [0, 1, 2], "episodes": 512, "train": curve, "eval_greedy": curve,
                   "eval_sampled": curve} for m in ("internal-rl", "raw-action")}
    (folder / "reports").mkdir(parents=True, exist_ok=True)
    (folder / "reports" / "internal_rl.json").write_text(json.dumps({"methods": methods, "meta": {"command": "x"}}))


def test_internal_rl_page_on_an_empty_root(empty_root, tmp_path, monkeypatch):
    """No curves, no runs: the page says which command makes the curves and that no run exists; no crash."""
    monkeypatch.setenv("IRL_RUNS_DIR", str(tmp_path / "runs"))
    at = _run(_page("internal_rl"))
    assert not at.exception
    assert any("bash scripts/reproduce_grid_rl.sh" in i.value for i in at.info)
    assert any("No internal-RL runs yet" in i.value for i in at.info)


def test_internal_rl_page_plots_curves_and_lists_runs(tiny_app_set, tmp_path, monkeypatch):
    """Shipped curves are drawn with their band; a finished run in the runs folder is listed and plotted."""
    from irl_core.rl.methods import make_learner
    from irl_core.rl.ppo import rl_preset, train
    from irl_core.runs import Run
    grid = _copy_set(tiny_app_set, tmp_path / "set")
    _rl_report(grid)
    root = _root_with(tmp_path, monkeypatch, grid)
    monkeypatch.setenv("IRL_RUNS_DIR", str(tmp_path / "runs"))
    cfg = rl_preset("tiny")
    train(make_learner(cfg, "cpu", 0, grid / "metacontroller"), cfg, Run(tmp_path / "runs" / "internal-rl" / "r1"), 0,
          progress=False)
    at = _run(_page("internal_rl"), root / "grid")
    assert not at.exception
    spec = json.loads(_charts(at)[0].proto.spec)
    legend = [t.get("name") for t in spec["data"] if t.get("name")]
    assert any("internal RL, shipped" in n for n in legend) and any("your runs" in n for n in legend)
    assert at.table and "r1" in str(at.table[0].value)


def test_internal_rl_page_refuses_a_launch_without_its_checkpoint(empty_root, tmp_path, monkeypatch):
    monkeypatch.setenv("IRL_RUNS_DIR", str(tmp_path / "runs"))
    at = _run(_page("internal_rl"))
    at.button[0].click().run()
    assert not at.exception
    assert at.error and "metacontroller" in at.error[0].value
    assert not (tmp_path / "runs" / "internal-rl").exists()


def test_the_grid5_set_draws_its_world(tiny_base5, tmp_path, monkeypatch):
    """A grid5 set: the overview draws a 5×5 grid with Table A2's tasks, and the probes page reads its report;
    the pages a set still lacks say which command makes each artifact."""
    root = tmp_path / "root"
    (root / "grid5").mkdir(parents=True)
    for suffix in (".json", ".safetensors"):
        shutil.copy(tiny_base5.with_suffix(suffix), root / "grid5" / f"base{suffix}")
    monkeypatch.setenv("IRL_CHECKPOINTS_DIR", str(root))
    state = {app_state.ENV_KEY: "grid", app_state.SET_KEY: str(root / "grid5")}
    at = _run(_page("overview"), **state)
    assert not at.exception and any("grid5" in h.value for h in at.header)
    grid = _charts(at)[0].proto.spec
    assert '"range":[0,5]' in grid.replace(" ", "") or "[0, 5]" in grid
    assert any("0-1-2-3" not in m.value and "16 pretraining tasks" in m.value for m in at.markdown)
    at = _run(_page("base_model"), **state)
    assert not at.exception and "probes --checkpoint" in " ".join(w.value for w in at.warning)
    subprocess.run([sys.executable, "-m", "irl_core", "probes", "--checkpoint", str(root / "grid5" / "base"),
                    "--episodes", "40", "--sample-episodes", "8"], check=True, capture_output=True, cwd=ROOT)
    at = _run(_page("base_model"), **state)
    assert not at.exception and _charts(at) and "colour being sought" in " ".join(m.value for m in at.markdown)
    assert any("layer-sweep" in c.value for c in at.caption)  # the Fig. 4 sweep is missing: its command is named


def test_null_results_are_explained_in_one_sentence(tmp_path):
    from irl_core.reports import rl_null_note, switching_null_note
    good = {"f1": 0.95, "switches": 3.0, "true_changes": 2.0, "binary_fraction": 1.0}
    assert switching_null_note(good, root=tmp_path) is None
    assert "collapsed" in switching_null_note({**good, "f1": 0.0, "switches": 0.0}, root=tmp_path)
    assert "over-switches" in switching_null_note({**good, "f1": 0.3, "switches": 9.0}, root=tmp_path)
    assert "miss the subgoal changes" in switching_null_note({**good, "f1": 0.3, "switches": 3.0}, root=tmp_path)
    flat = {"internal-rl": {"eval_greedy": {"median": [0.0, 0.01]}}, "raw-action": {"eval_greedy": {"median": [0.0, 0.0]}}}
    assert "near 0" in rl_null_note(flat) and "internal-rl" in rl_null_note(flat)
    assert rl_null_note({**flat, "beta1": {"eval_greedy": {"median": [0.0, 0.6]}}}) is None


def test_the_latent_map_says_what_its_codes_carry():
    from irl_core.reports import displacement_line
    assert "which way to go" in displacement_line({"rows": 0.05, "columns": 0.54}, 0.26)
    assert "which way" not in displacement_line({"rows": 0.05, "columns": 0.54}, 0.9)
    assert "which way" not in displacement_line({"rows": 0.01, "columns": 0.02}, 0.25)
    assert "R² 0.05 (rows) and 0.54 (columns)" in displacement_line({"rows": 0.05, "columns": 0.54}, 0.26)
    from irl_core.reports import axis_line
    line = axis_line({"layouts": 100, "column_offset": [-1.24, 0.3, 1.5], "column_rank": [0.4, 1.5, 2.6]})
    assert "-1.2 columns" in line and "+1.5 at the right" in line and "0.4 → 2.6" in line


def test_the_fig7_contrast_is_stated_as_measured():
    from irl_core.reports import contrast_note
    pts = lambda v, flags: [{"variant": v, "aligned": a} for a in flags]
    assert contrast_note(pts("frozen", [True])) is None
    shows = contrast_note(pts("frozen", [True, True, False]) + pts("cotrained", [False, False]))
    assert "2 of 3 frozen and 0 of 2 co-trained" in shows and "contrast shows" in shows
    assert "does not show" in contrast_note(pts("frozen", [True, False]) + pts("cotrained", [True, False]))


def test_the_fig7_contrast_is_tabulated_alpha_by_alpha():
    from irl_core.reports import alignment_by_alpha
    rows = [{"variant": "frozen", "alpha": 0.1, "f1": 0.95, "aligned": True},
            {"variant": "frozen", "alpha": 0.1, "f1": 0.5, "aligned": False},
            {"variant": "frozen", "alpha": 0.1, "f1": 0.92, "aligned": True},
            {"variant": "cotrained", "alpha": 0.1, "f1": 0.1, "aligned": False},
            {"variant": "cotrained", "alpha": 0.05, "f1": None, "aligned": False}]
    low, mid = alignment_by_alpha(rows)
    assert low["alpha"] == 0.05 and low["frozen_seeds"] == 0 and low["frozen_median_f1"] is None
    assert low["cotrained_seeds"] == 1 and low["cotrained_median_f1"] is None
    assert (mid["frozen_aligned"], mid["frozen_seeds"], mid["frozen_median_f1"]) == (2, 3, 0.92)
    assert (mid["cotrained_aligned"], mid["cotrained_seeds"], mid["cotrained_median_f1"]) == (0, 1, 0.1)
    assert mid["frozen_median_rate"] is None  # no rate in these rows


def test_switching_page_on_the_collapsed_7x7_set_points_to_grid5():
    at = _run(_page("switching"), ROOT / "checkpoints" / "grid")
    assert not at.exception
    note = next(i.value for i in at.info if i.value.startswith("F1 "))
    assert "collapsed" in note and "grid5" in note
    at = _run(_page("switching"), ROOT / "checkpoints" / "grid5")
    assert not at.exception and not any(i.value.startswith("F1 ") for i in at.info)
    at = _run(_page("internal_rl"), ROOT / "checkpoints" / "grid")
    assert not at.exception and any("near 0" in i.value for i in at.info)


@pytest.mark.parametrize("name", ["base_model", "switching", "rate_distortion", "steering", "internal_rl"])
def test_grid_pages_say_so_in_one_line_when_the_ant_is_chosen(name):
    at = _run(_page(name), ROOT / "checkpoints" / "ant", **{app_state.ENV_KEY: "ant"})
    assert not at.exception and [i.value for i in at.info] == [app_state.GRID_ONLY]


@pytest.mark.parametrize("world,task", [("grid5", "4-colour task 0-1-2-3"), ("grid", "12-colour task 0-1-2-3-4-5-6-7")])
def test_internal_rl_page_names_its_worlds_held_out_task(world, task):
    at = _run(_page("internal_rl"), ROOT / "checkpoints" / world)
    assert not at.exception and any(task in m.value for m in at.markdown)
