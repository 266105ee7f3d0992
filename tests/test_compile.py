"""The CompILE baseline (irl_core/rl/baselines/compile.py): segments, loss, frozen base, checkpoints, internal RL."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from irl_core.rl.baselines.compile import CompILE, CompILESwitcher, compile_loss, compile_preset, load_compile
from irl_core.rl.baselines.compile import train as train_compile
from irl_core.checkpoints import CheckpointError
from irl_core.controllers import apply_control, freeze, lower, sequence_nll, upper_logits
from irl_core.data import expert_episodes, training_tensors, trim
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.rl.internal import AbstractActionPolicy, InternalEnv, collect_internal
from irl_core.rl.methods import make_learner
from irl_core.rl.ppo import rl_preset
from irl_core.rl.ppo import train as train_rl
from irl_core.pretrain import load_base_model
from irl_core.runs import Run, iter_metrics

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base(tiny_base):
    return freeze(load_base_model(tiny_base))  # as CompILE's training holds it


@pytest.fixture(scope="module")
def trained(tiny_base, base, tmp_path_factory):
    """A tiny CompILE trained for a few steps, with its checkpoint path and run."""
    run = Run(tmp_path_factory.mktemp("compile") / "run")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    net, result = train_compile(base, compile_preset("tiny"), run, 0, progress=False, base_checkpoint=str(tiny_base))
    return net, run.checkpoint_dir / "compile", run, before, result


def _episodes(n=6, seed=1):
    return trim(expert_episodes(BatchedGridPinpad(n, "pretrain", seed=seed)))


def test_segments_partition_the_valid_steps(base):
    torch.manual_seed(0)
    net = CompILE(base, compile_preset("tiny"), 1)
    eps = _episodes()
    obs, actions = training_tensors(eps, base.world)
    mask = (actions >= 0).float()
    for sample in (True, False):
        seg = net.segment(net.encode(obs[:, :-1]), mask, sample, torch.Generator().manual_seed(0))
        M = net.cfg.max_segments
        assert seg.masks.shape == (M, *mask.shape) and seg.z.shape == (M, mask.shape[0], net.n_z)
        torch.testing.assert_close(seg.masks.sum(0), mask)  # every valid step in exactly one segment (softly)
        assert bool((seg.kl_z >= 0).all()) and bool((seg.kl_b >= -1e-6).all()) and bool(torch.isfinite(seg.kl_b).all())
        if not sample:  # hard boundaries: 0/1 masks, each segment one contiguous run
            assert set(seg.masks.unique().tolist()) <= {0.0, 1.0}
            for m in seg.masks.permute(1, 0, 2):  # (M, T) of one episode
                owner = m.argmax(0)[m.sum(0) > 0]
                assert bool((owner[1:] >= owner[:-1]).all())


def test_hard_segments_decode_each_step_with_its_own_code(base):
    torch.manual_seed(0)
    cfg = compile_preset("tiny")
    net = CompILE(base, cfg, 1)
    with torch.no_grad():  # codes that matter
        net.decoder.out.weight.normal_(0, 0.3)
    eps = _episodes()
    _, m, seg = compile_loss(base, net, eps, cfg, sample=False)
    obs, actions = training_tensors(eps, base.world)
    z_t = torch.einsum("mbt,mbz->btz", seg.masks, seg.z)  # the code of each step's segment
    e = lower(base, obs[:, :-1], 1)
    nll, mask = sequence_nll(upper_logits(base, apply_control(e, net.decode(z_t)), 1), actions)
    assert float(m["action_nll"]) == pytest.approx(float(nll.detach().sum() / mask.sum()), rel=1e-5)


def test_gradients_reach_every_trained_part_and_not_the_base(base):
    torch.manual_seed(0)
    cfg = compile_preset("tiny")
    net = CompILE(base, cfg, 1)
    loss, _, _ = compile_loss(base, net, _episodes(), cfg, generator=torch.Generator().manual_seed(0))
    loss.backward()
    for name in ("embed.proj.weight", "blocks.0.mlp_in.weight", "boundary.0.weight", "latent.2.weight", "decoder.out.weight"):
        g = dict(net.named_parameters())[name].grad
        assert g is not None and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0, name
    assert all(p.grad is None for p in base.parameters())


def test_training_keeps_the_base_frozen_and_the_checkpoint_round_trips(trained, base, tiny_base):
    net, path, run, before, result = trained
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert run.status()["status"] == "done" and {"action_nll", "kl_z", "kl_b", "segments"} <= set(result)
    assert any("eval/action_nll" in r for r in iter_metrics(run.path / "metrics.jsonl"))
    loaded, model, layer, _ = load_compile(path)
    assert layer == net.layer
    for (k, v), w in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, w), k


def test_corrupted_or_mismatched_checkpoint_is_refused(trained, tmp_path):
    _, path, _, _, _ = trained
    bad = tmp_path / "bad"
    bad.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    bad.with_suffix(".safetensors").write_bytes(b"\0" * 32)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_compile(bad)
    desc = json.loads(path.with_suffix(".json").read_text())
    desc["config"]["compile"]["latent_hidden"] = 7
    wrong = tmp_path / "wrong"
    wrong.with_suffix(".json").write_text(json.dumps(desc))
    wrong.with_suffix(".safetensors").write_bytes(path.with_suffix(".safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="shape"):
        load_compile(wrong)


def test_internal_rl_with_compile_decides_every_ten_steps(trained):
    net, path, _, _, _ = trained
    switcher = CompILESwitcher(net).eval()
    model = load_base_model(json.loads(path.with_suffix(".json").read_text())["config"]["base_checkpoint"])
    ienv = InternalEnv(model, switcher, net.layer, 6, "pretrain", "cpu", seed=2)
    policy = AbstractActionPolicy(model.cfg.d_model, net.n_z, width=16)
    ro = collect_internal(ienv, policy, torch.Generator().manual_seed(0))
    times = ro.data["time"]
    for i in range(6):
        k = int(ro.decisions[i])
        assert times[i, :k].tolist() == list(range(0, 10 * k, 10))
        assert k == (int(ro.length[i]) - 1) // 10 + 1


def test_compile_method_trains_only_the_policy(trained, tiny_base, tmp_path):
    _, path, _, _, _ = trained
    cfg = rl_preset("tiny", method="compile")
    learner = make_learner(cfg, "cpu", 0, path, tiny_base)
    frozen = {k: v.clone() for k, v in learner.meta.state_dict().items()}
    result = train_rl(learner, cfg, Run(tmp_path / "rl"), 0, progress=False)
    assert 0.0 <= result["eval/success_greedy"] <= 1.0
    assert all(torch.equal(frozen[k], v) for k, v in learner.meta.state_dict().items())


def test_cli_compile_then_internal_rl(tiny_base, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    py = lambda *a: subprocess.run([sys.executable, "-m", "irl_core", *map(str, a)], capture_output=True, text=True,
                                   cwd=ROOT, env=env)
    r = py("compile", "--preset", "tiny", "--base", tiny_base, "--quiet", "--run-dir", tmp_path / "c",
           "--export", tmp_path / "compile")
    assert r.returncode == 0, r.stderr
    assert "segments/episode" in r.stdout
    r = py("internal-rl", "--preset", "tiny", "--method", "compile", "--metacontroller", tmp_path / "compile",
           "--quiet", "--run-dir", tmp_path / "rl")
    assert r.returncode == 0, r.stderr
    # add CompILE's curves to a report that holds another method's: both are kept
    report = tmp_path / "curves.json"
    report.write_text(json.dumps({"methods": {"internal-rl": {"runs": 3}}, "meta": {"command": "earlier"}}))
    r = py("rl-curves", "--runs", tmp_path / "rl", "--out", report, "--add")
    assert r.returncode == 0, r.stderr
    out = json.loads(report.read_text())
    assert sorted(out["methods"]) == ["compile", "internal-rl"] and out["methods"]["internal-rl"] == {"runs": 3}
    assert out["meta"]["commands"][0] == "earlier" and out["meta"]["kept_from_earlier"] == ["internal-rl"]
    r = py("compile", "--preset", "tiny", "--base", tiny_base, "--layer", "9")
    assert r.returncode == 2 and "controlled layer" in r.stderr and "Traceback" not in r.stderr
