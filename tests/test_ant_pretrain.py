"""The ant base model (Hawk SSM): the parallel scan and the step-by-step recurrence give the same outputs, and
``ant-pretrain`` trains the tiny preset on real expert episodes, stops, resumes the same curve and exports."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from irl_core.ant_data import episodes, generate_dataset, load_dataset, save_dataset
from irl_core.ant_pretrain import EpisodeBank, load_ant_base
from irl_core.cli import main
from irl_core.envs.tasks import ANT_PRETRAIN_TASKS
from irl_core.models.ant_ssm import AntSSM, AntSSMConfig, ant_pretrain_loss, linear_scan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ant_d(tmp_path_factory):
    """Six episodes of the shipped expert (sampled actions, failures kept so that it takes seconds)."""
    path = tmp_path_factory.mktemp("ant_d") / "D.npz"
    save_dataset(path, generate_dataset(ROOT / "checkpoints" / "ant" / "expert", ANT_PRETRAIN_TASKS, 6, seed=0,
                                        keep_failures=True, progress=False))
    return path


def test_linear_scan_is_the_recurrence():
    a, b = torch.rand(3, 45, 5, dtype=torch.float64), torch.randn(3, 45, 5, dtype=torch.float64)
    h, ref = torch.zeros(3, 5, dtype=torch.float64), []
    for t in range(45):
        h = a[:, t] * h + b[:, t]
        ref.append(h)
    torch.testing.assert_close(linear_scan(a, b), torch.stack(ref, 1))


def test_step_by_step_equals_the_sequence_form():
    torch.manual_seed(0)
    model = AntSSM(AntSSMConfig(d_model=32, n_layers=3, lru_width=32, n_heads=4, d_mlp=64)).double()
    model.set_normaliser(torch.randn(41, dtype=torch.float64), torch.rand(41, dtype=torch.float64) + 0.5)
    obs = torch.randn(2, 23, 41, dtype=torch.float64)
    seq, cache = model.run_with_cache(obs)
    state = model.initial_state(2)
    state = type(state)(state.h.double(), state.conv.double())
    steps, resid = [], []
    for t in range(23):
        with model.hooks([("blocks.1.hook_resid_post", lambda x, hook: resid.append(x))]):
            out, state = model.step(obs[:, t], state)
        steps.append(out)
    for k in range(3):
        torch.testing.assert_close(torch.stack([s[k] for s in steps], 1), seq[k])
    torch.testing.assert_close(torch.stack(resid, 1), cache["blocks.1.hook_resid_post"])


def test_loss_masks_padding_and_the_last_observation():
    torch.manual_seed(0)
    model = AntSSM(AntSSMConfig(d_model=16, n_layers=1, lru_width=16, n_heads=2, d_mlp=32))
    obs, act = torch.randn(2, 9, 41), torch.randn(2, 9, 8)
    length = torch.tensor([9, 5])
    loss, m = ant_pretrain_loss(model, obs, act, length, 10.0)
    obs2, act2 = obs.clone(), act.clone()
    obs2[1, 5:], act2[1, 5:] = 100.0, 100.0  # padding of the second episode: no effect
    loss2, _ = ant_pretrain_loss(model, obs2, act2, length, 10.0)
    torch.testing.assert_close(loss, loss2)
    torch.testing.assert_close(loss, m["action_nll"] + 10.0 * m["obs_nll"])


def _synthetic_bank(tmp_path, lengths) -> EpisodeBank:
    rng = np.random.default_rng(0)
    lengths = np.asarray(lengths)
    S = int(lengths.sum())
    save_dataset(tmp_path / "synthetic.npz", {
        "obs": rng.normal(size=(S, 41)).astype(np.float32), "actions": rng.normal(size=(S, 8)).astype(np.float32),
        "subgoal": np.zeros(S, np.int8), "length": lengths,
        "episode_start": np.concatenate([[0], np.cumsum(lengths)[:-1]]), "meta": np.array(json.dumps({"kind": "D"}))})
    return EpisodeBank(tmp_path / "synthetic.npz", 0.05)


def test_training_batches_cover_each_epoch_once_with_little_padding(tmp_path):
    lengths = np.random.default_rng(1).integers(20, 400, size=210)
    bank = _synthetic_bank(tmp_path, lengths)
    n_train, B = len(bank.train_ids), 8
    per_epoch = n_train // B
    epoch = [bank.training_ids(k, B, seed=3, pool=8) for k in range(per_epoch)]
    seen = [i for b in epoch for i in b]
    assert len(seen) == len(set(seen)) == per_epoch * B and set(seen) <= set(bank.train_ids)
    assert bank.training_ids(per_epoch, B, seed=3, pool=8) != epoch[0]  # the next epoch reshuffles
    assert [bank.training_ids(k, B, seed=3, pool=8) for k in (5, 0)] == [epoch[5], epoch[0]]  # a pure function

    def padded(pool):
        steps = [bank.training_ids(k, B, seed=3, pool=pool) for k in range(per_epoch)]
        return sum(B * max(lengths[i] for i in b) for b in steps)
    assert padded(8) < 0.75 * padded(1)


def test_datasets_merge_and_refuse_to_mix_kinds(ant_d, tmp_path, capsys):
    out = tmp_path / "merged.npz"
    assert main(["ant-data-merge", str(ant_d), str(ant_d), "--out", str(out)]) == 0
    one, two = load_dataset(ant_d), load_dataset(out)
    assert len(two["length"]) == 2 * len(one["length"]) and len(two["obs"]) == 2 * len(one["obs"])
    last = list(episodes(two))[-1]
    np.testing.assert_array_equal(last["obs"], list(episodes(one))[-1]["obs"])
    other = dict(one, meta=np.array(json.dumps({**one["meta"], "kind": "D*"})))
    save_dataset(tmp_path / "dstar.npz", other)
    assert main(["ant-data-merge", str(ant_d), str(tmp_path / "dstar.npz"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "differ in kind" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()


def test_tiny_pretraining_stops_resumes_and_exports(ant_d, tmp_path):
    bank = EpisodeBank(ant_d, 0.05)
    assert len(bank.val_ids) == 1 and len(bank.train_ids) == 5
    run = tmp_path / "run"
    cmd = ["ant-pretrain", "--data", str(ant_d), "--preset", "tiny", "--run-dir", str(run), "--quiet", "--threads", "1"]
    assert main([*cmd, "--stop-at", "10"]) == 0
    assert json.loads((run / "status.json").read_text())["status"] == "cancelled"
    assert main([*cmd, "--export", str(tmp_path / "base")]) == 0
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert rows[-1]["losses/action_nll"] < rows[0]["losses/action_nll"]  # it learns from the first steps
    assert "eval/action_nll" in rows[-1]
    model = load_ant_base(tmp_path / "base")
    assert model.n_layers == 2
    torch.testing.assert_close(model.obs_mean, bank.obs_mean)


def test_the_paper_preset_trains_and_exports_the_papers_model(ant_d, tmp_path):
    """The ``paper`` preset (Tables A5/A15), kept ready for a GPU: its model (width 256, depth 8) takes training steps
    on D and exports; here two steps of two episodes on the CPU."""
    cmd = ["ant-pretrain", "--data", str(ant_d), "--preset", "paper", "--steps", "2", "--batch-size", "2",
           "--run-dir", str(tmp_path / "run"), "--quiet", "--threads", "1", "--export", str(tmp_path / "base")]
    assert main(cmd) == 0
    model = load_ant_base(tmp_path / "base")
    assert (model.n_layers, model.cfg.d_model) == (8, 256)
    assert sum(p.numel() for p in model.parameters()) == 3_857_465  # BENCHMARKS.md "Ant base model"
    assert json.loads((tmp_path / "run" / "status.json").read_text())["step"] == 2


def test_missing_dataset_is_one_line(tmp_path, capsys):
    assert main(["ant-pretrain", "--data", str(tmp_path / "none.npz"), "--preset", "tiny"]) == 2
    assert "no such dataset" in capsys.readouterr().err


def test_the_base_model_acts_alone_in_mujoco(ant_d, tmp_path, capsys):
    from irl_core.ant_base import run_base_episodes
    from irl_core.models.ant_ssm import AntSSM
    assert main(["ant-pretrain", "--data", str(ant_d), "--preset", "tiny", "--run-dir", str(tmp_path / "run"),
                 "--quiet", "--threads", "1", "--steps", "5", "--export", str(tmp_path / "base")]) == 0
    model = load_ant_base(tmp_path / "base")
    a = run_base_episodes(model, [(0, 3, 2)], 3, seed=4, record=True, n_parallel=3)
    b = run_base_episodes(model, [(0, 3, 2)], 3, seed=4, record=True, n_parallel=2)
    assert all((a["length"] >= 1) & (a["length"] <= 500))
    for j in range(3):  # an episode's draws depend on its seed only, not on which slot or batch ran it
        assert len(a["actions"][j]) == a["length"][j]
        np_equal = (a["actions"][j] == b["actions"][j]).all()
        assert np_equal
    capsys.readouterr()
    assert main(["ant-eval", "--policy", "base", "--checkpoint", str(tmp_path / "base"), "--episodes", "2",
                 "--out", str(tmp_path / "eval.json")]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["policy"] == "base model" and report["pretrain"]["episodes"] == 2 and "heldout" in report


def test_ant_probes_per_layer_with_controls(ant_d, tmp_path):
    assert main(["ant-pretrain", "--data", str(ant_d), "--preset", "tiny", "--run-dir", str(tmp_path / "run"),
                 "--quiet", "--threads", "1", "--steps", "5", "--export", str(tmp_path / "base")]) == 0
    out = tmp_path / "probes.json"
    assert main(["ant-probes", "--checkpoint", str(tmp_path / "base"), "--data", str(ant_d), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert len(r["accuracy"]) == len(r["control"]) == 3 and r["mid_layer"] == 1
    assert all(0 <= a <= 1 for a in r["accuracy"] + r["control"]) and r["n_test_steps"] > 0
    loc = r["location"]
    assert len(loc["r2"]) == 3 and all(x <= 1 for x in loc["r2"]) and loc["n_test_steps"] > 0
    assert loc["mid_gain"] == pytest.approx(loc["r2"][1] - loc["r2"][0])


def test_the_location_probe_reads_what_the_residual_holds(ant_d, monkeypatch):
    """An 'embedding' that is the observation itself: the sought colour's offset is not linear in it, but once the
    offset itself is appended (a 'layer' that computed it), the read-out is exact."""
    from irl_core.ant_base import ant_target_probe
    from irl_core.ant_pretrain import EpisodeBank
    bank = EpisodeBank(ant_d, 0.5)

    class Fake:
        n_layers = 2

    def fake_stream(model, bank_, ids, batch=16):
        obs = np.concatenate([bank.obs[i][(bank.subgoal[i] >= 0).numpy()].numpy() for i in ids])
        sub = np.concatenate([bank.subgoal[i][bank.subgoal[i] >= 0].numpy() for i in ids])
        ep = np.concatenate([np.full(int((bank.subgoal[i] >= 0).sum()), i) for i in ids])
        target = obs[:, 29:37].reshape(-1, 4, 2)[np.arange(len(sub)), sub]
        noise = np.random.default_rng(0).normal(size=(len(sub), 2))
        layers = [np.concatenate([obs, noise], 1), np.concatenate([obs, target], 1), np.concatenate([obs, noise], 1)]
        return np.stack(layers, 1), sub, ep

    monkeypatch.setattr("irl_core.ant_base.ant_residual_stream", fake_stream)
    r = ant_target_probe(Fake(), ant_d, episodes=6, seed=0, test_fraction=0.5)
    assert r["r2"][1] > 0.99 and r["r2"][1] > r["r2"][0] and r["mid_gain"] > 0


def test_ant_controllers_train_steer_and_inject(ant_d, tmp_path, capsys):
    from irl_core.ant_controllers import AntGTControllers, first_colour_after, injection, load_ant_gt_controllers
    assert main(["ant-pretrain", "--data", str(ant_d), "--preset", "tiny", "--run-dir", str(tmp_path / "run"),
                 "--quiet", "--threads", "1", "--steps", "5", "--export", str(tmp_path / "base")]) == 0
    gt = ["ant-gt-controllers", "--base", str(tmp_path / "base"), "--data", str(ant_d), "--preset", "tiny",
          "--run-dir", str(tmp_path / "gt"), "--quiet", "--export", str(tmp_path / "ctrl"),
          "--report", str(tmp_path / "gt.json")]
    clobber = gt[:-1] + [str(tmp_path / "ctrl.json")]  # the report would overwrite the exported checkpoint's own file
    assert main(clobber) == 2
    assert "ctrl.json is a file of the --export checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "gt").exists()  # refused before any training
    assert main(gt + ["--stop-at", "5"]) == 0  # stopped half way: evaluated there, resumable
    early = json.loads((tmp_path / "gt.json").read_text())
    assert early["step"] == 5 and json.loads((tmp_path / "gt" / "status.json").read_text())["status"] == "cancelled"
    assert main(gt) == 0
    report = json.loads((tmp_path / "gt.json").read_text())
    assert report["step"] == 10 and report["layer"] == 1
    assert report["controlled"]["episodes"] == report["base_alone"]["episodes"] == 4
    nll = report["heldout_action_nll"]  # held-out D*: the same base model alone both times, the controllers trained on
    assert nll["episodes"] >= 1 and nll["base_alone"] == pytest.approx(early["heldout_action_nll"]["base_alone"])
    assert nll["controlled"] != nll["base_alone"] and nll["controlled"] != early["heldout_action_nll"]["controlled"]
    rows = [json.loads(l) for l in (tmp_path / "gt" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]
    ctrl = load_ant_gt_controllers(tmp_path / "ctrl")
    assert float(ctrl.U.detach().abs().sum()) > 0  # it trained (it starts at zero)
    zero = AntGTControllers(ctrl.U.shape[1], ctrl.layer)  # a zero controller changes nothing: same rollouts
    model = load_ant_base(tmp_path / "base")
    r = injection(model, zero, colour=2, t0=5, episodes=3, seed=1)
    assert r["injected"] == r["base_alone"]
    layout = np.full((4, 4), -1)
    layout[0, 1], layout[2, 2] = 3, 1
    uv = np.array([[0.5, 0.5], [1.5, 0.5], [1.5, 1.5], [2.5, 2.5]])
    assert first_colour_after(uv, layout, 0) == 3 and first_colour_after(uv, layout, 1) == 1
    assert first_colour_after(uv[:3], layout, 1) == -1


def test_handover_judges_turns_toward_the_target(ant_d, tmp_path):
    from irl_core.ant_base import HandoverActor, handover, handover_episodes, planner_direction, summarise_handover
    from irl_core.experts.ant_episodes import run_episodes
    from irl_core.experts.ant_expert import AntExpert
    layout = np.full((4, 4), -1)
    layout[0, 3], layout[3, 0], layout[1, 1] = 2, 0, -2  # colour 2 top right, colour 0 bottom left, the wall
    # from cell (0, 0), colour 2 is three cells right along row 0: head right; from (2, 1) the wall is above, so
    # the way to colour 2 goes right first (row 2 → column 2), and colour 0 is straight down-left
    np.testing.assert_allclose(planner_direction(layout, np.array([0.5, 0.5]), 2), [1, 0])
    np.testing.assert_allclose(planner_direction(layout, np.array([1.5, 2.5]), 2), [1, 0])
    assert planner_direction(layout, np.array([1.5, 2.5]), 0) @ np.array([0, 1]) > 0.7 or \
        planner_direction(layout, np.array([1.5, 2.5]), 0) @ np.array([-1, 0]) > 0.7
    # an ant that walks down cell (0, 0) while colour 2 lies three cells to its right, and keeps walking down
    uv = np.array([[0.5, 0.1 + 0.05 * t] for t in range(11)] + [[0.5, 0.6 + 0.1 * t] for t in range(1, 16)])
    res = {"uv": [uv], "length": np.array([25]), "task": [(2, 0, 3)], "progress": [np.zeros(25, int)],
           "layout": [layout]}
    (row,) = handover_episodes(res, t0=10)
    assert row["target"] == 2 and row["reached"] == -1 and 90 < row["turn"] < 100
    assert row["keeps_going"] > 0.99 and abs(row["follows_plan"]) < 0.15  # the copycat: on it went
    summary = summarise_handover([row, dict(row, turn=10.0, reached=2)])
    assert summary["turn"]["episodes"] == summary["straight"]["episodes"] == 1
    assert summary["straight"]["reached_target"] == 1.0 and summary["all"]["reached_target"] == 0.5
    assert summarise_handover([dict(row, reached=0), dict(row, reached=2)])["all"]["reached_other"] == pytest.approx(0.5 / 3)
    # the handover actor: the expert's first t0 steps are the same whoever acts after them
    assert main(["ant-pretrain", "--data", str(ant_d), "--preset", "tiny", "--run-dir", str(tmp_path / "run"),
                 "--quiet", "--threads", "1", "--steps", "3", "--export", str(tmp_path / "base")]) == 0
    model, expert = load_ant_base(tmp_path / "base"), AntExpert.load(ROOT / "checkpoints" / "ant" / "expert")
    a = run_episodes(HandoverActor(model, expert, 8), [(0, 3, 2)], 2, seed=3, record=True)
    b = run_episodes(HandoverActor(model, expert, None), [(0, 3, 2)], 2, seed=3, record=True)
    for j in range(2):
        np.testing.assert_array_equal(a["actions"][j][:8], b["actions"][j][:8])
        assert not np.array_equal(a["actions"][j][8:12], b["actions"][j][8:12])
    r = handover(model, expert, t0=12, episodes=2, seed=3)  # t0 ≥ the 10 steps of motion before it
    assert r["handover"]["all"]["episodes"] == r["expert"]["all"]["episodes"] == 2


def test_rollout_steps_run_on_one_thread_and_restore_the_count():
    from irl_core.device import one_torch_thread
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyError):
            with one_torch_thread():
                assert torch.get_num_threads() == 1
                raise KeyError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_handover_refuses_a_handover_before_the_motion_it_reads(capsys):
    from irl_core.cli import main
    assert main(["ant-handover", "--t0", "5", "--episodes", "2"]) == 2
    assert "--t0 must be at least 10" in capsys.readouterr().err


def test_dataset_does_not_depend_on_the_generation_chunk(monkeypatch):
    import irl_core.ant_data as D
    expert = ROOT / "checkpoints" / "ant" / "expert"
    whole = D.generate_dataset(expert, ANT_PRETRAIN_TASKS, 3, seed=2, keep_failures=True, progress=False)
    monkeypatch.setattr(D, "CHUNK", 1)
    chunked = D.generate_dataset(expert, ANT_PRETRAIN_TASKS, 3, seed=2, keep_failures=True, progress=False)
    assert all(np.array_equal(whole[k], chunked[k]) for k in ("obs", "actions", "length", "layout", "task"))


def test_the_closed_loop_curve_resumes_from_its_output(tmp_path, monkeypatch):
    """scripts/ant_base_curve.py evaluates only the snapshots its --out does not hold yet (same run, same episodes)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("ant_base_curve", ROOT / "scripts" / "ant_base_curve.py")
    curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curve)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "eval/action_nll": -s / 1000}) + "\n"
                                               for s in (1000, 2000, 3000)))
    calls = []

    def evaluate(actor, tasks, episodes, seed, any_task):
        calls.append(actor)
        return {"success_rate": 0.25, "events": {"wall": 1}, "mean_length": 9.0}

    monkeypatch.setattr(curve, "load_ant_base", lambda path: Path(path).name)
    monkeypatch.setattr(curve, "BaseModelActor", lambda model, sample: (model, sample))
    monkeypatch.setattr(curve, "evaluate", evaluate)
    out = tmp_path / "curve.json"
    args = ["--run-dir", str(run), "--episodes", "4", "--out", str(out)]
    for s in (1000, 2000):
        (run / "checkpoints" / f"step{s}.json").write_text("{}")
    assert curve.main(args) == 0 and len(calls) == 4  # two snapshots × sampled and mean
    (run / "checkpoints" / "step3000.json").write_text("{}")
    assert curve.main(args) == 0
    assert calls[4:] == [("step3000", True), ("step3000", False)]  # only the new snapshot
    points = json.loads(out.read_text())["points"]
    assert [p["step"] for p in points] == [1000, 2000, 3000] and points[2]["eval_action_nll"] == -3.0
    assert curve.main(args[:3] + ["8"] + args[4:]) == 0 and len(calls) == 12  # another episode count: all again


def _old_input_scale(log_a):
    a = log_a.exp()
    return torch.sqrt((1 - a * a).clamp_min(0))


def test_input_scale_is_sqrt_one_minus_a_squared_with_a_bounded_gradient():
    from irl_core.models.hawk import input_scale
    log_a = -torch.rand(1000, dtype=torch.float64) * 5 - 1e-3
    torch.testing.assert_close(input_scale(log_a), torch.sqrt(1 - torch.exp(2 * log_a)))
    closed = torch.zeros(3, requires_grad=True)  # a gate closed completely: a = 1
    input_scale(closed).sum().backward()
    assert torch.isfinite(closed.grad).all()
    old = torch.zeros(3, requires_grad=True)
    _old_input_scale(old).sum().backward()
    assert not torch.isfinite(old.grad).all()  # what the plain sqrt(1 − a²) gave: NaN


def test_a_completely_closed_gate_keeps_every_gradient_finite():
    """σ(Λ) → 1 makes a = 1 to float precision in one channel: the loss and every gradient stay finite (they were NaN)."""
    torch.manual_seed(0)
    model = AntSSM(AntSSMConfig(d_model=16, n_layers=2, lru_width=16, n_heads=2, d_mlp=32))
    with torch.no_grad():
        model.blocks[1].mix.a_logit[3] = 200.0
    obs, actions = torch.randn(2, 9, 41), torch.rand(2, 9, 8) * 2 - 1
    loss, _ = ant_pretrain_loss(model, obs, actions, torch.tensor([9, 6]), 10.0)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_non_finite_step_is_skipped_and_a_diverged_run_stops(ant_d, tmp_path, monkeypatch, capsys):
    import irl_core.ant_pretrain as ap
    real, calls = ap.ant_pretrain_loss, []

    def once_nan(*args, **kwargs):
        loss, m = real(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan"), m) if len(calls) == 3 else (loss, m)

    monkeypatch.setattr(ap, "ant_pretrain_loss", once_nan)
    run = tmp_path / "run"
    cmd = ["ant-pretrain", "--data", str(ant_d), "--preset", "tiny", "--quiet", "--threads", "1", "--run-dir"]
    assert main([*cmd, str(run), "--export", str(tmp_path / "base")]) == 0
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["charts/skipped_steps"] == 1 and np.isfinite(rows[-1]["eval/action_nll"])
    assert all(torch.isfinite(p).all() for p in load_ant_base(tmp_path / "base").parameters())

    monkeypatch.setattr(ap, "ant_pretrain_loss", lambda *a, **k: (real(*a, **k)[0] * float("nan"), real(*a, **k)[1]))
    monkeypatch.setattr(ap, "MAX_SKIPPED_IN_A_ROW", 5)
    assert main([*cmd, str(tmp_path / "diverged")]) == 2
    assert "not finite for 5 steps in a row (steps 1–5)" in capsys.readouterr().err
    assert json.loads((tmp_path / "diverged" / "status.json").read_text())["status"] == "failed"


def test_a_diverged_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    from irl_core.checkpoints import save_checkpoint
    from irl_core.models.ant_ssm import KIND
    model = AntSSM(AntSSMConfig(d_model=16, n_layers=2, lru_width=16, n_heads=2, d_mlp=32))
    state = model.state_dict()
    state["action_head.bias"] = torch.full_like(state["action_head.bias"], float("nan"))
    save_checkpoint(tmp_path / "nan", state, KIND, model.config_dict(), {})
    assert main(["ant-eval", "--policy", "base", "--checkpoint", str(tmp_path / "nan"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite values (e.g. action_head.bias)" in err and "Traceback" not in err
