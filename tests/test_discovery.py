"""Discovery pipeline on the tiny preset: training, metrics, checkpoints, switching export, α sweep."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from irl_core.checkpoints import CheckpointError
from irl_core.sweeps import run_sweep
from irl_core.discovery import (code_accuracy, discovery_preset, segment_ends, export_switching, load_metacontroller,
                                train)
from irl_core.pretrain import load_base_model
from irl_core.runs import Run
from irl_core.switching import switch_alignment

ROOT = Path(__file__).resolve().parent.parent


def _py(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "irl_core", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_alpha_warmup_ramps_then_holds():
    cfg = discovery_preset("tiny", alpha=0.3, alpha_warmup=10)
    assert [round(cfg.alpha_at(s), 6) for s in (0, 4, 9, 10, 500)] == [0.03, 0.15, 0.3, 0.3, 0.3]
    assert discovery_preset("tiny", alpha=0.3).alpha_at(0) == 0.3  # no warm-up: the paper's constant α
    with pytest.raises(ValueError, match="alpha_warmup"):
        discovery_preset("tiny", alpha_warmup=-1)


def test_code_accuracy_reads_the_code_at_each_segment_end():
    # two episodes, segments [0..2] (subgoal 0) and [3..5] (subgoal 1); the code held in each segment
    beta = np.array([[1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 0, 0]], dtype=np.float32)
    sub = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
    length = np.array([6, 6])
    z = np.zeros((2, 6, 2), dtype=np.float32)
    z[:, :3, 0], z[:, 3:, 1] = 1.0, 1.0  # subgoal 0 → e₀, subgoal 1 → e₁
    assert code_accuracy(beta, z, sub, length) == 1.0
    z_swapped = z.copy()
    z_swapped[1] = z[1, ::-1]  # the second episode's codes name the other subgoal: centroids coincide
    assert code_accuracy(beta, z_swapped, sub, length) < 1.0
    assert np.isnan(code_accuracy(beta, z, np.zeros_like(sub), length))  # one subgoal: nothing to tell apart
    codes, labels, episode, first = segment_ends(beta, z, sub, np.array([6, 4]))  # episode 1 ends at step 4
    assert labels.tolist() == [0, 1, 0, 1] and episode.tolist() == [0, 0, 1, 1] and first.tolist() == [0, 3, 0, 3]
    assert codes.tolist() == [[1, 0], [0, 1], [1, 0], [0, 1]]  # episode 1's second segment ends at step 3


# --- alignment metrics on hand-made arrays ---------------------------------------------------------------
SUBGOAL = np.array([[0, 0, 0, 1, 1, 1, 1, 1, 2, 2],
                    [3, 3, 1, 1, 1, 1, 1, 0, 0, -1]])
LENGTH = np.array([10, 9])


def _beta(times, shape=SUBGOAL.shape):
    b = np.zeros(shape, dtype=np.float32)
    for i, t in times:
        b[i, t] = 1.0
    return b


def test_alignment_perfect():
    m = switch_alignment(_beta([(0, 3), (0, 8), (1, 2), (1, 7)]), SUBGOAL, LENGTH)
    assert m["precision"] == m["recall"] == m["f1"] == 1.0
    assert m["binary_fraction"] == 1.0 and m["switches"] == 2.0 and m["true_changes"] == 2.0


def test_alignment_shifted_by_one_is_tolerated_by_two_is_not():
    late = switch_alignment(_beta([(0, 4), (0, 9), (1, 3), (1, 8)]), SUBGOAL, LENGTH)
    assert late["f1"] == 1.0
    early = switch_alignment(_beta([(0, 2), (0, 7), (1, 1), (1, 6)]), SUBGOAL, LENGTH)
    assert early["f1"] == 1.0
    far = switch_alignment(_beta([(0, 5), (1, 4), (1, 9)]), SUBGOAL, LENGTH)  # (1, 9) is padding
    assert far["precision"] == 0.0 and far["recall"] == 0.0 and far["f1"] == 0.0


def test_alignment_missing_and_extra_switches():
    missing = switch_alignment(_beta([(0, 3), (1, 2)]), SUBGOAL, LENGTH)
    assert missing["precision"] == 1.0 and missing["recall"] == 0.5
    assert missing["f1"] == pytest.approx(2 / 3)
    none = switch_alignment(np.zeros(SUBGOAL.shape), SUBGOAL, LENGTH)
    assert none["recall"] == 0.0 and none["f1"] == 0.0 and none["switches"] == 0.0
    always = switch_alignment(np.ones(SUBGOAL.shape), SUBGOAL, LENGTH)
    assert always["recall"] == 1.0 and always["precision"] == pytest.approx(4 / 17)
    # a single switch at t = 0 (the co-training collapse) is counted but never aligned
    first = switch_alignment(_beta([(0, 0), (1, 0)]), SUBGOAL, LENGTH)
    assert first["switches"] == 1.0 and first["recall"] == 0.0
    # one switch cannot match two changes; padding beyond length is ignored
    b = _beta([(0, 3)])
    b[1, 9] = 1.0
    assert switch_alignment(b, SUBGOAL, LENGTH)["switches"] == 0.5
    half = np.full(SUBGOAL.shape, 0.5)
    assert switch_alignment(half, SUBGOAL, LENGTH)["binary_fraction"] == 0.0
    with pytest.raises(ValueError):
        switch_alignment(np.zeros((2, 3)), SUBGOAL, LENGTH)


# --- training -----------------------------------------------------------------------------------------
def test_discovery_pipeline_end_to_end(tiny_base, tmp_path):
    base = load_base_model(tiny_base)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    run = Run(tmp_path / "run")
    result = train(base, discovery_preset("tiny", alpha=0.1), run, seed=0, progress=False, base_checkpoint=str(tiny_base))
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), f"frozen base parameter {k} changed"
    for key in ("rate", "distortion", "switches", "precision", "recall", "f1", "binary_fraction"):
        assert np.isfinite(result[key]), key
    rows = run.metrics()
    names = set().union(*rows)
    assert {"losses/action_nll", "losses/kl", "charts/switches", "eval/f1", "eval/binary_fraction"} <= names
    assert run.status()["status"] == "done"
    assert json.loads((run.path / "result.json").read_text())["alpha"] == 0.1
    # the metacontroller changed, and a rerun of the finished run resumes without retraining
    meta, _, layer, info = load_metacontroller(run.checkpoint_dir / "metacontroller")
    assert layer == base.n_layers // 2 and info["base_checkpoint"] == str(tiny_base)
    again = train(base, discovery_preset("tiny", alpha=0.1), run, seed=0, progress=False, base_checkpoint=str(tiny_base))
    assert again["distortion"] == pytest.approx(result["distortion"])
    with pytest.raises(CheckpointError, match="different config"):
        train(base, discovery_preset("tiny", alpha=0.3), run, seed=0, progress=False, base_checkpoint=str(tiny_base))
    # switching export (docs/design.md format)
    out = tmp_path / "sw.npz"
    m = export_switching(run.checkpoint_dir / "metacontroller", out, episodes=6, seed=0)
    with np.load(out) as f:
        assert f["beta"].dtype == np.float32 and f["subgoal"].dtype == np.int8
        assert f["beta"].shape == f["subgoal"].shape and f["beta"].shape[0] == 6 and f["length"].shape == (6,)
        assert ((f["beta"] >= 0) & (f["beta"] <= 1)).all()
    assert 0 <= m["f1"] <= 1


def test_a_finished_run_extended_to_more_steps_is_the_longer_run(tiny_base, tmp_path):
    base = load_base_model(tiny_base)
    cfg = discovery_preset("tiny", steps=6, checkpoint_every=3)
    full = train(base, cfg, Run(tmp_path / "a"), seed=1, progress=False)
    r3 = Run(tmp_path / "b")
    train(base, discovery_preset("tiny", steps=3, checkpoint_every=3), r3, seed=1, progress=False)
    with pytest.raises(CheckpointError, match="different config"):  # fewer steps, or another knob: refused
        train(base, discovery_preset("tiny", steps=2, checkpoint_every=3), r3, seed=1, progress=False)
    with pytest.raises(CheckpointError, match="different config"):
        train(base, discovery_preset("tiny", steps=6, checkpoint_every=3, alpha=0.5), r3, seed=1, progress=False)
    resumed = train(base, cfg, r3, seed=1, progress=False)  # more steps: the finished 3-step run goes on to 6
    assert resumed["steps"] == 6 and json.loads((r3.path / "status.json").read_text())["step"] == 6
    assert resumed["distortion"] == pytest.approx(full["distortion"], rel=1e-4)
    assert resumed["rate"] == pytest.approx(full["rate"], rel=1e-4)
    assert [json.loads(l)["step"] for l in (r3.path / "metrics.jsonl").read_text().splitlines()] == \
           [json.loads(l)["step"] for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]


def test_variants_beta1_and_cotrained(tiny_base, tmp_path):
    base = load_base_model(tiny_base)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    r = train(base, discovery_preset("tiny", variant="beta1", steps=2), Run(tmp_path / "b1"), progress=False,
              base_checkpoint=str(tiny_base))
    assert r["binary_fraction"] == 1.0
    run = Run(tmp_path / "co")
    train(base, discovery_preset("tiny", variant="cotrained", steps=2), run, progress=False)
    meta, model, _, _ = load_metacontroller(run.checkpoint_dir / "metacontroller")
    # co-training starts from a random base (not the pretrained one) and trains it; the loaded one is its own
    assert not all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k])


def test_corrupted_or_mismatched_checkpoint_is_refused(tiny_base, tmp_path):
    base = load_base_model(tiny_base)
    run = Run(tmp_path / "run")
    train(base, discovery_preset("tiny", steps=1), run, progress=False, base_checkpoint=str(tiny_base))
    ck = run.checkpoint_dir / "metacontroller"
    # wrong shapes: a config with another code size
    desc = json.loads(ck.with_suffix(".json").read_text())
    desc["config"]["meta"]["n_z"] = 5
    bad = tmp_path / "mismatch"
    bad.with_suffix(".json").write_text(json.dumps(desc))
    bad.with_suffix(".safetensors").write_bytes(ck.with_suffix(".safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="mismatch.safetensors"):
        load_metacontroller(bad)
    # a base model of another width
    from irl_core.checkpoints import save_checkpoint
    from irl_core.models.transformer import KIND as BASE_KIND, GridTransformer, TransformerConfig
    other = GridTransformer(TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_mlp=32))
    save_checkpoint(tmp_path / "other_base", other.state_dict(), BASE_KIND, other.config_dict())
    with pytest.raises(CheckpointError, match="d_model"):
        load_metacontroller(ck, base=tmp_path / "other_base")
    # another kind
    with pytest.raises(CheckpointError, match="expected 'metacontroller'"):
        load_metacontroller(tiny_base)
    # corrupted weights
    ck.with_suffix(".safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_metacontroller(ck)
    r = _py("switching", "--checkpoint", str(ck), "--out", str(tmp_path / "x.npz"), "--episodes", "2")
    assert r.returncode == 2 and "corrupted" in r.stderr and "metacontroller.safetensors" in r.stderr


# --- CLI ----------------------------------------------------------------------------------------------
def test_sweep_subprocesses_switching_cli_and_resume(tiny_base, tmp_path, capsys):
    """Two tiny points run as ``python -m irl_core discover`` subprocesses; a rerun (CLI) skips them."""
    table = run_sweep(tiny_base, tmp_path / "sweep", "tiny", alphas=[0, 0.5], seeds=[0], jobs=2,
                      overrides={"steps": 2}, progress=False)
    assert table["ran"] == 2 and table["skipped"] == 0 and not table["failed"]
    assert [(row["alpha"], row["variant"]) for row in table["rows"]] == [(0.0, "frozen"), (0.5, "frozen")]
    for row in table["rows"]:
        assert {"rate", "distortion", "switches", "precision", "recall", "f1", "binary_fraction", "seed"} <= set(row)
        assert row["steps"] == 2
    point = Path(table["rows"][0]["run_dir"])
    assert (point / "metrics.jsonl").exists() and (point / "log.txt").exists()
    r = _py("sweep", "--base", str(tiny_base), "--preset", "tiny", "--alphas", "0,0.5", "--seeds", "0",
            "--out-dir", str(tmp_path / "sweep"), "--table", str(tmp_path / "table.json"), "--steps", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads((tmp_path / "table.json").read_text())
    assert again["ran"] == 0 and again["skipped"] == 2
    without_exports = lambda rows: [{k: v for k, v in r.items() if k != "switching"} for r in rows]
    assert without_exports(again["rows"]) == without_exports(table["rows"])
    # beside a written table: every point's switching export, on the D* it was trained on, named in its row
    assert all(r["switching"] is None for r in table["rows"])  # no --table, no exports
    exports = [tmp_path / r["switching"] for r in again["rows"]]
    assert [e.name for e in exports] == ["frozen_alpha0_seed0.npz", "frozen_alpha0.5_seed0.npz"]
    assert all(e.parent.name == "sweep_switching" for e in exports)
    with np.load(exports[0]) as f:
        assert f["beta"].shape[0] == 200 and str(f["dstar_ties"]) == "random"
        assert str(f["checkpoint"]).endswith("frozen_alpha0_seed0/checkpoints/metacontroller")
    from irl_core.reports import load_switching
    assert load_switching(path=exports[1])["dstar_ties"] == "random"
    before = exports[0].stat().st_mtime_ns
    # --collect tabulates every finished point whatever --alphas says, and launches nothing
    r = _py("sweep", "--base", str(tiny_base), "--preset", "tiny", "--alphas", "1", "--collect",
            "--out-dir", str(tmp_path / "sweep"), "--table", str(tmp_path / "collected.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    collected = json.loads((tmp_path / "collected.json").read_text())
    assert collected["rows"] == again["rows"] and not (tmp_path / "sweep" / "points" / "frozen_alpha1_seed0").exists()
    assert exports[0].stat().st_mtime_ns == before  # an export newer than its metacontroller is kept
    from irl_core.sweeps import point_switching
    fixed = tmp_path / "fixed" / point.name
    shutil.copytree(point, fixed)
    config = json.loads((fixed / "config.json").read_text())
    (fixed / "config.json").write_text(json.dumps(dict(config, dstar_ties="first")))
    with np.load(point_switching(fixed, tmp_path / "fixed_exports", episodes=8)) as f:
        assert str(f["dstar_ties"]) == "first" and f["beta"].shape[0] == 8
    # the table's example episodes are of the point's own D* too (the copied cache, of random ties, is redone)
    from irl_core.sweeps import EXAMPLE_EPISODES, EXAMPLE_SEED, point_examples
    from irl_core.data import heldout_episodes
    from irl_core.discovery import infer
    assert json.loads((fixed / "examples.json").read_text()).get("ties", "random") == "random"
    ex = point_examples(fixed, EXAMPLE_EPISODES, EXAMPLE_SEED)
    meta, model, layer, _ = load_metacontroller(point / "checkpoints" / "metacontroller")
    on_first = infer(model, meta, layer, heldout_episodes(EXAMPLE_EPISODES, EXAMPLE_SEED, model.world, ties="first"))
    assert ex["ties"] == "first" and json.loads((fixed / "examples.json").read_text())["ties"] == "first"
    for got, want, k in zip(ex["beta"], on_first["beta"], ex["length"]):
        np.testing.assert_allclose(got, np.asarray(want[:k], dtype=float), atol=1e-4)
    # the sweep folder's own copy of the table names no export (they lie beside the table, not beside it)
    assert all("switching" not in r for r in json.loads((tmp_path / "sweep" / "results.json").read_text())["rows"])
    r = _py("sweep", "--collect", "--out-dir", str(tmp_path / "no-sweep"))
    assert r.returncode == 2 and "--collect needs --out-dir" in r.stderr and "Traceback" not in r.stderr
    r = _py("switching", "--checkpoint", str(point / "checkpoints" / "metacontroller"), "--episodes", "4",
            "--out", str(tmp_path / "sw.npz"))
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "sw.npz") as f:
        assert {"beta", "subgoal", "length"} <= set(f.files) and f["beta"].shape[0] == 4
    from irl_core.cli import main
    assert main(["discover", "--base", str(tiny_base), "--preset", "tiny", "--steps", "1", "--alpha", "0.05",
                 "--run-dir", str(tmp_path / "one"), "--export", str(tmp_path / "mc"), "--quiet"]) == 0
    assert "F1" in capsys.readouterr().out and (tmp_path / "mc.safetensors").exists()
    assert load_metacontroller(tmp_path / "mc")[3]["discovery_config"]["alpha"] == 0.05
    assert main(["discover", "--base", str(tiny_base), "--preset", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_sweep_validates_before_launching(tiny_base, tmp_path):
    with pytest.raises(ValueError, match="variant"):
        run_sweep(tiny_base, tmp_path, "tiny", alphas=[0.1], variants=["bogus"], progress=False)
    assert not (tmp_path / "points").exists() or not any((tmp_path / "points").iterdir())


def test_sweep_tables_merge_points_of_one_sweep_only(tmp_path):
    from irl_core.sweeps import merged_rows
    row = lambda v, a, s, f1: {"variant": v, "alpha": a, "seed": s, "f1": f1}
    knobs = {"gumbel": True}
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"base_checkpoint": "b", "preset": "cpu", "overrides": knobs,
                                "rows": [row("frozen", 0.1, 0, 0.5), row("cotrained", 0.1, 0, 0.9)]}))
    merged = merged_rows([row("frozen", 0.1, 0, 1.0), row("frozen", 0.17, 0, 0.8)], path, "b", "cpu", knobs)
    assert [(r["variant"], r["alpha"], r["f1"]) for r in merged] == [("frozen", 0.1, 1.0), ("frozen", 0.17, 0.8),
                                                                    ("cotrained", 0.1, 0.9)]  # the new point wins
    with pytest.raises(ValueError, match="another base, preset or knobs"):
        merged_rows([], path, "b", "cpu", {"gumbel": False})
