import pytest
import torch

from irl_core.checkpoints import CheckpointError, save_checkpoint
from irl_core.data import expert_episodes, training_tensors, trim
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.envs.worlds import GRID7
from irl_core.models.transformer import (KIND, GridTransformer, TransformerConfig, relative_bucket,
                                         resid_hook_name)
from irl_core.pretrain import load_base_model


@pytest.fixture(scope="module")
def batch():
    ep = trim(expert_episodes(BatchedGridPinpad(6, seed=0)))
    obs, actions = training_tensors(ep, GRID7)
    return obs, actions


@pytest.mark.parametrize("encoder", ["linear", "agent_centred"])
def test_kv_cached_step_equals_full_forward(batch, encoder):
    torch.manual_seed(0)
    model = GridTransformer(TransformerConfig(d_model=32, n_layers=3, n_heads=2, d_mlp=64, encoder=encoder)).eval()
    obs = batch[0][:, :-1]
    with torch.no_grad():
        full_a, full_o = model(obs)
        cache = model.new_cache(obs.shape[0])
        steps = [model.step(obs[:, t], cache) for t in range(obs.shape[1])]
    assert torch.allclose(torch.stack([s[0] for s in steps], 1), full_a, atol=1e-5)
    assert torch.allclose(torch.stack([s[1] for s in steps], 1), full_o, atol=1e-5)


def test_split_blocks_equal_full(batch):
    torch.manual_seed(1)
    model = GridTransformer(TransformerConfig(d_model=32, n_layers=4, n_heads=2, d_mlp=64)).eval()
    obs = batch[0][:, :-1]
    with torch.no_grad():
        resid = model.embed_obs(obs)
        mid = model.run_blocks(resid, 0, 2)
        out = model.heads(model.run_blocks(mid, 2, 4))[0]
        assert torch.allclose(out, model(obs)[0], atol=1e-6)
        # split with caches, step by step
        cache = model.new_cache(obs.shape[0])
        outs = []
        for t in range(obs.shape[1]):
            e = model.run_blocks(model.embed_obs(obs[:, t:t + 1]), 0, 2, cache)
            outs.append(model.action_logits(model.run_blocks(e, 2, 4, cache))[:, 0])
        assert torch.allclose(torch.stack(outs, 1), out, atol=1e-5)


def test_hooks_read_write_and_are_removed(batch):
    torch.manual_seed(2)
    model = GridTransformer(TransformerConfig(d_model=32, n_layers=4, n_heads=2, d_mlp=64)).eval()
    obs = batch[0][:, :-1]
    names = [resid_hook_name(l) for l in range(5)]
    with torch.no_grad():
        base, cache = model.run_with_cache(obs, names_filter=names)
        assert set(cache) == set(names) and cache["blocks.1.hook_resid_post"].shape == (*obs.shape[:2], 32)
        # writing: zeroing the residual after block 1 changes the output, and equals running blocks 2..3 on zeros
        zeroed = model.run_with_hooks(obs, fwd_hooks=[("blocks.1.hook_resid_post", lambda x, h: torch.zeros_like(x))])
        manual = model.heads(model.run_blocks(torch.zeros_like(cache["blocks.1.hook_resid_post"]), 2, 4))
        assert torch.allclose(zeroed[0], manual[0], atol=1e-6)
        assert not torch.allclose(zeroed[0], base[0])
    assert all(not hp._fns for hp in model.hook_points.values())
    with pytest.raises(RuntimeError, match="boom"):
        def boom(x, h):
            raise RuntimeError("boom")
        model.run_with_hooks(obs, fwd_hooks=[("hook_embed", boom)])
    assert all(not hp._fns for hp in model.hook_points.values()), "hooks leaked after an error"
    with pytest.raises(KeyError, match="no hook point"):
        model.run_with_hooks(obs, fwd_hooks=[("blocks.9.hook_resid_post", lambda x, h: None)])


def test_relative_buckets():
    rel = -torch.arange(200)
    b = relative_bucket(rel, 32, 128)
    assert b[:16].tolist() == list(range(16)) and int(b.max()) == 31 and (b.diff() >= 0).all()


def test_init_scale_is_variance_scaling():
    model = GridTransformer(TransformerConfig(d_model=64, n_layers=1, n_heads=2, d_mlp=128, init_scale=0.1))
    w = model.blocks[0].mlp_in.weight.detach()
    assert abs(float(w.std()) - (0.1 / 64) ** 0.5 * 0.88) < 0.01  # truncated at 2σ shrinks the std by ~0.88


def test_checkpoint_round_trip_and_errors(tmp_path):
    cfg = TransformerConfig(d_model=16, n_layers=2, n_heads=2, d_mlp=32)
    model = GridTransformer(cfg)
    save_checkpoint(tmp_path / "m", model.state_dict(), KIND, model.config_dict())
    loaded = load_base_model(tmp_path / "m")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    # mismatched shapes: a config that says d_model=32 over weights of d_model=16
    save_checkpoint(tmp_path / "bad", model.state_dict(), KIND, {**model.config_dict(), "d_model": 32})
    with pytest.raises(CheckpointError, match="bad.safetensors.*(shape|match)"):
        load_base_model(tmp_path / "bad")
    # another kind
    save_checkpoint(tmp_path / "other", model.state_dict(), "metacontroller", model.config_dict())
    with pytest.raises(CheckpointError, match="expected 'grid-transformer'"):
        load_base_model(tmp_path / "other")
    # corrupted weights
    (tmp_path / "m.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_base_model(tmp_path / "m")
    with pytest.raises(CheckpointError, match="not found"):
        load_base_model(tmp_path / "missing")


def test_pretraining_resume_continues_the_same_curve(tmp_path):
    """Stopping at step 7 and resuming gives bit-identical weights and metrics to an uninterrupted run."""
    from irl_core.config import PRETRAIN_PRESETS
    from irl_core.pretrain import train
    from irl_core.runs import Run

    cfg = PRETRAIN_PRESETS["tiny"]
    full = train(cfg, Run(tmp_path / "full"), seed=3, progress=False)
    run = Run(tmp_path / "split")
    train(cfg, run, seed=3, progress=False, stop_at=7)
    assert run.status()["status"] == "cancelled"
    resumed = train(cfg, run, seed=3, progress=False)
    assert run.status()["status"] == "done"
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "charts/SPS", "charts/episodes_per_s")} for r in rows]
    assert strip(Run(tmp_path / "full").metrics()) == strip(run.metrics())
