"""The metacontroller (docs/paper.md §5.1–5.2, Eqs. 2–3 and 11–18, Table A9 sizes).

It reads the residual stream e_{1:T} at layer l = L/2 of the (frozen) base model and writes back
ê_t = e_t + U_t e_t. Its parts, with their sizes:

* non-causal sequence embedder s = f_emb(e_{1:T}) ∈ R^{n_s = 32}                                (Eq. 13)
* history GRU h_t = GRU(e_t, h_{t−1}), n_h = 32                                                 (Eq. 12)
* Gaussian encoder (μ_t, log σ²_t) = f_enc(e_t, h_{t−1}, s), MLP with hidden 64, z̃_t ∈ R^{n_z = 8}  (Eqs. 14–15)
* causal switching unit β_t = f_switch(e_t, h_{t−1}, z_{t−1}) ∈ [0, 1] with its own recurrent state (Eq. 16)
* temporal integration z_t = β_t z̃_t + (1 − β_t) z_{t−1}                                      (Eqs. 2, 17)
* hypernetwork decoder U_t = f_hyp(z_t), hidden 32, U low-rank (16) on the grid                  (Eq. 18)

Loss (Eq. 3, λ = 0): Σ_t [−ln p(a_t | o_{1:t}, z_{1:t}) + α KL(N(μ_t, σ²_t) ‖ N(0, I))] over the valid
steps, with the base model's upper blocks producing p(a_t | …) from ê. We report and optimise both terms
as means per valid step (the ratio α between them is unchanged). No regulariser of any kind acts on β.

Choices where the paper is silent (README "Choices"):
* Sequence embedder (L_emb and read-out not given): ``emb_layers`` (default 1) layers of a diagonal linear
  recurrence h_t = a ⊙ h_{t∓1} + (1 − a) ⊙ W x_t run **forwards and backwards** (a learned per channel in
  (0, 1), as in an LRU/Hawk without gates), the two directions concatenated and mixed by a GELU layer;
  the last layer's outputs are **mean-pooled over the valid steps** to one vector s ∈ R^32 per sequence
  (``emb_readout="pooled"``, the default), or read **per step** (``"per_step"``: s_t, the output at t, which
  summarises e_{1:t} and e_{t:T}; the encoder at t then sees what follows t, not only a whole-sequence summary).
  Padding is zeroed before the recurrence so the backward pass starts at each episode's true end.
* All metacontroller modules read LayerNorm(e) (no affine parameters); the controller itself acts on the
  raw e. The residual stream's scale grows with depth and training; normalising the reads keeps the
  metacontroller's inputs O(1) whatever base model it is attached to.
* Switching unit: a GRUCell(n_e + n_h + n_z → 32) whose new state is read by a linear head and a sigmoid
  (head bias ``switch_bias`` = 0 by default: β starts at ≈ 0.5). Its state and the history GRU's state are the "switch state" that
  Algorithm 1 carries from step to step.
* Decoder initialisation: LoRA-style by default (U(z) = 0 for every z at the start, gradients still flow);
  ``decoder_init_std`` > 0 makes U depend on z from the first step. Both knobs are exposed because the
  first steps decide whether the code becomes informative before β drifts (see discovery.py).
* Initial code z_0 = 0 (before the first step), so z_1 = β_1 z̃_1; β_1 is learned like every other β_t
  (a "single switch at t = 0" is then a measurable outcome, as in the paper's co-training collapse).
* log σ² is clamped to [−8, 4] for numerical safety.
* Evaluation (switching export, alignment metrics) and the step API are deterministic: z̃_t = μ_t and
  β_t = σ(logit) (σ(logit / τ) with the Gumbel relaxation, i.e. without its noise).
* Optional Gumbel-Sigmoid relaxation (``gumbel=True``, when sampling): β = σ((logit + log u − log(1−u)) / τ).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from irl_core.controllers import Control, Hypernetwork, apply_control

KIND = "metacontroller"
EMB_READOUTS = ("pooled", "per_step")


@dataclass
class MetaControllerConfig:
    """Architecture of the metacontroller (Table A9 defaults)."""

    d_model: int                  # n_e, width of the residual stream it reads and writes
    n_z: int = 8                  # code size
    enc_hidden: int = 64          # encoder MLP hidden width
    dec_hidden: int = 32          # hypernetwork hidden width
    n_h: int = 32                 # history GRU size
    n_s: int = 32                 # sequence-embedding size
    n_switch: int = 32            # switching unit's GRUCell size (not in the paper)
    emb_layers: int = 1           # L_emb, layers of the bidirectional recurrence (not in the paper)
    emb_readout: str = "pooled"   # "pooled": one s per sequence; "per_step": s_t, the embedder's output at t (not in the paper)
    rank: int = 16                # rank of U (0 = full n_e × n_e)
    force_beta_one: bool = False  # the "no temporal integration" baseline: β ≡ 1
    gumbel: bool = False          # Gumbel-Sigmoid relaxation of β in training (grid rate–distortion only)
    gumbel_temperature: float = 1.0
    switch_bias: float = 0.0      # initial bias of the β head (0: β ≈ 0.5 at the start; not in the paper)
    decoder_init_std: float = 0.0  # init std of the z-dependent decoder weights (0: LoRA-style, U(z) = 0 at start)

    def __post_init__(self) -> None:
        for name in ("d_model", "n_z", "enc_hidden", "dec_hidden", "n_h", "n_s", "n_switch", "emb_layers"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.gumbel_temperature <= 0:
            raise ValueError(f"gumbel_temperature must be positive, got {self.gumbel_temperature}")
        if self.emb_readout not in EMB_READOUTS:
            raise ValueError(f"emb_readout must be one of {list(EMB_READOUTS)}, got {self.emb_readout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


# --- sequence embedder (non-causal) -----------------------------------------------------------------
def linear_scan(u: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """h_t = a ⊙ h_{t−1} + (1 − a) ⊙ u_t with h_0 = 0, for u (B, T, n) and a (n,) in (0, 1)."""
    h = torch.zeros_like(u[:, 0])
    out = []
    for t in range(u.shape[1]):
        h = a * h + (1 - a) * u[:, t]
        out.append(h)
    return torch.stack(out, 1)  # (B, T, n)


class BidirectionalRecurrence(nn.Module):
    """One embedder layer: a diagonal linear recurrence forwards and backwards, then a GELU mixing layer."""

    def __init__(self, d_in: int, n: int):
        super().__init__()
        self.inp = nn.Linear(d_in, 2 * n)
        # decays a = σ(λ) spread over (0.5, 0.98): time constants from 2 to ~50 steps
        self.decay_logit = nn.Parameter(torch.logit(torch.linspace(0.5, 0.98, n).repeat(2)))
        self.mix = nn.Linear(2 * n, n)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        u = self.inp(x) * mask.unsqueeze(-1)  # (B, T, 2n), zero at padding
        a_f, a_b = torch.sigmoid(self.decay_logit).chunk(2)
        u_f, u_b = u.chunk(2, -1)
        h_f = linear_scan(u_f, a_f)  # (B, T, n) summary of e_{1:t}
        h_b = linear_scan(u_b.flip(1), a_b).flip(1)  # (B, T, n) summary of e_{t:T}
        return F.gelu(self.mix(torch.cat([h_f, h_b], -1))) * mask.unsqueeze(-1)


class SequenceEmbedder(nn.Module):
    """s = f_emb(e_{1:T}): stacked bidirectional recurrences, read out mean-pooled over the valid steps (B, n_s)
    or per step (B, T, n_s), where s_t summarises e_{1:t} (forwards) and e_{t:T} (backwards)."""

    def __init__(self, d_model: int, n_s: int, n_layers: int = 1, readout: str = "pooled"):
        super().__init__()
        self.readout = readout
        self.layers = nn.ModuleList(BidirectionalRecurrence(d_model if i == 0 else n_s, n_s) for i in range(n_layers))
        self.out = nn.Linear(n_s, n_s)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.dtype)  # (B, T)
        for layer in self.layers:
            x = layer(x, m)  # (B, T, n_s)
        if self.readout == "per_step":
            return self.out(x)  # (B, T, n_s)
        pooled = x.sum(1) / m.sum(1, keepdim=True).clamp_min(1)  # (B, n_s)
        return self.out(pooled)


# --- encoder, switching unit --------------------------------------------------------------------------
class GaussianEncoder(nn.Module):
    """(μ_t, log σ²_t) = f_enc(e_t, h_{t−1}, s): an MLP with one hidden layer."""

    def __init__(self, d_in: int, hidden: int, n_z: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, 2 * n_z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, -1)
        return mu, logvar.clamp(-8.0, 4.0)


class SwitchingUnit(nn.Module):
    """β_t = σ(w · g_t + b), g_t = GRUCell([e_t, h_{t−1}, z_{t−1}], g_{t−1}): causal, with its own state g."""

    def __init__(self, d_model: int, n_h: int, n_z: int, n_switch: int):
        super().__init__()
        self.n_switch = n_switch
        self.cell = nn.GRUCell(d_model + n_h + n_z, n_switch)
        self.head = nn.Linear(n_switch, 1)
        nn.init.zeros_(self.head.bias)

    def forward(self, x_t: torch.Tensor, h_prev: torch.Tensor, z_prev: torch.Tensor,
                g_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (logit of β_t (B,), new switch state (B, n_switch))."""
        g = self.cell(torch.cat([x_t, h_prev, z_prev], -1), g_prev)
        return self.head(g).squeeze(-1), g


def integrate(beta: torch.Tensor, z_tilde: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
    """Temporal integration z_t = β_t z̃_t + (1 − β_t) z_{t−1} for β (B,), codes (B, n_z)."""
    b = beta.unsqueeze(-1)
    return b * z_tilde + (1 - b) * z_prev


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) summed over the last dim."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1)


class SwitchState(NamedTuple):
    """What Algorithm 1 carries between steps: history GRU state h_{t−1}, switch state g_{t−1}, code z_{t−1}."""

    h: torch.Tensor  # (B, n_h)
    g: torch.Tensor  # (B, n_switch)
    z: torch.Tensor  # (B, n_z)


class MetaOutput(NamedTuple):
    e_hat: torch.Tensor    # (B, T, d) controlled residual stream
    beta: torch.Tensor     # (B, T) switching gate
    z: torch.Tensor        # (B, T, n_z) integrated codes
    z_tilde: torch.Tensor  # (B, T, n_z) proposals
    mu: torch.Tensor       # (B, T, n_z)
    logvar: torch.Tensor   # (B, T, n_z)
    kl: torch.Tensor       # (B, T) KL(N(μ_t, σ²_t) ‖ N(0, I)) (not masked)
    s: torch.Tensor        # (B, n_s) sequence embedding ((B, T, n_s) with the per-step readout)


class MetaController(nn.Module):
    def __init__(self, cfg: MetaControllerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.embedder = SequenceEmbedder(d, cfg.n_s, cfg.emb_layers, cfg.emb_readout)
        self.history = nn.GRU(d, cfg.n_h, batch_first=True)
        self.encoder = GaussianEncoder(d + cfg.n_h + cfg.n_s, cfg.enc_hidden, cfg.n_z)
        self.switch = SwitchingUnit(d, cfg.n_h, cfg.n_z, cfg.n_switch)
        nn.init.constant_(self.switch.head.bias, cfg.switch_bias)
        self.decoder = Hypernetwork(cfg.n_z, d, cfg.rank, cfg.dec_hidden, cfg.decoder_init_std)

    # --- step-wise pieces (Algorithm 1 runs these causally) --------------------------------------
    def initial_state(self, batch: int) -> SwitchState:
        w = self.decoder.hidden.weight
        z = lambda n: torch.zeros(batch, n, device=w.device, dtype=w.dtype)  # noqa: E731
        return SwitchState(z(self.cfg.n_h), z(self.cfg.n_switch), z(self.cfg.n_z))

    def switch_step(self, e_t: torch.Tensor, state: SwitchState) -> tuple[torch.Tensor, torch.Tensor]:
        """β_t from (e_t, h_{t−1}, z_{t−1}, g_{t−1}): → (logit (B,), new switch state g_t (B, n_switch))."""
        if self.cfg.force_beta_one:
            return torch.full_like(e_t[:, 0], 1e4), state.g
        logit, g = self.switch(self.norm(e_t), state.h, state.z, state.g)
        if self.cfg.gumbel:  # the noise-free Gumbel-Sigmoid, as in forward(sample=False)
            logit = logit / self.cfg.gumbel_temperature
        return logit, g

    def history_step(self, e_t: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        """h_t = GRU(e_t, h_{t−1}) for one step (same weights as the sequence pass)."""
        return self.history(self.norm(e_t).unsqueeze(1), h_prev.unsqueeze(0).contiguous())[1][0]

    def decode(self, z: torch.Tensor) -> Control:
        """U_t = f_hyp(z_t)."""
        return self.decoder(z)

    def step(self, e_t: torch.Tensor, z_tilde_t: torch.Tensor, state: SwitchState,
             threshold: float | None = None) -> tuple[torch.Tensor, torch.Tensor, SwitchState]:
        """One causal step given a proposal z̃_t (from the encoder or an RL policy).

        Returns ``(ê_t (B, d), β_t (B,), new state)``. ``threshold`` binarises β (Algorithm 1: H(β − 0.5)).
        """
        logit, g = self.switch_step(e_t, state)
        beta = torch.sigmoid(logit)
        if threshold is not None:
            beta = (beta > threshold).to(e_t.dtype)
        z = integrate(beta, z_tilde_t, state.z)
        e_hat = apply_control(e_t, self.decode(z))
        return e_hat, beta, SwitchState(self.history_step(e_t, state.h), g, z)

    # --- the whole sequence (training, export) ------------------------------------------------------
    def forward(self, e: torch.Tensor, mask: torch.Tensor, sample: bool = True,
                generator: torch.Generator | None = None, z_tilde: torch.Tensor | None = None) -> MetaOutput:
        """e (B, T, d) residual stream, mask (B, T) valid steps → :class:`MetaOutput`.

        ``sample`` draws z̃ = μ + σ ε (and Gumbel noise if enabled); ``sample=False`` uses μ and σ(logit).
        ``z_tilde`` (B, T, n_z) replaces the encoder's proposals (teacher forcing a code sequence; μ, log σ²
        and the KL are still the encoder's). Note that in training β_t reads z_{t−1}, which carries the
        encoder's non-causal s: the switching *unit* is causal, the proposals it integrates are not (as in
        the paper; at RL time the proposals come from a causal policy).
        """
        if e.dim() != 3 or mask.shape != e.shape[:2]:
            raise ValueError(f"expected e (B, T, d) and mask (B, T), got {tuple(e.shape)} and {tuple(mask.shape)}")
        B, T, _ = e.shape
        x = self.norm(e)  # (B, T, d)
        s = self.embedder(x, mask)  # (B, n_s) or (B, T, n_s), sees the whole sequence
        h, _ = self.history(x)  # (B, T, n_h), h_t after e_t
        h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)  # (B, T, n_h) h_{t−1}
        s_t = s if s.dim() == 3 else s.unsqueeze(1).expand(B, T, -1)  # (B, T, n_s)
        mu, logvar = self.encoder(torch.cat([x, h_prev, s_t], -1))  # 2 × (B, T, n_z)
        if z_tilde is not None:
            if z_tilde.shape != mu.shape:
                raise ValueError(f"z_tilde must have shape {tuple(mu.shape)}, got {tuple(z_tilde.shape)}")
        elif not sample:
            z_tilde = mu
        else:
            eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
            z_tilde = mu + (0.5 * logvar).exp() * eps
        state = self.initial_state(B)
        z_prev, g = state.z, state.g
        betas, zs = [], []
        for t in range(T):
            if self.cfg.force_beta_one:
                beta = torch.ones_like(mu[:, t, 0])
            else:
                logit, g = self.switch(x[:, t], h_prev[:, t], z_prev, g)
                if self.cfg.gumbel:
                    if sample:  # logistic noise = difference of two Gumbels
                        u = torch.rand(logit.shape, device=logit.device, dtype=logit.dtype, generator=generator)
                        u = u.clamp(1e-6, 1 - 1e-6)
                        logit = logit + u.log() - (1 - u).log()
                    logit = logit / self.cfg.gumbel_temperature
                beta = torch.sigmoid(logit)  # (B,)
            z_prev = integrate(beta, z_tilde[:, t], z_prev)  # (B, n_z)
            betas.append(beta)
            zs.append(z_prev)
        beta, z = torch.stack(betas, 1), torch.stack(zs, 1)  # (B, T), (B, T, n_z)
        e_hat = apply_control(e, self.decode(z))  # (B, T, d)
        return MetaOutput(e_hat, beta, z, z_tilde, mu, logvar, gaussian_kl(mu, logvar), s)

    def config_dict(self) -> dict:
        return self.cfg.to_dict()
