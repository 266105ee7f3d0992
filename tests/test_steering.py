"""Steering (irl_core.steering): injected controllers, the latent map, its CLI, and the Steering page (AppTest)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from irl_core.controllers import GTControllers, save_gt_controllers
from irl_core.data import run_episodes
from irl_core.data import heldout_episodes
from irl_core.envs.worlds import GRID5, GRID7
from irl_core.discovery import discovery_preset, save_metacontroller
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.metacontroller import MetaController, MetaControllerConfig
from irl_core.pretrain import load_base_model
from irl_core.rollouts import model_policy
from irl_core.discovery import segments
from irl_core.latent_map import (Projection, axis_steering, code_displacement, map_bounds, code_steering, cross_validated_r2, fit_projection, latent_map,
                                 segment_codes, segment_displacement, validate_latent_map)
from irl_core.steering import episode_layout, paper_outcome, steer, steer_batch

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "app_pages" / "grid" / "steering.py")


@pytest.fixture(scope="module")
def base(tiny_base):
    return load_base_model(tiny_base)


def strong_meta(d_model: int, seed: int = 0, n_z: int = 8, scale: float = 3.0) -> MetaController:
    """An untrained metacontroller whose decoder makes U depend strongly on z (U ≠ 0 for z ≠ 0)."""
    torch.manual_seed(seed)
    meta = MetaController(MetaControllerConfig(d_model=d_model, n_z=n_z, rank=4, decoder_init_std=1.0))
    with torch.no_grad():
        meta.decoder.out.weight.mul_(scale)
    return meta.eval()


def strong_gt(d_model: int, layer: int, seed: int = 0) -> GTControllers:
    torch.manual_seed(seed)
    gt = GTControllers(d_model, layer, rank=4, hidden=8)
    with torch.no_grad():
        torch.nn.init.normal_(gt.hyper.out.weight, std=1.0)
    return gt.eval()


# --- rollouts ---------------------------------------------------------------------------------------------
def test_no_control_is_the_base_model(base):
    """Without control the split forward acts exactly as the base model's own KV-cached step."""
    layer = base.n_layers // 2
    for seed in range(3):
        r = steer(base, layer, None, layout_seed=seed, task="heldout", greedy=True, end_on_wrong=False)
        task_id, layout, start, tasks = episode_layout(seed, "heldout")
        env = BatchedGridPinpad(1, tasks, seed=0, end_on_wrong=False)
        ep = run_episodes(env, model_policy(base, 1, env.generator, greedy=True), task_id, layout, start)
        n = int(ep["length"][0])
        assert r.actions == ep["actions"][0, :n].tolist()
        assert r.path == ep["pos"][0, : n + 1].tolist()
        assert not r.delta_ratio.any()
        assert r.layout.shape == (49,) and r.task == tuple(tasks[0]) and r.start == r.path[0]


def test_injected_code_changes_the_rollout_only_from_t0(base):
    meta = strong_meta(base.cfg.d_model)
    layer, t0 = base.n_layers // 2, 3
    z = np.full(8, 2.0, dtype=np.float32)
    changed = 0
    for seed in range(4):
        plain = steer(base, layer, None, layout_seed=seed, t0=t0, end_on_wrong=False)
        ctrl = steer(base, layer, z, layout_seed=seed, t0=t0, end_on_wrong=False, meta=meta)
        assert ctrl.actions[:t0] == plain.actions[:t0] and ctrl.path[:t0 + 1] == plain.path[:t0 + 1]
        assert (ctrl.delta_ratio[:t0] == 0).all(), "‖Δresid‖/‖resid‖ must be 0 before t0"
        assert (ctrl.delta_ratio[t0:] > 0).all(), "U ≠ 0 from t0 on"
        changed += ctrl.actions != plain.actions
        assert ctrl.layout.tolist() == plain.layout.tolist() and ctrl.task == plain.task
    assert changed >= 1, "a code with U ≠ 0 changed no rollout"
    # sampled actions: the same seed gives the same prefix, and the same rollout when called again
    a = steer(base, layer, z, layout_seed=1, t0=t0, greedy=False, seed=7, end_on_wrong=False, meta=meta)
    b = steer(base, layer, None, layout_seed=1, t0=t0, greedy=False, seed=7, end_on_wrong=False)
    assert a.actions[:t0] == b.actions[:t0]
    assert steer(base, layer, z, layout_seed=1, t0=t0, greedy=False, seed=7, end_on_wrong=False, meta=meta).actions == a.actions
    # a zero decoder (LoRA-style initialisation, U = 0) changes nothing
    zero = MetaController(MetaControllerConfig(d_model=base.cfg.d_model, rank=4)).eval()
    assert steer(base, layer, z, layout_seed=0, meta=zero, end_on_wrong=False).actions == \
        steer(base, layer, None, layout_seed=0, end_on_wrong=False).actions


def test_gt_controllers_fixed_and_sequence(base):
    layer = base.n_layers // 2
    gt = strong_gt(base.cfg.d_model, layer)
    plain = steer(base, layer, None, layout_seed=2, t0=2, end_on_wrong=False)
    for spec in (0, 3, "gt-sequence"):
        r = steer(base, layer, spec, layout_seed=2, t0=2, end_on_wrong=False, gt=gt)
        assert r.actions[:2] == plain.actions[:2] and (r.delta_ratio[:2] == 0).all() and (r.delta_ratio[2:] > 0).all()
    with pytest.raises(ValueError, match="subgoal"):
        steer(base, layer, 4, gt=gt)
    with pytest.raises(ValueError, match="gt-controllers"):
        steer(base, layer, 1)
    with pytest.raises(ValueError, match="metacontroller"):
        steer(base, layer, [0.0] * 8)
    with pytest.raises(ValueError, match="layout seed"):
        steer(base, layer, None, layout_seed=-1)


def test_paper_rules_are_the_prefix_of_the_diagnostic_run(base):
    layer = base.n_layers // 2
    meta = strong_meta(base.cfg.d_model, seed=1)
    for seed in range(4):
        for z in (None, np.ones(8, dtype=np.float32)):
            cut = steer(base, layer, z, layout_seed=seed, end_on_wrong=True, meta=meta)
            diag = steer(base, layer, z, layout_seed=seed, end_on_wrong=False, meta=meta)
            assert (cut.success, cut.outcome, cut.end_step, cut.completed) == \
                (diag.success, diag.outcome, diag.end_step, diag.completed)
            assert cut.actions == diag.actions[:cut.end_step] and len(cut.actions) == cut.end_step
            assert cut.paper_colours == diag.paper_colours == cut.colours
    # a capped diagnostic continuation: the same steps, stopped n steps after the later of the paper's end and t0
    for t0 in (0, 12):
        full = steer(base, layer, None, layout_seed=1, t0=t0, end_on_wrong=False)
        short = steer(base, layer, None, layout_seed=1, t0=t0, end_on_wrong=False, diagnostic_steps=4)
        if full.outcome == "wrong colour":
            assert len(short.actions) == min(max(full.end_step, t0) + 4, len(full.actions))
        assert short.actions == full.actions[:len(short.actions)] and short.end_step == full.end_step
    # pretraining tasks: the seed draws the task; a task string fixes it
    assert steer(base, layer, layout_seed=3, task="2-3-6-7-2-3").task == (2, 3, 6, 7, 2, 3)
    tasks = {steer(base, layer, layout_seed=s, task="pretrain").task for s in range(6)}
    assert len(tasks) > 1
    from irl_core.envs.grid import GridPinpadEnv
    env = GridPinpadEnv("pretrain")
    _, info = env.reset(seed=5)  # the Overview page's episode of seed 5
    r = steer(base, layer, layout_seed=5, task="pretrain")
    assert r.layout.tolist() == env.layout.tolist() and r.start == env.agent and r.task == info["task"]
    several = steer_batch(base, layer, None, layout_seed=0, greedy=False, episodes=3, seed=1)
    assert len(several) == 3 and len({tuple(r.layout) for r in several}) == 1


def test_paper_outcome_rules():
    task = (0, 1, 2, 3)
    assert paper_outcome(task, [0, 1, 2, 3], [2, 5, 9, 12], 13) == (True, "success", 13, 4)
    assert paper_outcome(task, [0, 5, 1], [2, 4, 7], 20) == (False, "wrong colour", 5, 1)
    assert paper_outcome(task, [0, 1], [2, 5], 100) == (False, "time limit", 100, 2)
    assert paper_outcome(task, [], [], 100) == (False, "time limit", 100, 0)


# --- the latent map ---------------------------------------------------------------------------------------
def test_segments():
    beta = np.array([0.9, 0.1, 0.2, 0.8, 0.1, 0.6, 0.0, 0.9])
    assert segments(beta, 7) == [(0, 2), (3, 4), (5, 6)]  # β_0 never splits; steps ≥ length are ignored
    assert segments(np.zeros(5), 5) == [(0, 4)]
    assert segments(np.ones(3), 3) == [(0, 0), (1, 1), (2, 2)]


def test_projection_round_trip():
    rng = np.random.default_rng(0)
    codes2 = rng.normal(size=(40, 2)) @ np.array([[2.0, 0.5], [0.0, 1.0]]) + 3.0
    proj, ratio = fit_projection(codes2)
    assert np.allclose(proj.to_code(proj.to_xy(codes2)), codes2, atol=1e-9), "n_z = 2: the plane holds every code"
    assert ratio.sum() == pytest.approx(1.0)
    from sklearn.decomposition import PCA
    codes8 = rng.normal(size=(60, 8))
    proj8, _ = fit_projection(codes8)
    pca = PCA(2).fit(codes8)
    assert np.allclose(proj8.to_code(proj8.to_xy(codes8)), pca.inverse_transform(pca.transform(codes8)), atol=1e-8)
    back = Projection.from_dict({"mean": proj8.mean.tolist(), "components": proj8.components.tolist()})
    assert np.allclose(back.to_code([0.3, -1.2]), proj8.mean + np.array([0.3, -1.2]) @ proj8.components)
    one, _ = fit_projection(np.ones((5, 8)))  # identical codes: no direction, no NaN
    assert np.isfinite(one.components).all() and np.allclose(one.to_code([1.0, 1.0]), 1.0)


def test_latent_map_points_map_back_to_their_codes(base):
    layer = base.n_layers // 2
    meta = strong_meta(base.cfg.d_model, n_z=2, scale=1.0)
    rep = latent_map(base, meta, layer, episodes=12, seed=0)
    proj = validate_latent_map(json.loads(json.dumps(rep)))  # JSON-ready
    pts, codes, labels = np.asarray(rep["points"]), np.asarray(rep["codes"]), np.asarray(rep["labels"])
    assert pts.shape == (rep["n_segments"], 2) and codes.shape == (rep["n_segments"], 2)
    assert np.allclose(proj.to_code(pts), codes, atol=1e-4), "n_z = 2: a map point is its code"
    assert set(labels.tolist()) <= {-1, 0, 1, 2, 3} and (labels >= 0).any()
    assert rep["n_segments"] >= 12  # at least one segment per episode
    assert set(rep["displacement_r2"]) == {"rows", "columns"}
    for c in rep["centroids"].values():
        assert len(c["xy"]) == 2 and len(c["code"]) == 2 and c["count"] > 0
    # n_z = 8: map points give the PCA reconstruction of their codes
    meta8 = strong_meta(base.cfg.d_model, scale=1.0)
    rep8 = latent_map(base, meta8, layer, episodes=12, seed=0)
    from sklearn.decomposition import PCA
    codes8 = np.asarray(rep8["codes"])
    pca = PCA(2).fit(codes8)
    recon = pca.inverse_transform(pca.transform(codes8))
    assert np.allclose(Projection.from_dict(rep8["projection"]).to_code(np.asarray(rep8["points"])), recon, atol=1e-3)
    # the segment codes are the integrated z at each segment's last step, labelled by majority subgoal
    ep = heldout_episodes(4, 0, GRID7, "cpu")
    seg = segment_codes(base, meta8, layer, ep)
    assert (seg["last"] >= seg["first"]).all() and ((seg["purity"] > 0) | (seg["labels"] < 0)).all()
    assert np.bincount(seg["episode"], minlength=4).min() >= 1


@pytest.fixture(scope="module")
def meta_checkpoint(tiny_base, base, tmp_path_factory):
    """A saved (untrained, strong-decoder) metacontroller that records the tiny base model."""
    d = tmp_path_factory.mktemp("meta")
    meta = strong_meta(base.cfg.d_model)
    path = d / "metacontroller"
    save_metacontroller(path, meta, base, base.n_layers // 2, discovery_preset("tiny"), {"base_checkpoint": str(tiny_base)})
    return path


def _py(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "irl_core", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_cli_latent_map_and_steer(meta_checkpoint, tiny_base, tmp_path, capsys):
    from irl_core.cli import main
    out = tmp_path / "reports" / "latent_map.json"
    p = _py("latent-map", "--checkpoint", str(meta_checkpoint), "--episodes", "6", "--out", str(out))  # the real entry point
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    validate_latent_map(rep)
    assert rep["episodes"] == 6 and rep["metacontroller_sha256"] and "latent-map" in rep["command"]
    assert len(rep["points"]) == len(rep["labels"]) == len(rep["codes"]) == rep["n_segments"]
    # steer (in-process): a latent code, a map point, no control; docs/design.md's rollouts format (+ delta_ratio)
    npz = tmp_path / "steer.npz"
    assert main(["steer", "--metacontroller", str(meta_checkpoint), "--code", ",".join(["1.5"] * 8), "--t0", "2",
                 "--layout-seed", "4", "--episodes", "2", "--sample", "--no-cut", "--diagnostic-steps", "10",
                 "--out", str(npz)]) == 0
    with np.load(npz) as f:
        assert f["layout"].shape == (2, 7, 7) and f["layout"].dtype == np.int8
        assert f["start"].shape == (2, 2) and f["task"].shape == (2, 12) and f["success"].dtype == bool
        assert f["actions"].dtype == np.int8 and f["delta_ratio"].shape == f["actions"].shape
        assert (f["delta_ratio"][:, :2] == 0).all() and (f["delta_ratio"][:, 2][f["actions"][:, 2] >= 0] > 0).all()
    assert main(["steer", "--metacontroller", str(meta_checkpoint), "--xy", "0.1,-0.2", "--latent-map", str(out),
                 "--out", str(tmp_path / "xy.npz")]) == 0
    assert main(["steer", "--base", str(tiny_base), "--out", str(tmp_path / "plain.npz")]) == 0
    capsys.readouterr()
    assert main(["steer", "--metacontroller", str(meta_checkpoint), "--code", "1,2", "--out", str(tmp_path / "bad.npz")]) == 2
    assert "8 entries" in capsys.readouterr().err
    assert main(["latent-map", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.json")]) == 2
    assert "not found" in capsys.readouterr().err


# --- the page (AppTest) -----------------------------------------------------------------------------------
def make_set(folder: Path, tiny_base: Path, meta_checkpoint: Path | None, gt: bool = True, latent: bool = True) -> Path:
    """A checkpoint set: the tiny base, optionally GT controllers, a metacontroller and its latent map."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in (".json", ".safetensors"):
        shutil.copyfile(Path(tiny_base).with_suffix(s), (folder / "base").with_suffix(s))
    model = load_base_model(folder / "base")
    if gt:
        save_gt_controllers(folder / "gt_controllers", strong_gt(model.cfg.d_model, model.n_layers // 2), {})
    if meta_checkpoint is not None:
        for s in (".json", ".safetensors"):
            shutil.copyfile(Path(meta_checkpoint).with_suffix(s), (folder / "metacontroller").with_suffix(s))
        if latent:
            from irl_core.checkpoints import atomic_write_json
            from irl_core.discovery import load_metacontroller
            from irl_core.latent_map import file_digest
            meta, m, layer, _ = load_metacontroller(folder / "metacontroller", base=folder / "base")
            rep = latent_map(m, meta, layer, episodes=8)
            rep["metacontroller_sha256"] = file_digest(folder / "metacontroller.safetensors")
            atomic_write_json(folder / "reports" / "latent_map.json", rep)
    return folder


def _run_page(monkeypatch, root: Path | None, set_name: str = "grid"):
    """The page on the shipped checkpoints (``root`` None: the first shipped set) or on ``root/set_name``."""
    from streamlit.testing.v1 import AppTest

    from irl_core import app_state
    at = AppTest.from_file(PAGE, default_timeout=180)
    if root is None:
        monkeypatch.delenv("IRL_CHECKPOINTS_DIR", raising=False)
    else:
        monkeypatch.setenv("IRL_CHECKPOINTS_DIR", str(root))
        at.session_state[app_state.SET_KEY] = str(root / set_name)
    at = at.run()
    assert not at.exception, at.exception
    return at


def test_page_on_shipped_checkpoints(monkeypatch):
    at = _run_page(monkeypatch, None)
    assert at.title[0].value.startswith("Steering")
    assert len(at.get("plotly_chart")) >= 2  # steered and base-model rollouts (+ the Δresid curve)
    at.radio(key="steer_gt").set_value("gt-sequence").run()
    assert not at.exception
    at.radio(key="steer_mode").set_value("latent").run()
    assert not at.exception
    if not (ROOT / "checkpoints" / "grid5" / "metacontroller.safetensors").exists():
        assert any("python -m irl_core discover" in w.value for w in at.warning)
    at.number_input(key="steer_seed").set_value(-3).run()
    assert not at.exception and any("between 0 and" in e.value for e in at.error)


def test_page_on_an_empty_checkpoint_folder(monkeypatch, tmp_path):
    at = _run_page(monkeypatch, tmp_path)
    assert at.warning and "python -m irl_core pretrain" in at.warning[0].value


def test_page_latent_modes_and_broken_files(monkeypatch, tmp_path, tiny_base, meta_checkpoint):
    root = tmp_path / "root"
    make_set(root / "grid", tiny_base, meta_checkpoint, gt=False)
    at = _run_page(monkeypatch, root)
    assert any("ground-truth controllers are not available" in w.value for w in at.warning)
    at.radio(key="steer_mode").set_value("latent").run()
    assert not at.exception and not at.warning
    caption = next(c.value for c in at.caption if c.value.startswith("z = ["))
    centroid = next((b.key for b in at.button if (b.key or "").startswith("steer_cent") and b.key != "steer_cent_mean"), None)
    if centroid:  # the mean code of a subgoal's segments
        at.button(key=centroid).click().run()
        assert not at.exception and next(c.value for c in at.caption if c.value.startswith("z = [")) != caption
    at.radio(key="steer_how").set_value("sliders").run()
    at.slider(key="steer_z0").set_value(2.5).run()
    assert not at.exception
    assert next(c.value for c in at.caption if c.value.startswith("z = [")) != caption
    at.slider(key="steer_t0").set_value(5).run()
    assert not at.exception
    # a corrupt metacontroller and a corrupt latent map give warnings, not exceptions
    (root / "grid" / "reports" / "latent_map.json").write_text("{not json")
    at = _run_page(monkeypatch, root)
    at.radio(key="steer_mode").set_value("latent").run()
    assert not at.exception and any("latent_map.json" in w.value for w in at.warning)
    (root / "grid" / "metacontroller.safetensors").write_bytes(b"garbage")
    at = _run_page(monkeypatch, root)
    at.radio(key="steer_mode").set_value("latent").run()
    assert not at.exception and any("metacontroller" in w.value for w in at.warning)


def test_code_steering_counts_the_first_colour_entered(base):
    meta = strong_meta(base.cfg.d_model)
    layer = base.n_layers // 2
    codes = {"0": [1.5] * 8, "2": [-1.5] * 8}
    out = code_steering(base, meta, layer, codes, layouts=3)
    assert out["layouts"] == 3 and set(out["first_colour"]) == {"0", "2"}
    subgoal_of = base.world.tasks.subgoal_of_colour
    for g, z in codes.items():  # the same rollouts, one by one
        runs = [steer(base, layer, z, meta=meta, layout_seed=s, end_on_wrong=False) for s in range(3)]
        hits = sum(bool(r.colours) and int(subgoal_of(r.colours[0])) == int(g) for r in runs)
        assert out["first_colour"][g] == hits / 3
        assert out["none"][g] == sum(not r.colours for r in runs) / 3
    with pytest.raises(ValueError, match="layouts"):
        code_steering(base, meta, layer, codes, layouts=0)


@pytest.mark.parametrize("world", [GRID5, GRID7])
def test_segment_displacement_points_at_the_colour_entered_next(world):
    """One step before the expert enters the colour it heads for, that colour is one cell away; at the start of
    an episode the offset is the colour's cell minus the start cell."""
    ep = heldout_episodes(16, 3, world, "cpu")
    progress, length = ep["progress"].numpy(), ep["length"].numpy()
    episode, first = [], []
    for b in range(16):
        for t in range(int(length[b]) - 1):
            if progress[b, t + 1] == progress[b, t] + 1:
                episode.append(b), first.append(t)
    d = segment_displacement(ep, np.array(episode), np.array(first), world)
    assert len(d) >= 16 and (np.abs(d).sum(1) == 1).all()
    d0 = segment_displacement(ep, np.arange(16), np.zeros(16, dtype=int), world)
    start = ep["pos"][:, 0].numpy()
    cells = (ep["layout"].numpy() == ep["task"][:, :1].numpy()).argmax(1)
    assert np.array_equal(d0, np.stack([cells // world.size - start // world.size, cells % world.size - start % world.size], 1))


def test_code_displacement_reads_what_a_code_carries():
    rng = np.random.default_rng(0)
    disp = rng.integers(-4, 5, size=(300, 2)).astype(float)
    carries_columns = np.concatenate([disp[:, 1:] * 0.7 + 0.01 * rng.normal(size=(300, 1)), rng.normal(size=(300, 3))], 1)
    r = code_displacement(carries_columns, disp)
    assert r["columns"] > 0.99 and r["rows"] < 0.05
    assert cross_validated_r2(rng.normal(size=(300, 2)), rng.normal(size=300)) < 0.05
    assert np.isnan(cross_validated_r2(np.zeros((4, 1)), np.arange(4.0)))


def test_axis_steering_reports_where_the_first_colour_lies(base):
    """Codes along the map's first axis: the offsets it reports are those of the rollouts it runs."""
    layer = base.n_layers // 2
    meta = strong_meta(base.cfg.d_model, scale=1.0)
    rep = latent_map(base, meta, layer, episodes=8, seed=0)
    axis = axis_steering(base, meta, layer, rep, points=2, layouts=3)
    assert len(axis["x"]) == len(axis["column_offset"]) == len(axis["none"]) == 2 and axis["x"][0] <= axis["x"][1]
    G = base.world.size
    z = Projection.from_dict(rep["projection"]).to_code([[axis["x"][0], 0.0]])[0]
    cols, none = [], 0
    for seed in range(3):
        r = steer(base, layer, list(map(float, z)), meta=meta, layout_seed=seed, end_on_wrong=False)
        if r.colours:
            cols.append(list(r.layout).index(r.colours[0]) % G - r.start % G)
        else:
            none += 1
    assert axis["none"][0] == none / 3
    if cols:
        assert axis["column_offset"][0] == pytest.approx(np.mean(cols))
        assert 0 <= axis["column_rank"][0] <= base.world.n_colours - 1
    with pytest.raises(ValueError, match="≥ 2 points"):
        axis_steering(base, meta, layer, rep, points=1)


def test_map_bounds_hold_the_points_and_draw_a_flat_cloud_as_a_line():
    rng = np.random.default_rng(1)
    flat = np.stack([rng.normal(size=200) * 2.0, rng.normal(size=200) * 0.01], 1)
    b = map_bounds(flat)
    (x0, x1), (y0, y1) = b["x"], b["y"]
    assert x0 < flat[:, 0].min() and x1 > flat[:, 0].max() and y0 < flat[:, 1].min() and y1 > flat[:, 1].max()
    assert (y1 - y0) == pytest.approx(0.25 * (x1 - x0))  # stretched to a quarter of the first axis
    round_cloud = rng.normal(size=(200, 2))
    rb = map_bounds(round_cloud)
    assert rb["y"][1] - rb["y"][0] == pytest.approx(1.3 * np.ptp(round_cloud[:, 1]))  # its own extent + 15% a side
    assert map_bounds(np.zeros((3, 2)))["x"] == [-0.5, 0.5]
