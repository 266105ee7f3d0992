"""Residual-stream controllers and ground-truth subgoal controllers (docs/paper.md §4)."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from irl_core.controllers import (Control, GTControllers, Hypernetwork, apply_control, controlled_step,
                                  evaluate_gt_controllers, gt_controller_rollouts, gt_preset, load_gt_controllers,
                                  lower, save_gt_controllers, train_gt_controllers, upper_logits)
from irl_core.checkpoints import CheckpointError
from irl_core.data import DATASET_KEYS
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.pretrain import load_base_model
from irl_core.runs import Run

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def test_low_rank_controller_is_e_plus_U_e():
    torch.manual_seed(0)
    d, r = 12, 3
    a, b = torch.randn(2, 5, d, r), torch.randn(2, 5, d, r)
    e = torch.randn(2, 5, d)
    out = apply_control(e, Control(a, b))
    U = a @ b.transpose(-1, -2)  # (2, 5, d, d) = A Bᵀ
    for i in range(2):
        for t in range(5):
            assert torch.allclose(out[i, t], e[i, t] + U[i, t] @ e[i, t], atol=1e-5)
    # not a diagonal gain e ⊙ rowsum(U)
    assert not torch.allclose(out, e + e * U.sum(-1), atol=1e-3)
    assert torch.allclose(Control(a, b).matrix(), U)


def test_full_rank_controller_and_hypernetwork():
    torch.manual_seed(1)
    d = 10
    hyp = Hypernetwork(n_z=4, d_model=d, rank=0, hidden=8)
    torch.nn.init.normal_(hyp.out.weight)
    z, e = torch.randn(3, 4), torch.randn(3, d)
    c = hyp(z)
    assert c.b is None and c.a.shape == (3, d, d)
    assert torch.allclose(apply_control(e, c), e + (c.a @ e.unsqueeze(-1)).squeeze(-1), atol=1e-5)
    low = Hypernetwork(n_z=4, d_model=d, rank=2, hidden=8)
    cl = low(z)
    assert cl.a.shape == (3, d, 2) and cl.b.shape == (3, d, 2)
    assert torch.allclose(cl.matrix(), torch.zeros(3, d, d)), "LoRA-style init: U = 0 at the start"
    loss = apply_control(e, cl).pow(2).sum()
    loss.backward()
    assert low.out.weight.grad.abs().sum() > 0, "gradients reach the hypernetwork although U starts at 0"
    with pytest.raises(ValueError):
        Hypernetwork(4, d, rank=d + 1)


def test_split_step_matches_full_pass(tiny_base):
    """KV-cached lower → controller → upper steps equal the whole-sequence controlled pass."""
    model = load_base_model(tiny_base)
    ctrl = GTControllers(model.cfg.d_model, 1, rank=4, hidden=8)
    torch.nn.init.normal_(ctrl.hyper.out.weight, std=0.3)
    env = BatchedGridPinpad(3, "pretrain", seed=5)
    obs = [env.reset()]
    for _ in range(4):
        obs.append(env.step(torch.randint(0, 4, (3,)))[0])
    obs = torch.stack(obs[:4], 1)  # (3, 4, 637)
    g = torch.tensor([[0, 0, 1, 1], [2, 3, 3, 3], [1, 1, 1, 0]])
    with torch.no_grad():
        full = upper_logits(model, ctrl(lower(model, obs, 1), g), 1)
        cache = model.new_cache(3)
        steps = [controlled_step(model, obs[:, t], cache, 1, lambda e, t=t: ctrl(e, g[:, t])) for t in range(4)]
    assert torch.allclose(full, torch.stack(steps, 1), atol=1e-4)


def test_gt_controllers_train_evaluate_and_checkpoint(tiny_base, tmp_path):
    model = load_base_model(tiny_base)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = gt_preset("tiny")
    ctrl = train_gt_controllers(model, cfg, Run(tmp_path / "run"), seed=0, progress=False)
    assert ctrl.layer == model.n_layers // 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"base parameter {k} changed"
    assert any(p.abs().sum() > 0 for p in ctrl.hyper.out.parameters())
    metrics = Run(tmp_path / "run").metrics()
    assert metrics and "losses/action_nll" in metrics[-1]
    ev = evaluate_gt_controllers(model, ctrl, episodes=8, seed=0)
    assert 0.0 <= ev["success_rate"] <= 1.0 and ev["task"] == "heldout"
    eps = gt_controller_rollouts(model, ctrl, "heldout", 5, seed=1)
    assert set(DATASET_KEYS) <= set(eps) and eps["actions"].shape[0] == 5
    # same seed, same episodes
    again = gt_controller_rollouts(model, ctrl, "heldout", 5, seed=1)
    assert torch.equal(eps["actions"], again["actions"])
    # resuming a finished run does not retrain; a different config is refused
    ctrl2 = train_gt_controllers(model, cfg, Run(tmp_path / "run"), seed=0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(ctrl.state_dict().values(), ctrl2.state_dict().values()))
    with pytest.raises(CheckpointError, match="different config"):
        train_gt_controllers(model, gt_preset("tiny", lr=0.5), Run(tmp_path / "run"), seed=0, progress=False)
    # checkpoint round trip
    save_gt_controllers(tmp_path / "gt", ctrl, {"x": 1})
    loaded, meta = load_gt_controllers(tmp_path / "gt")
    assert meta == {"x": 1}
    assert all(torch.equal(a, b) for a, b in zip(ctrl.state_dict().values(), loaded.state_dict().values()))
    (tmp_path / "gt.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="gt.safetensors"):
        load_gt_controllers(tmp_path / "gt")


def test_cli_gt_controllers(tiny_base, tmp_path):
    out = tmp_path / "gt"
    r = subprocess.run([sys.executable, "-m", "irl_core", "gt-controllers", "--base", str(tiny_base), "--preset", "tiny",
                        "--run-dir", str(tmp_path / "run"), "--export", str(out), "--episodes", "4", "--quiet",
                        "--threads", "1"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "success" in r.stdout and out.with_suffix(".safetensors").exists()
    r = subprocess.run([sys.executable, "-m", "irl_core", "gt-rollouts", "--base", str(tiny_base), "--checkpoint", str(out),
                        "--episodes", "3", "--out", str(tmp_path / "r.npz")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "r.npz") as f:
        assert f["layout"].shape == (3, 7, 7) and f["task"].shape == (3, 12)
    # the shared rollouts command gives the same episodes for the same seed
    r = subprocess.run([sys.executable, "-m", "irl_core", "rollouts", "--policy", "gt-controllers", "--task", "heldout",
                        "--checkpoint", str(tiny_base), "--controllers", str(out), "--episodes", "3",
                        "--out", str(tmp_path / "r2.npz")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "r.npz") as a, np.load(tmp_path / "r2.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in ("layout", "start", "actions", "success"))
    r = subprocess.run([sys.executable, "-m", "irl_core", "gt-controllers", "--base", str(tmp_path / "nope"), "--preset",
                        "tiny"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "error:" in r.stderr and "nope" in r.stderr


def test_controlled_layer_sweep(tiny_base, tmp_path, capsys, monkeypatch):
    """Fig. 4: one gt-controllers job per (layer, seed), two at a time; one row per point with the layer relative
    to the middle; the CLI writes the JSON, and a rerun runs nothing."""
    import json
    from irl_core.cli import main
    monkeypatch.setenv("IRL_THREADS", "1")
    out = tmp_path / "layers.json"
    cmd = ["layer-sweep", "--base", str(tiny_base), "--preset", "tiny", "--layers", "0,2", "--steps", "2",
           "--episodes", "4", "--run-dir", str(tmp_path / "runs"), "--out", str(out), "--jobs", "2"]
    assert main(cmd) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["layer"], r["relative_layer"]) for r in rows] == [(0, -1), (2, 1)]
    assert all(0 <= r["success_rate"] <= 1 for r in rows)
    assert (tmp_path / "runs" / "layer2_seed0" / "metrics.jsonl").exists()
    job = json.loads((tmp_path / "runs" / "layer2_seed0" / "job.json").read_text())
    assert job["argv"][:1] == ["gt-controllers"] and "--layer" in job["argv"] and job["backend"] == "local"
    capsys.readouterr()
    assert main(cmd) == 0 and "2 points, 2 already done, 0 to run" in capsys.readouterr().out
    assert json.loads(out.read_text())["rows"] == rows
    assert main(["layer-sweep", "--base", str(tiny_base), "--preset", "tiny", "--layers", "5", "--out", str(out)]) == 2
    assert "controlled layer" in capsys.readouterr().err


def test_grid5_controllers_replay_and_refuse_another_world(tiny_base, tiny_base5, tmp_path):
    """On the 5×5 world the controllers train, their success is judged by replaying exports under the rules (the
    replay agrees with the simulator), and controllers of one world are refused on a base model of the other."""
    model = load_base_model(tiny_base5)
    assert model.world.name == "grid5" and model.cfg.obs_dim == 150
    ctrl = train_gt_controllers(model, gt_preset("tiny"), Run(tmp_path / "run"), seed=0, progress=False)
    assert ctrl.world == "grid5" and ctrl.n_subgoals == 4
    ev = evaluate_gt_controllers(model, ctrl, episodes=32, seed=0)
    assert ev["replay_consistent"] and ev["success_rate"] == pytest.approx(ev["success_rate_simulator"]) and ev["world"] == "grid5"
    eps = gt_controller_rollouts(model, ctrl, "heldout", 4, seed=0)
    assert eps["layout"].shape == (4, 25) and int(eps["length"].max()) <= 50
    save_gt_controllers(tmp_path / "gt5", ctrl, {})
    with pytest.raises(ValueError, match="made in world grid5, but the base model is of world grid7"):
        load_gt_controllers(tmp_path / "gt5", base=load_base_model(tiny_base))
    r = subprocess.run([sys.executable, "-m", "irl_core", "gt-rollouts", "--base", str(tiny_base), "--checkpoint",
                        str(tmp_path / "gt5"), "--episodes", "2", "--out", str(tmp_path / "x.npz")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "world grid5" in r.stderr


def test_replay_catches_an_export_that_breaks_the_rules(tiny_base5):
    """The replay is an independent judge: an episode whose recorded success is flipped, or whose actions are
    cut short, is not counted as the simulator said."""
    from irl_core.data import export_arrays, replay
    from irl_core.rollouts import rollout
    eps = rollout("expert", "heldout", 16, seed=3, world="grid5")
    data = export_arrays(eps)
    out = replay(data)
    assert out["success"].all() and out["consistent"].all() and (out["colours_completed"] == 4).all()
    data["actions"][0, int(eps["length"][0]) - 1] = -1  # drop the last action of episode 0
    out = replay(data)
    assert not out["success"][0] and not out["consistent"][0] and out["success"][1:].all()


def test_control_reading_measures_a_controller(tiny_base5, tmp_path):
    from irl_core.control_reading import control_reading
    model = load_base_model(tiny_base5)
    ctrls = []
    for layer in (0, 1):
        c = GTControllers(model.cfg.d_model, layer, rank=4, hidden=8, world="grid5")
        torch.nn.init.normal_(c.hyper.out.weight, std=0.3 if layer else 0.0)  # layer 1's controller rewrites, layer 0's is U = 0
        ctrls.append(c)
    out = control_reading(model, ctrls, read_layer=2, episodes=40, seed=0)
    zero, big = out["rows"]
    assert zero["relative_norm"] == 0.0 and big["relative_norm"] > 0
    # U = 0 reads exactly as the clean model does
    assert zero["layout_accuracy"] == pytest.approx(out["clean"]["layout_accuracy"])
    assert zero["acts_toward_true"] == pytest.approx(out["clean"]["acts_toward_true"])
    assert all(0 <= r["subgoal_reads_injected"] <= 1 for r in out["rows"])
    assert len(out["layout_probe_by_layer"]) == model.n_layers + 1
    with pytest.raises(ValueError, match="readout layer"):
        control_reading(model, ctrls, read_layer=1, episodes=8)
    alone = control_reading(model, [], episodes=20)  # no controller: the uncontrolled readings only
    assert alone["rows"] == [] and alone["read_layer"] == model.n_layers and len(alone["layout_probe_by_layer"]) == 3


def test_gt_controllers_train_on_the_chosen_dstar_ties(tiny_base, tmp_path):
    """`dstar_ties` reaches the D* the controllers train on: same seed, other tie-break, other controllers."""
    model = load_base_model(tiny_base)
    with pytest.raises(ValueError, match="dstar_ties"):
        gt_preset("tiny", dstar_ties="sometimes")
    runs = {ties: train_gt_controllers(model, gt_preset("tiny", dstar_ties=ties), Run(tmp_path / ties), seed=0,
                                       progress=False) for ties in ("random", "first")}
    assert Run(tmp_path / "first").read_config()["dstar_ties"] == "first"
    assert not all(torch.equal(a, b) for a, b in zip(runs["random"].state_dict().values(),
                                                      runs["first"].state_dict().values()))
