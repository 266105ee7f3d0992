"""Internal RL: the internal environment against a slow reference, decisions at β crossings, PPO
bookkeeping, every method on the tiny preset, resume, and CLI errors."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from irl_core.controllers import apply_control, freeze, lower, upper_logits
from irl_core.discovery import discovery_preset, load_metacontroller
from irl_core.discovery import train as train_metacontroller
from irl_core.envs.grid import GridPinpadEnv
from irl_core.rl.internal import AbstractActionPolicy, InternalEnv, collect_internal, load_policy
from irl_core.rl.ppo import RolloutNoise, normalised_advantages, ppo_objective, rl_preset, train
from irl_core.metacontroller import SwitchState
from irl_core.rl.methods import make_learner
from irl_core.models.hawk import HawkBlock
from irl_core.runs import Run, iter_metrics

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def metacontrollers(tiny_base, tmp_path_factory):
    """Tiny metacontrollers of every variant, trained for a few steps on the tiny base model."""
    from irl_core.pretrain import load_base_model
    d = tmp_path_factory.mktemp("metas")
    base = load_base_model(tiny_base)
    out = {}
    for variant in ("frozen", "beta1", "cotrained"):
        run = Run(d / variant)
        train_metacontroller(base, discovery_preset("tiny", variant=variant), run, 0, progress=False,
                             base_checkpoint=str(tiny_base))
        out[variant] = d / f"meta_{variant}"
        for suffix in (".safetensors", ".json"):
            shutil.copyfile((run.checkpoint_dir / "metacontroller").with_suffix(suffix), out[variant].with_suffix(suffix))
    return out


def _lively(meta, policy, seed=0):
    """Give the decoder and the policy's mean head random weights, so codes matter and the policy has memory."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (meta.decoder.out.weight, meta.decoder.out.bias, policy.mean.weight):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _setup(tiny_base, metacontrollers, batch=6, seed=3):
    meta, model, layer, _ = load_metacontroller(metacontrollers["frozen"], "cpu", tiny_base)
    policy = AbstractActionPolicy(model.cfg.d_model, meta.cfg.n_z, width=16)
    _lively(meta, policy)
    return model, freeze(meta), layer, policy, InternalEnv(model, meta, layer, batch, "heldout", "cpu", seed)


# --- the internal environment -------------------------------------------------------------------------------
@torch.no_grad()
def _reference_episode(model, meta, layer, policy, layout, start, task, action_u, z_eps):
    """Algorithm 1 for one episode, the slow way: full forward passes over the whole history (no KV cache),
    the numpy gymnasium env, one decision at a time. Returns (actions, decision times, success)."""
    env = GridPinpadEnv(task)
    obs, _ = env.reset(options={"layout": layout, "start": start})
    history = [torch.as_tensor(obs).float()]
    e = lower(model, torch.stack(history)[None], layer)[0, -1:]  # (1, d)
    state = meta.initial_state(1)
    logit, g = meta.switch_step(e, state)
    need, k = True, 0
    pstate = policy.initial_state(1)
    controlled, actions, decisions, success = [], [], [], False
    for t in range(env.t_max):
        if need:
            mu, pstate = policy.step(e, pstate)
            z = mu + policy.log_std.exp() * z_eps[k]
            decisions.append(t)
            k += 1
        controlled.append(apply_control(e, meta.decode(z))[0])
        logits = upper_logits(model, torch.stack(controlled)[None], layer)[0, -1]
        cdf = torch.softmax(logits, -1).cumsum(-1)
        a = int(min((cdf < action_u[t]).sum(), 3))
        actions.append(a)
        state = SwitchState(meta.history_step(e, state.h), g, z)
        obs, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            success = info["success"]
            break
        history.append(torch.as_tensor(obs).float())
        e = lower(model, torch.stack(history)[None], layer)[0, -1:]
        logit, g = meta.switch_step(e, state)
        need = bool(torch.sigmoid(logit)[0] > 0.5)
    return actions, decisions, success


def test_internal_env_equals_slow_reference(tiny_base, metacontrollers):
    model, meta, layer, policy, ienv = _setup(tiny_base, metacontrollers)
    g = torch.Generator().manual_seed(11)
    ro = collect_internal(ienv, policy, g, record=True)
    g.manual_seed(11)
    noise = RolloutNoise.draw(ienv.B, ienv.t_max, policy.n_z, g, "cpu")
    task = ro.episodes["task"]
    total_decisions = 0
    for i in range(ienv.B):
        t_i = [int(c) for c in task[i] if c >= 0]
        actions, decisions, success = _reference_episode(
            model, meta, layer, policy, ro.episodes["layout"][i].numpy(), int(ro.episodes["start"][i]), t_i,
            noise.action_u[i], noise.z_eps[i])
        n = int(ro.length[i])
        assert ro.data["actions"][i, :n].tolist() == actions
        assert ro.data["time"][i, : int(ro.decisions[i])].tolist() == decisions
        assert bool(ro.success[i]) == success
        total_decisions += len(decisions)
    assert total_decisions > ienv.B  # some episodes switched after t = 0: the comparison covered β crossings


def test_decisions_exactly_at_beta_crossings(tiny_base, metacontrollers):
    model, meta, layer, policy, ienv = _setup(tiny_base, metacontrollers)
    betas, needs = [], []
    step = ienv.step

    def spy(z, u):
        out = step(z, u)
        betas.append(ienv.beta.clone())
        needs.append(out[1].clone())
        return out

    ienv.step = spy
    ro = collect_internal(ienv, policy, torch.Generator().manual_seed(0))
    for i in range(ienv.B):
        n = int(ro.length[i])
        crossings = [t + 1 for t in range(n - 1) if betas[t][i] > 0.5]  # β_{t+1} is read after step t
        assert ro.data["time"][i, : int(ro.decisions[i])].tolist() == [0] + crossings
    with torch.no_grad():  # a gate stuck open decides every step, a closed one only at t = 0
        meta.switch.head.weight.zero_()
        meta.switch.head.bias.fill_(20.0)
    del ienv.step
    ro = collect_internal(ienv, policy, torch.Generator().manual_seed(0))
    assert torch.equal(ro.decisions, ro.length)
    with torch.no_grad():
        meta.switch.head.bias.fill_(-20.0)
    ro = collect_internal(ienv, policy, torch.Generator().manual_seed(0))
    assert torch.equal(ro.decisions, torch.ones_like(ro.decisions))


def test_finished_episodes_stay_frozen_and_are_not_mixed(tiny_base, metacontrollers):
    """Episodes end at different times; a batch of 6 gives each episode what it gets alone in a batch of 1."""
    model, meta, layer, policy, ienv = _setup(tiny_base, metacontrollers)
    ro = collect_internal(ienv, policy, torch.Generator().manual_seed(5), record=True)
    assert len(set(ro.length.tolist())) > 1
    g = torch.Generator().manual_seed(5)
    noise = RolloutNoise.draw(ienv.B, ienv.t_max, policy.n_z, g, "cpu")
    for i in (0, ienv.B - 1):
        single = InternalEnv(model, meta, layer, 1, "heldout", "cpu", 0)
        actions, decisions, success = _reference_episode(
            model, meta, layer, policy, ro.episodes["layout"][i].numpy(), int(ro.episodes["start"][i]),
            [int(c) for c in ro.episodes["task"][i] if c >= 0], noise.action_u[i], noise.z_eps[i])
        assert ro.data["actions"][i, len(actions):].eq(-1).all()
        assert single.B == 1 and len(decisions) == int(ro.decisions[i])


# --- the policy and PPO ------------------------------------------------------------------------------------
def test_hawk_sequence_form_equals_step_form():
    torch.manual_seed(0)
    block = HawkBlock(8)
    xs, mask = torch.randn(3, 5, 8), torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    seq = block(xs, mask)
    for i in range(3):
        state = block.initial_state(1, xs)
        for k in range(int(mask[i].sum())):
            y, state = block.step(xs[i:i + 1, k], state)
            assert torch.allclose(seq[i, k], y[0], atol=1e-6)


def test_untrained_policy_samples_the_prior():
    policy = AbstractActionPolicy(16, 8, width=16)
    mu, _ = policy.step(torch.randn(4, 16), policy.initial_state(4))
    assert torch.equal(mu, torch.zeros(4, 8)) and torch.equal(policy.log_std, torch.zeros(8))


def test_advantage_bookkeeping_with_episodes_of_different_lengths():
    returns = torch.tensor([1.0, 0.0, 0.0, 1.0])
    adv = normalised_advantages(returns, 1e-3)
    assert torch.allclose(adv, torch.tensor([0.5, -0.5, -0.5, 0.5]) / (0.5 + 1e-3))  # mean 0.5, std 0.5
    counts = torch.tensor([3, 1, 5, 2])
    mask = torch.arange(5).unsqueeze(0) < counts.unsqueeze(1)
    logp_old = torch.randn(4, 5)
    logp = logp_old.clone().requires_grad_(True)
    loss, m = ppo_objective(logp, logp_old, adv, mask, 0.2)
    loss.backward()
    # every decision of episode i gets −A_i / B, the padding nothing
    expected = torch.where(mask, -adv.unsqueeze(1) / 4, torch.zeros(()))
    assert torch.allclose(logp.grad, expected, atol=1e-6)
    assert float(m["ratio_max_dev"]) == 0.0 and float(m["clipfrac"]) == 0.0
    assert torch.allclose(normalised_advantages(torch.zeros(4)), torch.zeros(4))  # no signal, no update


def test_ppo_clips_the_ratio():
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 1, dtype=torch.bool)
    logp_old = torch.zeros(2, 1)
    logp = torch.log(torch.tensor([[1.5], [0.5]])).requires_grad_(True)  # ratios far outside 1 ± 0.2
    loss, m = ppo_objective(logp, logp_old, adv, mask, 0.2)
    loss.backward()
    assert torch.equal(logp.grad, torch.zeros(2, 1)) and float(m["clipfrac"]) == 1.0
    assert loss.item() == pytest.approx(-(1.2 * 1 + 0.8 * -1) / 2)  # the pessimistic (clipped) term both times


@pytest.mark.parametrize("method", ["internal-rl", "raw-action"])
def test_ppo_ratio_is_one_on_the_first_epoch(method, tiny_base, metacontrollers):
    cfg = rl_preset("tiny", method=method, batch_size=6)
    learner = make_learner(cfg, "cpu", 0, metacontrollers["frozen"], tiny_base)
    if method == "internal-rl":
        _lively(learner.meta, learner.policy)
    ro = learner.collect(torch.Generator().manual_seed(0))
    adv = torch.randn(6)
    _, m = learner.loss(ro, adv)
    assert float(m["ratio_max_dev"]) < 1e-4
    assert int(ro.decisions.sum()) > 0


# --- training runs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,variant", [("internal-rl", "frozen"), ("beta1", "beta1"), ("cotrained", "cotrained"),
                                            ("raw-action", None)])
def test_every_method_runs_on_the_tiny_preset(method, variant, tiny_base, metacontrollers, tmp_path):
    cfg = rl_preset("tiny", method=method)
    learner = make_learner(cfg, "cpu", 0, metacontrollers.get(variant), tiny_base)
    if method != "raw-action":
        before = {k: v.clone() for k, v in learner.model.state_dict().items()}
        meta_before = {k: v.clone() for k, v in learner.meta.state_dict().items()}
    run = Run(tmp_path / method)
    result = train(learner, cfg, run, 0, progress=False)
    rows = list(iter_metrics(run.path / "metrics.jsonl"))
    assert [r["charts/episodes"] for r in rows if "charts/success_rate" in r] == [8, 16, 24]
    assert rows[0]["charts/episodes"] == 0 and "eval/success_greedy" in rows[0]  # the success at episode 0
    assert 0.0 <= result["eval/success_greedy"] <= 1.0 and run.status()["status"] == "done"
    if method == "beta1":
        assert all(r["charts/decisions_per_episode"] == r["charts/episode_length"] for r in rows if "charts/SPS" in r)
    if method != "raw-action":  # everything but the policy is frozen
        assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())
        assert all(torch.equal(meta_before[k], v) for k, v in learner.meta.state_dict().items())


def test_learning_signal_moves_the_policy(tiny_base, metacontrollers, tmp_path):
    """With a reward that varies over the batch the PPO step changes the policy (and only the policy)."""
    cfg = rl_preset("tiny", method="internal-rl", task="pretrain", batch_size=8)
    learner = make_learner(cfg, "cpu", 0, metacontrollers["frozen"], tiny_base)
    ro = learner.collect(torch.Generator().manual_seed(0))
    returns = torch.arange(8.0)  # a synthetic return: any non-constant signal must produce a gradient
    loss, _ = learner.loss(ro, normalised_advantages(returns))
    loss.backward()
    grads = [p.grad for p in learner.policy.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_resume_continues_the_same_curve(tiny_base, metacontrollers, tmp_path):
    cfg = rl_preset("tiny", method="internal-rl", episodes=32)
    whole = Run(tmp_path / "whole")
    first = train(make_learner(cfg, "cpu", 0, metacontrollers["frozen"], tiny_base), cfg, whole, 0, progress=False)
    rows, saved = whole.metrics(), (whole.path / "result.json").read_text()
    again = train(make_learner(cfg, "cpu", 0, metacontrollers["frozen"], tiny_base), cfg, whole, 0, progress=False)
    assert again == first and "eval/success_greedy" in again  # a finished run is left as it was
    assert whole.metrics() == rows and (whole.path / "result.json").read_text() == saved
    assert whole.status()["status"] == "done"
    split = Run(tmp_path / "split")
    out = train(make_learner(cfg, "cpu", 0, metacontrollers["frozen"], tiny_base), cfg, split, 0, progress=False, stop_at=2)
    assert out == {"stopped_at": 2} and split.status()["status"] == "cancelled"
    learner = make_learner(cfg, "cpu", 0, metacontrollers["frozen"], tiny_base)
    train(learner, cfg, split, 0, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("time",) and "SPS" not in k and "second" not in k}
                          for r in rows]
    assert strip(whole.metrics()) == strip(split.metrics())


# --- CLI -------------------------------------------------------------------------------------------------------
def _py(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "irl_core", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_cli_run_export_rollouts_and_curves(tiny_base, metacontrollers, tmp_path):
    r = _py("internal-rl", "--preset", "tiny", "--metacontroller", str(metacontrollers["frozen"]), "--quiet",
            "--run-dir", str(tmp_path / "runs" / "a"), "--export", str(tmp_path / "policy"), "--threads", "1")
    assert r.returncode == 0, r.stderr
    policy, config, info = load_policy(tmp_path / "policy")
    assert config["method"] == "internal-rl" and info["metacontroller"] == str(metacontrollers["frozen"])
    r = _py("rollouts", "--policy", "internal-rl", "--policy-checkpoint", str(tmp_path / "policy"), "--task", "heldout",
            "--episodes", "5", "--out", str(tmp_path / "r.npz"))
    assert r.returncode == 0, r.stderr
    d = np.load(tmp_path / "r.npz")
    assert d["actions"].shape == (5, 100) and d["task"].shape == (5, 12) and (d["actions"][:, 0] >= 0).all()
    r = _py("rl-curves", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "curves.json"))
    assert r.returncode == 0, r.stderr
    curves = json.loads((tmp_path / "curves.json").read_text())["methods"]["internal-rl"]
    assert curves["runs"] == 1 and curves["eval_greedy"]["episodes"] == [0, 8, 16, 24]


def test_cli_errors_are_one_line(tiny_base, metacontrollers, tmp_path):
    r = _py("internal-rl", "--preset", "tiny", "--device", "cuda", "--metacontroller", str(metacontrollers["frozen"]))
    if not torch.cuda.is_available():
        assert r.returncode == 2 and "no CUDA GPU" in r.stderr and "Traceback" not in r.stderr
    r = _py("internal-rl", "--preset", "tiny", "--method", "beta1", "--metacontroller", str(metacontrollers["frozen"]))
    assert r.returncode == 2 and "needs a 'beta1' one" in r.stderr
    r = _py("internal-rl", "--preset", "tiny", "--method", "options")
    assert r.returncode == 2 and "unknown method" in r.stderr
    r = _py("internal-rl", "--preset", "tiny", "--method", "compile", "--metacontroller", str(metacontrollers["frozen"]))
    assert r.returncode == 2 and "needs a 'compile' one" in r.stderr and "Traceback" not in r.stderr
    r = _py("rl-curves", "--runs", str(tmp_path / "no-runs"), "--out", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "no finished internal-RL runs" in r.stderr
