"""The ant base model: a Hawk SSM (De et al. 2024, "Griffin") over the ant's observations (docs/paper.md §2,
Tables A5/A15): n_e = 256, depth 8, LRU width 256, 8 heads, ReLU MLP of 512, initialisers' variance scaled by
0.1, and the Eq. 5 heads: a Gaussian over the 8 joint torques with a learned diagonal covariance, and the next
observation (weight λ = 10 in the loss).

Each block is pre-norm: RMSNorm → Hawk recurrent mixing → residual add → RMSNorm → MLP → residual add. The
recurrent mixing is Griffin's: a GeLU gate branch times a recurrence branch (linear → causal depth-wise
convolution of width 4 → RG-LRU), then a linear map back. The RG-LRU's gates are block-diagonal with one block
per head (Griffin's "heads"):

    r_t = σ(W_a x_t + b_a),  i_t = σ(W_x x_t + b_x),  a_t = σ(Λ)^{c r_t} (c = 8),
    h_t = a_t ⊙ h_{t−1} + sqrt(1 − a_t²) ⊙ (i_t ⊙ x_t).

Two forms give the same outputs (tested): ``forward`` runs whole sequences with a parallel (Hillis–Steele)
scan of the linear recurrence, log2 T passes of tensor operations, which is what makes training fast; ``step``
runs one control step from a :class:`AntSSMState`, which is what a rollout in MuJoCo uses.

Hook names follow TransformerLens (``irl_core.models.hooks``): ``hook_embed`` (layer 0) and
``blocks.{l}.hook_resid_post`` (layer l + 1), so probes and controllers address layers as on the grid model.

Choices where the paper is silent (README "Choices"): observations enter standardised by the training set's
mean and standard deviation (kept in the checkpoint as buffers); the covariance is one learned log standard
deviation per action dimension, shared by all states (the expert's own Gaussian is of that family); the
observation likelihood is a unit-variance Gaussian over the standardised next observation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from irl_core.models.hawk import input_scale
from irl_core.models.hooks import HookedModule, HookPoint

KIND = "ant-ssm"
LOG_2PI = math.log(2 * math.pi)


@dataclass
class AntSSMConfig:
    obs_dim: int = 41
    act_dim: int = 8
    d_model: int = 256
    n_layers: int = 8
    lru_width: int = 256
    n_heads: int = 8
    d_mlp: int = 512
    conv_kernel: int = 4
    init_scale: float = 0.1  # variance scaling of every initialiser (Table A15)

    def __post_init__(self) -> None:
        if self.lru_width % self.n_heads:
            raise ValueError(f"lru_width {self.lru_width} is not a multiple of n_heads {self.n_heads}")


class AntSSMState(NamedTuple):
    h: torch.Tensor     # (L, B, w) RG-LRU states
    conv: torch.Tensor  # (L, B, kernel − 1, w) the last inputs of each block's convolution


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t ⊙ h_{t−1} + b_t along dim 1 with h_0 = 0, for a, b (B, T, w): an inclusive Hillis–Steele scan
    (log2 T passes; only products of the a_t ≤ 1 appear, so it is as stable as the loop)."""
    T, d = a.shape[1], 1
    while d < T:
        b = torch.cat([b[:, :d], b[:, d:] + a[:, d:] * b[:, :-d]], 1)
        a = torch.cat([a[:, :d], a[:, d:] * a[:, :-d]], 1)
        d *= 2
    return b


class BlockDiagonal(nn.Module):
    """x (…, w) → (…, w) through ``heads`` independent (w/heads × w/heads) linear maps, plus a bias."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.weight = nn.Parameter(torch.empty(heads, width // heads, width // heads))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.unflatten(-1, (self.heads, -1))
        return torch.einsum("...hi,hij->...hj", xs, self.weight).flatten(-2) + self.bias


class RecurrentMixing(nn.Module):
    """Griffin's recurrent block: W_o [GeLU(W_g x) ⊙ RG-LRU(conv(W_r x))]."""

    def __init__(self, cfg: AntSSMConfig, c: float = 8.0):
        super().__init__()
        w, self.kernel, self.c = cfg.lru_width, cfg.conv_kernel, c
        self.gate, self.rec = nn.Linear(cfg.d_model, w), nn.Linear(cfg.d_model, w)
        self.conv = nn.Parameter(torch.empty(self.kernel, w))  # depth-wise, causal; row k−1 multiplies the newest input
        self.conv_bias = nn.Parameter(torch.zeros(w))
        self.gate_a, self.gate_x = BlockDiagonal(w, cfg.n_heads), BlockDiagonal(w, cfg.n_heads)
        a0 = torch.empty(w).uniform_(0.9, 0.999)
        self.a_logit = nn.Parameter(torch.log(a0) - torch.log1p(-a0))  # Λ with σ(Λ) = a0
        self.out = nn.Linear(w, cfg.d_model)

    def _coefficients(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a_t and the input term sqrt(1 − a_t²) ⊙ i_t ⊙ v_t of the recurrence, for convolved inputs v; in fp32 at
        least (outside autocast: the recurrence compounds rounding over hundreds of steps)."""
        with torch.autocast(v.device.type, enabled=False):
            v = v.float() if v.dtype in (torch.bfloat16, torch.float16) else v
            r, i = torch.sigmoid(self.gate_a(v)), torch.sigmoid(self.gate_x(v))
            log_a = -self.c * F.softplus(-self.a_logit) * r
            return log_a.exp(), input_scale(log_a) * (i * v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d) → (B, T, d)."""
        v = self.rec(x)
        v = F.conv1d(F.pad(v.transpose(1, 2), (self.kernel - 1, 0)), self.conv.t().unsqueeze(1),
                     self.conv_bias, groups=v.shape[-1]).transpose(1, 2)
        a, b = self._coefficients(v)
        with torch.autocast(v.device.type, enabled=False):
            h = linear_scan(a, b)
        return self.out(F.gelu(self.gate(x)) * h)

    def step(self, x: torch.Tensor, h: torch.Tensor, conv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, d), h (B, w), conv (B, kernel − 1, w) → (y (B, d), h, conv)."""
        window = torch.cat([conv, self.rec(x).unsqueeze(1)], 1)  # (B, kernel, w), oldest first
        v = (window * self.conv).sum(1) + self.conv_bias
        a, b = self._coefficients(v)
        h = a * h.to(a.dtype) + b
        return self.out(F.gelu(self.gate(x)) * h), h, window[:, 1:]


class AntBlock(nn.Module):
    def __init__(self, cfg: AntSSMConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(cfg.d_model), nn.RMSNorm(cfg.d_model)
        self.mix = RecurrentMixing(cfg)
        self.mlp_in, self.mlp_out = nn.Linear(cfg.d_model, cfg.d_mlp), nn.Linear(cfg.d_mlp, cfg.d_model)
        self.hook_mix_out, self.hook_resid_mid = HookPoint(), HookPoint()
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_mid(x)
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp_out(F.relu(self.mlp_in(self.norm2(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mlp(x + self.hook_mix_out(self.mix(self.norm1(x))))

    def step(self, x, h, conv):
        y, h, conv = self.mix.step(self.norm1(x), h, conv)
        return self._mlp(x + self.hook_mix_out(y)), h, conv


class AntSSM(HookedModule):
    """o_1..o_T (B, T, obs_dim) → the Gaussian over a_t (mean, log std) and the predicted standardised o_{t+1}."""

    def __init__(self, cfg: AntSSMConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("obs_mean", torch.zeros(cfg.obs_dim))
        self.register_buffer("obs_std", torch.ones(cfg.obs_dim))
        self.embed = nn.Linear(cfg.obs_dim, cfg.d_model)
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(AntBlock(cfg) for _ in range(cfg.n_layers))
        self.norm_f = nn.RMSNorm(cfg.d_model)
        self.action_head = nn.Linear(cfg.d_model, cfg.act_dim)
        self.action_log_std = nn.Parameter(torch.full((cfg.act_dim,), math.log(0.5)))
        self.obs_head = nn.Linear(cfg.d_model, cfg.obs_dim)
        self._init(cfg.init_scale)
        self.setup_hooks()

    @property
    def n_layers(self) -> int:
        return self.cfg.n_layers

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def _init(self, scale: float) -> None:
        """Variance scaling (fan-in, truncated normal): Var[w] = scale / fan_in for every weight, biases zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=math.sqrt(scale / m.in_features))
                nn.init.zeros_(m.bias)
            elif isinstance(m, BlockDiagonal):
                nn.init.trunc_normal_(m.weight, std=math.sqrt(scale / m.weight.shape[1]))
            elif isinstance(m, RecurrentMixing):
                nn.init.trunc_normal_(m.conv, std=math.sqrt(scale / m.kernel))

    def set_normaliser(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std.clamp_min(1e-3))

    def normalise(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.norm_f(x)
        return self.action_head(x), self.action_log_std.expand(*x.shape[:-1], -1), self.obs_head(x)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """obs (B, T, obs_dim), raw → (action mean (B, T, act), log std (B, T, act), next standardised obs (B, T, obs))."""
        x = self.hook_embed(self.embed(self.normalise(obs)))
        for block in self.blocks:
            x = block(x)
        return self._heads(x)

    def initial_state(self, batch: int, device=None) -> AntSSMState:
        c, L = self.cfg, self.cfg.n_layers
        device = device or self.embed.weight.device
        return AntSSMState(torch.zeros(L, batch, c.lru_width, device=device),
                           torch.zeros(L, batch, c.conv_kernel - 1, c.lru_width, device=device))

    def step(self, obs: torch.Tensor, state: AntSSMState) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], AntSSMState]:
        """One control step: obs (B, obs_dim) raw → ((mean, log std, next obs) each (B, ·), new state)."""
        x = self.hook_embed(self.embed(self.normalise(obs)))
        hs, convs = [], []
        for l, block in enumerate(self.blocks):
            x, h, conv = block.step(x, state.h[l], state.conv[l])
            hs.append(h)
            convs.append(conv)
        return self._heads(x), AntSSMState(torch.stack(hs), torch.stack(convs))


def ant_pretrain_loss(model: AntSSM, obs: torch.Tensor, actions: torch.Tensor, length: torch.Tensor,
                      obs_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 5 on a padded batch: obs (B, T, obs_dim) o_1..o_T, actions (B, T, act), length (B,).

    Per valid step: −ln N(a_t; μ_t, diag σ²) − λ ln N(ô_{t+1}; o_{t+1}, I) on standardised observations (the last
    step of an episode has no next observation in the data, so it has no observation term). Means over steps.
    """
    T = obs.shape[1]
    steps = torch.arange(T, device=obs.device)
    valid = steps[None] < length[:, None]                # (B, T)
    has_next = steps[None] < (length[:, None] - 1)       # o_{t+1} is in the data
    mean, log_std, obs_pred = model(obs)
    mean, log_std, obs_pred = mean.float(), log_std.float(), obs_pred.float()
    z = (actions - mean) / log_std.exp()
    nll = 0.5 * (z * z).sum(-1) + log_std.sum(-1) + 0.5 * actions.shape[-1] * LOG_2PI
    action_nll = nll[valid].mean()
    target = model.normalise(obs[:, 1:])
    err = obs_pred[:, :-1] - target
    obs_nll_steps = 0.5 * (err * err).sum(-1) + 0.5 * obs.shape[-1] * LOG_2PI
    obs_nll = obs_nll_steps[has_next[:, :-1]].mean() if bool(has_next.any()) else obs_pred.sum() * 0
    mse = ((mean - actions) ** 2).mean(-1)[valid].mean()
    loss = action_nll + obs_coef * obs_nll
    return loss, {"action_nll": action_nll.detach(), "obs_nll": obs_nll.detach(), "action_mse": mse.detach()}
