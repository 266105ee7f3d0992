"""Pretraining (irl_core/pretrain.py): the micro-batched gradient, starting from a checkpoint, resuming."""
import pytest
import torch

from irl_core.checkpoints import CheckpointError
from irl_core.config import PRETRAIN_PRESETS, preset
from irl_core.data import expert_episodes, training_tensors
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.models.transformer import GridTransformer, pretrain_loss
from irl_core.pretrain import accumulate_gradients, export, train
from irl_core.runs import Run

NO_AMP = torch.autocast("cpu", enabled=False)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_length_sorted_chunks_give_the_whole_batch_gradient():
    cfg = preset(PRETRAIN_PRESETS, "tiny", chunks=3)
    torch.manual_seed(0)
    model = GridTransformer(cfg.model_config())
    episodes = expert_episodes(BatchedGridPinpad(10, "pretrain", seed=3))
    assert len(set(episodes["length"].tolist())) > 3  # lengths differ, so chunks are trimmed differently

    obs, actions = training_tensors(episodes, model.world)
    loss, whole = pretrain_loss(model, obs, actions, cfg.obs_coef)
    loss.backward()
    reference = _grads(model)
    model.zero_grad()
    chunked = accumulate_gradients(model, episodes, cfg, NO_AMP)
    for name, g in _grads(model).items():
        torch.testing.assert_close(g, reference[name], rtol=1e-4, atol=1e-6, msg=name)
    for k in ("action_nll", "obs_nll", "action_acc"):
        assert chunked[k] == pytest.approx(float(whole[k]), rel=1e-5)


def test_init_from_a_checkpoint_starts_from_its_weights_and_counts_its_episodes(tiny_base, tmp_path):
    cfg = preset(PRETRAIN_PRESETS, "tiny", steps=2, init_from=str(tiny_base))
    run = Run(tmp_path / "run")
    train(cfg, run, progress=False)
    rows = run.metrics()
    from irl_core.checkpoints import load_checkpoint
    _, _, meta = load_checkpoint(tiny_base)
    assert rows[-1]["charts/episodes"] == meta["episodes"] + 2 * cfg.batch_size
    # its first step's accuracy is the trained model's, not a random one's (tiny base: > 0.3; random: ~0.25)
    fresh = Run(tmp_path / "fresh")
    train(preset(PRETRAIN_PRESETS, "tiny", steps=2), fresh, progress=False, seed=5)
    assert rows[0]["losses/action_nll"] < fresh.metrics()[0]["losses/action_nll"]


def test_init_from_a_checkpoint_of_another_architecture_is_refused(tiny_base, tmp_path):
    cfg = preset(PRETRAIN_PRESETS, "tiny", init_from=str(tiny_base), d_model=48)
    with pytest.raises(CheckpointError, match="architecture differs.*d_model"):
        train(cfg, Run(tmp_path / "run"), progress=False)


def test_an_interrupted_run_resumes_on_the_same_curve(tmp_path):
    cfg = preset(PRETRAIN_PRESETS, "tiny", steps=20, log_every=5, checkpoint_every=5)
    whole = Run(tmp_path / "whole")
    a = train(cfg, whole, progress=False, seed=2)
    parts = Run(tmp_path / "parts")
    train(cfg, parts, progress=False, seed=2, stop_at=10)
    assert parts.status()["status"] == "cancelled"
    b = train(cfg, parts, progress=False, seed=2)
    curve = lambda run: [(r["step"], round(r["losses/action_nll"], 5)) for r in run.metrics()]
    assert curve(parts) == curve(whole)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=n)


def test_snapshots_are_loadable_base_models(tmp_path):
    from irl_core.pretrain import load_base_model
    cfg = preset(PRETRAIN_PRESETS, "tiny", steps=10, snapshot_every=5)
    run = Run(tmp_path / "run")
    model = train(cfg, run, progress=False)
    snap = load_base_model(run.checkpoint_dir / "step10")
    for p, q in zip(model.parameters(), snap.parameters()):
        torch.testing.assert_close(p, q)
    out = export(model, tmp_path / "ck" / "base", run, cfg, 0, "test")
    assert out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_gives_the_cpu_loss_in_fp32():
    cfg = preset(PRETRAIN_PRESETS, "tiny", chunks=2)
    torch.manual_seed(0)
    model = GridTransformer(cfg.model_config())
    episodes = expert_episodes(BatchedGridPinpad(16, "pretrain", seed=3))
    cpu = accumulate_gradients(model, episodes, cfg, NO_AMP)
    gpu_model = model.to("cuda")
    gpu = accumulate_gradients(gpu_model, {k: v.cuda() for k, v in episodes.items()}, cfg,
                               torch.autocast("cuda", enabled=False))
    assert gpu["action_nll"] == pytest.approx(cpu["action_nll"], rel=1e-4)


def test_probe_curve_over_a_runs_snapshots(tiny_base, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    cfg = preset(PRETRAIN_PRESETS, "tiny", steps=10, snapshot_every=5)
    run = Run(tmp_path / "run")
    train(cfg, run, progress=False)
    out = tmp_path / "curve.json"
    py = lambda *a: subprocess.run([sys.executable, "-m", "irl_core", *map(str, a)], capture_output=True, text=True,
                                   cwd=root)
    r = py("probe-curve", tiny_base, "--run-dir", run.path, "--episodes", 40, "--sample-episodes", 8, "--out", out)
    assert r.returncode == 0, r.stderr
    curve = json.loads(out.read_text())
    episodes = [p["episodes"] for p in curve["points"]]
    assert episodes == [5 * 16, 10 * 16, 20 * 16]  # the snapshots, then the tiny base model (20 steps), in order
    assert all(len(p["subgoal_probe"]["accuracy"]) == len(curve["layers"]) == 3 for p in curve["points"])
    assert all("gap" in p["history_use"] for p in curve["points"])
    # run again: the points already in the file are kept, not probed again
    r = py("probe-curve", tiny_base, "--run-dir", run.path, "--episodes", 40, "--sample-episodes", 8, "--out", out)
    assert r.returncode == 0 and json.loads(out.read_text())["points"] == curve["points"], r.stderr
    assert "history gap" not in r.stdout  # nothing was probed
    r = py("probe-curve", "--run-dir", tmp_path, "--out", out)
    assert r.returncode == 2 and "no snapshots" in r.stderr
