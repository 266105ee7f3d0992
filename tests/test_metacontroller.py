"""Every metacontroller component (docs/paper.md §5.1): shapes, gradients, causality, integration."""
import pytest
import torch

from irl_core.metacontroller import (GaussianEncoder, MetaController, MetaControllerConfig, SequenceEmbedder,
                                     SwitchingUnit, gaussian_kl, integrate)

D, B, T = 16, 3, 9


def make(**kw) -> MetaController:
    torch.manual_seed(0)
    return MetaController(MetaControllerConfig(d_model=D, rank=4, **kw))


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(B, T, D, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 6:] = False
    return e, mask


def test_table_a9_sizes():
    m = MetaController(MetaControllerConfig(d_model=256))
    assert m.cfg.n_z == 8 and m.cfg.n_h == 32 and m.cfg.n_s == 32
    assert m.encoder.net[0].out_features == 64 and m.decoder.hidden.out_features == 32
    assert m.history.hidden_size == 32 and m.decoder.rank == 16
    c = m.decode(torch.zeros(2, 8))
    assert c.a.shape == (2, 256, 16) and c.b.shape == (2, 256, 16)
    with pytest.raises(ValueError):
        MetaControllerConfig(d_model=0)


def test_component_shapes_and_gradients():
    x, mask = inputs()
    emb = SequenceEmbedder(D, 5, n_layers=2)
    s = emb(x.requires_grad_(), mask)
    assert s.shape == (B, 5)
    s.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in emb.parameters())
    enc = GaussianEncoder(D + 4, 7, 3)
    mu, logvar = enc(torch.randn(B, T, D + 4))
    assert mu.shape == logvar.shape == (B, T, 3)
    (mu.sum() + logvar.sum()).backward()
    assert all(p.grad is not None for p in enc.parameters())
    sw = SwitchingUnit(D, 4, 3, 6)
    logit, g = sw(torch.randn(B, D), torch.randn(B, 4), torch.randn(B, 3), torch.zeros(B, 6))
    assert logit.shape == (B,) and g.shape == (B, 6)
    (logit.sum() + g.sum()).backward()
    assert all(p.grad is not None for p in sw.parameters())
    kl = gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3))
    assert torch.allclose(kl, torch.zeros(2))
    assert torch.allclose(gaussian_kl(torch.ones(1, 2), torch.zeros(1, 2)), torch.tensor([1.0]))


def test_forward_shapes_and_every_parameter_gets_gradient():
    m = make()
    torch.nn.init.normal_(m.decoder.out.weight, std=0.1)  # past the zero init of B
    e, mask = inputs()
    out = m(e, mask, generator=torch.Generator().manual_seed(1))
    assert out.e_hat.shape == (B, T, D) and out.beta.shape == (B, T) and out.z.shape == (B, T, 8)
    assert out.mu.shape == out.logvar.shape == out.z_tilde.shape == (B, T, 8)
    assert out.kl.shape == (B, T) and out.s.shape == (B, 32)
    assert ((out.beta >= 0) & (out.beta <= 1)).all()
    (out.e_hat.pow(2).sum() + out.kl.sum()).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


def test_embedder_is_non_causal_and_switch_unit_causal():
    m = make()
    e, mask = inputs()
    t0 = 4
    e2 = e.clone()
    e2[:, t0 + 1:] += torch.randn_like(e2[:, t0 + 1:])  # perturb the future only
    with torch.no_grad():
        a = m(e, mask, sample=False)
        b = m(e2, mask, z_tilde=a.z_tilde)  # same proposals: only the future residuals differ
    assert not torch.allclose(a.s, b.s, atol=1e-4), "s must see the whole sequence"
    assert torch.allclose(a.beta[:, : t0 + 1], b.beta[:, : t0 + 1], atol=1e-6), "β_t must not see the future"
    assert not torch.allclose(a.beta[:, t0 + 1:], b.beta[:, t0 + 1:], atol=1e-6)
    # and by gradients: ∂β_t / ∂e_{t'} = 0 for t' > t, ∂s / ∂e_{t'} ≠ 0 for every valid t'
    x = e.clone().requires_grad_()
    out = m(x, mask, z_tilde=a.z_tilde)
    (g,) = torch.autograd.grad(out.beta[:, t0].sum(), x, retain_graph=True)
    assert g[:, t0 + 1:].abs().max() == 0 and g[:, t0].abs().max() > 0
    (g,) = torch.autograd.grad(out.s[:, 0].sum(), x)
    assert (g[0].abs().sum(-1) > 0).all()
    # the sequence embedder ignores padding
    e3 = e.clone()
    e3[1, 6:] += 5.0
    with torch.no_grad():
        assert torch.allclose(m(e3, mask, sample=False).s[1], a.s[1], atol=1e-5)


def test_temporal_integration_formula():
    beta = torch.tensor([1.0, 0.0, 0.3])
    zt, zp = torch.randn(3, 8), torch.randn(3, 8)
    z = integrate(beta, zt, zp)
    assert torch.allclose(z[0], zt[0]) and torch.allclose(z[1], zp[1])
    assert torch.allclose(z[2], 0.3 * zt[2] + 0.7 * zp[2])
    m = make()
    e, mask = inputs()
    with torch.no_grad():
        out = m(e, mask, generator=torch.Generator().manual_seed(2))
    z_prev = torch.zeros(B, 8)
    for t in range(T):
        expect = out.beta[:, t, None] * out.z_tilde[:, t] + (1 - out.beta[:, t, None]) * z_prev
        assert torch.allclose(out.z[:, t], expect, atol=1e-6)
        z_prev = out.z[:, t]


def test_beta_one_gives_per_step_codes():
    m = make(force_beta_one=True)
    e, mask = inputs()
    with torch.no_grad():
        out = m(e, mask, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.beta, torch.ones(B, T))
    assert torch.allclose(out.z, out.z_tilde)


def test_step_api_reproduces_the_sequence_pass():
    """Algorithm 1's causal step (switch unit, integration, decoder, history) matches forward()."""
    m = make()
    torch.nn.init.normal_(m.decoder.out.weight, std=0.1)
    e, mask = inputs()
    with torch.no_grad():
        out = m(e, mask, sample=False)
        state = m.initial_state(B)
        for t in range(T):
            e_hat, beta, state = m.step(e[:, t], out.z_tilde[:, t], state)
            assert torch.allclose(beta, out.beta[:, t], atol=1e-5)
            assert torch.allclose(state.z, out.z[:, t], atol=1e-5)
            assert torch.allclose(e_hat, out.e_hat[:, t], atol=1e-4)
        _, beta, _ = m.step(e[:, 0], out.z_tilde[:, 0], m.initial_state(B), threshold=0.5)
        assert set(beta.tolist()) <= {0.0, 1.0}


def test_gumbel_relaxation_only_in_training_samples():
    m = make(gumbel=True, gumbel_temperature=0.5)
    e, mask = inputs()
    with torch.no_grad():
        a = m(e, mask, sample=True, generator=torch.Generator().manual_seed(0))
        b = m(e, mask, sample=True, generator=torch.Generator().manual_seed(1))
        c, d = m(e, mask, sample=False), m(e, mask, sample=False)
    assert not torch.allclose(a.beta, b.beta)
    assert torch.equal(c.beta, d.beta)
    # the step API uses the same noise-free gate as forward(sample=False)
    with torch.no_grad():
        _, beta, _ = m.step(e[:, 0], c.z_tilde[:, 0], m.initial_state(B))
    assert torch.allclose(beta, c.beta[:, 0], atol=1e-6)


def test_bad_input_is_refused():
    m = make()
    with pytest.raises(ValueError, match="expected e"):
        m(torch.randn(B, D), torch.ones(B, dtype=torch.bool))


def test_initialisation_knobs():
    e, mask = inputs()
    with torch.no_grad():
        hi = make(switch_bias=4.0)(e, mask, sample=False)
        lora = make()
        rnd = make(decoder_init_std=0.5)
    assert hi.beta.mean() > 0.8
    z = torch.randn(2, 8)
    assert torch.equal(lora.decode(z).matrix()[0], lora.decode(z).matrix()[1])  # U(z) = 0 for every z
    u = rnd.decode(z).matrix()
    assert not torch.allclose(u[0], u[1])


def test_per_step_readout_sees_the_future_from_each_step():
    m = make(emb_readout="per_step")
    e, mask = inputs()
    t0 = 4
    e2 = e.clone()
    e2[:, t0 + 1:] += torch.randn_like(e2[:, t0 + 1:])
    with torch.no_grad():
        a = m(e, mask, sample=False)
        b = m(e2, mask, z_tilde=a.z_tilde)
    assert a.s.shape == (B, T, m.cfg.n_s)
    assert not torch.allclose(a.s[:, t0], b.s[:, t0], atol=1e-4), "s_t must see what follows t"
    assert torch.allclose(a.beta[:, : t0 + 1], b.beta[:, : t0 + 1], atol=1e-6), "β_t must still not see the future"
    assert torch.allclose(a.mu, m(e, mask, sample=False).mu)  # deterministic
    with pytest.raises(ValueError, match="emb_readout"):
        make(emb_readout="last")
