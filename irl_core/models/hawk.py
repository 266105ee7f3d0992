"""Hawk's recurrent block (De et al. 2024, "Griffin"): a gated temporal convolution and a Real-Gated Linear
Recurrent Unit (RG-LRU), followed by a gated MLP, both as residual branches. Used as the 1-layer SSM of
the internal-RL policy (docs/paper.md §6, Tables A13/A14: depth 1, width 256).

Every module has a sequence form (``forward``, (B, K, w) with a validity mask) and a step form
(``step``, (B, w) plus a state), and the sequence form is the step form applied K times, so the two
agree to float precision. The recurrence, for input x_k (after the temporal convolution):

    r_k = σ(W_a x_k + b_a),  i_k = σ(W_x x_k + b_x),  log a_k = −c · softplus(−Λ) · r_k   (a_k = σ(Λ)^{c r_k})
    h_k = a_k ⊙ h_{k−1} + sqrt(1 − a_k²) ⊙ (i_k ⊙ x_k)

with c = 8 and σ(Λ) initialised uniformly in [0.9, 0.999] as in the Griffin paper. The input scale
sqrt(1 − a²) is :func:`input_scale`: exact near a = 1 and with a bounded derivative there (README "Choices").
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class _BoundedSqrt(torch.autograd.Function):
    """sqrt(u) whose derivative 1 / (2 sqrt u) is capped at ``max_grad`` (it is infinite at u = 0)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, max_grad: float) -> torch.Tensor:
        root = torch.sqrt(u)
        ctx.save_for_backward(root)
        ctx.max_grad = max_grad
        return root

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (root,) = ctx.saved_tensors
        return grad / (2 * root).clamp_min(1.0 / ctx.max_grad), None


def input_scale(log_a: torch.Tensor, max_grad: float = 1000.0) -> torch.Tensor:
    """sqrt(1 − a²) for a = exp(log_a) ≤ 1, the RG-LRU's input normalisation.

    Computed as sqrt(−expm1(2 log a)), which keeps its precision where a → 1 (1 − a·a cancels to 0 there in
    float32), through a square root whose derivative is capped at ``max_grad``, as the Griffin authors' code does.
    Without the cap a single gate that closes completely (a = 1 to float precision: r → 0, or σ(Λ) → 1) makes
    d sqrt(u)/du infinite and every gradient NaN; the ant base model's 20,000-step run turned NaN that way at step
    ~12,000 (BENCHMARKS.md, "Ant base model")."""
    return _BoundedSqrt.apply((-torch.expm1(2 * log_a)).clamp_min(0), max_grad)


class HawkState(NamedTuple):
    h: torch.Tensor     # (B, w) RG-LRU state
    conv: torch.Tensor  # (B, kernel − 1, w) the last inputs of the temporal convolution


class RGLRU(nn.Module):
    """The Real-Gated Linear Recurrent Unit, one step at a time."""

    def __init__(self, width: int, c: float = 8.0):
        super().__init__()
        self.c = c
        self.gate_a = nn.Linear(width, width)
        self.gate_x = nn.Linear(width, width)
        a0 = torch.empty(width).uniform_(0.9, 0.999)
        self.a_logit = nn.Parameter(torch.log(a0) - torch.log1p(-a0))  # Λ with σ(Λ) = a0

    def step(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (B, w), h (B, w) → new h (B, w)."""
        r, i = torch.sigmoid(self.gate_a(x)), torch.sigmoid(self.gate_x(x))
        log_a = -self.c * F.softplus(-self.a_logit) * r
        return log_a.exp() * h + input_scale(log_a) * (i * x)


class HawkBlock(nn.Module):
    """RMSNorm → [GeLU(W_g x)] ⊙ [RG-LRU(conv(W_x x))] → W_o, residual; RMSNorm → gated MLP, residual."""

    def __init__(self, width: int, kernel: int = 4, mlp_mult: int = 3):
        super().__init__()
        self.width, self.kernel = width, kernel
        self.norm1, self.norm2 = nn.RMSNorm(width), nn.RMSNorm(width)
        self.in_gate, self.in_rec = nn.Linear(width, width), nn.Linear(width, width)
        self.conv = nn.Parameter(torch.randn(kernel, width) / math.sqrt(kernel))  # depth-wise, causal
        self.conv_bias = nn.Parameter(torch.zeros(width))
        self.lru = RGLRU(width)
        self.out = nn.Linear(width, width)
        self.mlp_gate, self.mlp_up = nn.Linear(width, mlp_mult * width), nn.Linear(width, mlp_mult * width)
        self.mlp_down = nn.Linear(mlp_mult * width, width)

    def initial_state(self, batch: int, like: torch.Tensor) -> HawkState:
        z = like.new_zeros
        return HawkState(z(batch, self.width), z(batch, self.kernel - 1, self.width))

    def step(self, x: torch.Tensor, state: HawkState) -> tuple[torch.Tensor, HawkState]:
        """x (B, w) → (y (B, w), new state)."""
        u = self.norm1(x)
        gate = F.gelu(self.in_gate(u))
        v = self.in_rec(u)  # (B, w)
        window = torch.cat([state.conv, v.unsqueeze(1)], 1)  # (B, kernel, w), oldest first
        v = (window * self.conv).sum(1) + self.conv_bias
        h = self.lru.step(v, state.h)
        x = x + self.out(gate * h)
        u = self.norm2(x)
        x = x + self.mlp_down(F.gelu(self.mlp_gate(u)) * self.mlp_up(u))
        return x, HawkState(h, window[:, 1:])

    def forward(self, xs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """xs (B, K, w) → (B, K, w) for sequences whose valid steps come first (``mask`` (B, K), True for the
        first n_b steps of sequence b); outputs at invalid steps are zero.

        Sequences are sorted by length, and step k runs only the n_k sequences still going, so the cost is
        the number of valid steps, not B × K (episodes have very different numbers of decisions).
        """
        B, K, _ = xs.shape
        counts = mask.sum(1) if mask is not None else torch.full((B,), K, device=xs.device)
        order = torch.argsort(counts, descending=True)
        xs, counts = xs[order], counts[order]
        state = self.initial_state(B, xs)
        out = []
        for k in range(K):
            n = int((counts > k).sum())
            if n == 0:
                break
            y, state = self.step(xs[:n, k], HawkState(state.h[:n], state.conv[:n]))  # rows ≥ n have ended for good
            out.append(F.pad(y, (0, 0, 0, B - n)))
        ys = torch.stack(out, 1) if out else xs.new_zeros(B, 0, xs.shape[2])
        ys = F.pad(ys, (0, 0, 0, K - ys.shape[1]))
        return ys[torch.argsort(order)]
