"""CompILE (Kipf et al. 2019) adapted as the paper's baseline (docs/paper.md §6, C.4.3, Tables A11/A12).

CompILE replaces the metacontroller as the module that produces the codes z, and its codes steer the
same frozen base model through the same controller, ê_t = e_t + U(z) e_t at layer L/2 with a rank-16 U
from a hypernetwork (hidden 32). What differs is how z and its segments are inferred:

* **Encoder**: a causal recurrent encoder over the *raw observations* with the architecture of the first
  half of the sequence model (its observation embedding and blocks 0 … L/2 − 1), initialised from the
  pretrained base model's weights and trained (the base model itself stays frozen).
* **Segments**: at most M = 4 per episode. Boundary i is a categorical over positions p ∈ {1 … length}
  ("segment i ends before step p"), logits from a 1-hidden-layer MLP (n_h = 32) of the encoder states,
  drawn with a Gumbel-softmax relaxation (temperature ``temperature``); positions already covered by
  earlier segments are masked softly (log of the uncovered probability). The last segment takes the rest.
* **Codes**: z_i ~ N(μ_i, σ_i²) with (μ_i, log σ_i²) from a 1-hidden-layer MLP (n_h = 32) of the mean
  encoder state over segment i (weighted by its soft mask), n_z = 8.
* **Loss**: Σ_t −ln p(a_t | o_{1:t}, z(t)) + α_z Σ_i KL(q(z_i) ‖ N(0, I)) + α_b Σ_i KL(q(b_i) ‖ p(b_i)), with
  z(t) = Σ_i m_i(t) z_i the code of step t's segment (m_i the soft segment masks) and p(b_i) a Poisson prior
  (rate ``prior_rate`` = 10) over the length of segment i counted from the expected position of boundary
  i − 1, normalised over the valid positions.

Choices where the paper is silent (README "Choices"):
* CompILE decodes each segment's steps with that segment's code, Σ_i Σ_t m_i(t) ln p(a_t | s_t, z_i), with a
  memoryless decoder. Here the decoder is the base model's upper half, which attends to earlier steps, so
  one pass applies to every step the code of its own segment, as happens when the codes are executed;
  with hard boundaries the two agree, with relaxed ones the codes are mixed by the soft masks.
* Every term is divided by the number of valid steps of the batch (means per step, as for the
  metacontroller), which keeps α_z and α_b on the scale of the per-step NLL.
* The encoder's states are read through a LayerNorm without affine parameters, like the metacontroller.
* Internal RL with CompILE (:class:`CompILESwitcher`): CompILE's boundary posterior is a distribution over
  positions of the *whole* episode, so it has no causal switching rule. At RL time a new code is asked
  for every ``round(prior_rate)`` = 10 primitive steps (the prior's mean segment length) and at t = 0;
  the policy and PPO are those of internal RL. This is our adaptation; the paper does not say how its
  CompILE baseline decides when to switch.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from irl_core.checkpoints import (CheckpointError, atomic_write_json, load_checkpoint, load_state_into,
                                  save_checkpoint, start_or_resume, training_state)
from irl_core.config import preset
from irl_core.controllers import (Control, Hypernetwork, apply_control, default_layer, freeze, lower,
                                  sequence_nll, upper_logits)
from irl_core.data import expert_episodes, heldout_episodes, training_tensors, trim
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.metacontroller import SwitchState, gaussian_kl
from irl_core.models.transformer import GridTransformer
from irl_core.runs import Run

KIND = "compile"


@dataclass
class CompILEConfig:
    """One CompILE training run (Table A11 for the ``paper`` preset)."""

    alpha_z: float = 0.1          # weight of the code KL (the paper sweeps 0.003 … 1)
    alpha_b: float = 0.1          # weight of the boundary KL (the paper sweeps 0.003 … 1)
    temperature: float = 1.0      # Gumbel-softmax temperature of the boundaries (the paper: 0.5 or 1)
    max_segments: int = 4         # M
    prior_rate: float = 10.0      # Poisson rate of the segment-length prior
    n_z: int = 8
    latent_hidden: int = 32       # hidden width of the boundary and code MLPs
    rank: int = 16                # rank of U (0 = full)
    dec_hidden: int = 32          # hypernetwork hidden width
    layer: int | None = None      # controlled layer; None = L/2
    tasks: str = "pretrain"       # fresh ε = 0 expert episodes (D*) every step
    steps: int = 32_000
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.03    # not in Table A11; as the metacontroller's
    grad_clip: float = 1.0        # not in the paper
    log_every: int = 50
    eval_every: int = 1000
    eval_episodes: int = 512
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        if self.max_segments < 1:
            raise ValueError(f"max_segments must be at least 1, got {self.max_segments}")
        if self.prior_rate <= 0 or self.temperature <= 0:
            raise ValueError("prior_rate and temperature must be positive")
        if self.alpha_z < 0 or self.alpha_b < 0:
            raise ValueError("alpha_z and alpha_b must be non-negative")

    def to_dict(self) -> dict:
        return asdict(self)


COMPILE_PRESETS: dict[str, CompILEConfig] = {
    "tiny": CompILEConfig(steps=6, batch_size=8, log_every=2, eval_every=3, eval_episodes=16, checkpoint_every=3),
    "cpu": CompILEConfig(steps=2000, batch_size=128, log_every=25, eval_every=250, checkpoint_every=250),
    "paper": CompILEConfig(),
}


def compile_preset(name: str, **overrides) -> CompILEConfig:
    return preset(COMPILE_PRESETS, name, **overrides)


class Segmentation(NamedTuple):
    masks: torch.Tensor     # (M, B, T) soft membership of each step in each segment
    z: torch.Tensor         # (M, B, n_z) codes (sampled or μ)
    kl_z: torch.Tensor      # (M, B)
    kl_b: torch.Tensor      # (M − 1, B)
    boundaries: torch.Tensor  # (M − 1, B, T + 1) relaxed one-hot boundary positions


def poisson_log_pmf(k: torch.Tensor, rate: float) -> torch.Tensor:
    return k * math.log(rate) - rate - torch.lgamma(k + 1)


class CompILE(nn.Module):
    """Encoder (a trainable copy of the base model's lower half), boundary and code MLPs, hypernetwork decoder."""

    def __init__(self, base: GridTransformer, cfg: CompILEConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        d = base.cfg.d_model
        self.embed = copy.deepcopy(base.embed)  # θ of the encoder starts at the pretrained lower half
        self.blocks = nn.ModuleList(copy.deepcopy(base.blocks[i]) for i in range(layer))
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        h = cfg.latent_hidden
        self.boundary = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 1))
        self.latent = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 2 * cfg.n_z))
        self.decoder = Hypernetwork(cfg.n_z, d, cfg.rank, cfg.dec_hidden)
        for p in self.parameters():
            p.requires_grad_(True)

    @property
    def n_z(self) -> int:
        return self.cfg.n_z

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations (B, T, 637) → encoder states (B, T, d) (causal)."""
        x = self.embed(obs.to(self.decoder.hidden.weight.dtype))
        for i, block in enumerate(self.blocks):
            x = block(x, None, i)
        return self.norm(x)

    def decode(self, z: torch.Tensor) -> Control:
        return self.decoder(z)

    def segment(self, states: torch.Tensor, mask: torch.Tensor, sample: bool = True,
                generator: torch.Generator | None = None) -> Segmentation:
        """Boundaries, soft segment masks and codes of each episode (states (B, T, d), mask (B, T))."""
        cfg = self.cfg
        B, T, _ = states.shape
        dev, dt = states.device, states.dtype
        length = mask.sum(1)  # (B,)
        positions = torch.arange(T + 1, device=dev)  # boundary p: the segment ends before step p
        valid_p = (positions.unsqueeze(0) >= 1) & (positions.unsqueeze(0) <= length.unsqueeze(1))  # (B, T+1)
        # a boundary at p is scored from the state of step p − 1 (causal: what has been seen up to the boundary)
        score = self.boundary(states).squeeze(-1)  # (B, T)
        score = torch.cat([torch.zeros_like(score[:, :1]), score], 1)  # (B, T+1), p = 0 is never valid
        covered = torch.zeros(B, T, device=dev, dtype=dt)  # P(step t belongs to an earlier segment)
        prev_pos = torch.zeros(B, device=dev, dtype=dt)  # expected position of the previous boundary
        masks, zs, kl_z, kl_b, bounds = [], [], [], [], []
        for i in range(cfg.max_segments):
            if i < cfg.max_segments - 1:
                # steps t < p are covered once boundary p is passed: P(p is still free) = 1 − covered[p − 1]
                free = torch.cat([torch.ones_like(covered[:, :1]), 1 - covered], 1).clamp_min(0)  # (B, T+1)
                logits = score + torch.log(free + 1e-6)
                logits = logits.masked_fill(~valid_p, float("-inf"))
                q = torch.softmax(logits, -1)  # (B, T+1)
                if sample:
                    u = torch.rand(logits.shape, device=dev, dtype=dt, generator=generator).clamp(1e-6, 1 - 1e-6)
                    b = torch.softmax((logits - torch.log(-torch.log(u))) / cfg.temperature, -1)
                else:
                    b = F.one_hot(logits.argmax(-1), T + 1).to(dt)
                # the prior: Poisson segment length from the expected previous boundary, over the valid positions
                log_p = poisson_log_pmf((positions.unsqueeze(0) - prev_pos.unsqueeze(1)).clamp_min(0), cfg.prior_rate)
                log_p = torch.log_softmax(log_p.masked_fill(~valid_p, float("-inf")), -1)
                log_p = torch.where(valid_p, log_p, 0.0)  # finite everywhere: no NaN gradients through where
                kl_b.append(torch.where(valid_p, q * (torch.log(q.clamp_min(1e-12)) - log_p), 0.0).sum(-1))
                before = torch.flip(torch.cumsum(torch.flip(b, [1]), 1), [1])[:, 1:]  # (B, T): Σ_{p > t} b(p)
                reach = torch.maximum(covered, before)  # P(step t is in a segment ≤ i)
                prev_pos = (b * positions).sum(-1)
                bounds.append(b)
            else:
                reach = torch.ones_like(covered)
            m = (reach - covered).clamp_min(0) * mask  # (B, T)
            covered = reach
            pooled = (m.unsqueeze(-1) * states).sum(1) / m.sum(1, keepdim=True).clamp_min(1e-6)  # (B, d)
            mu, logvar = self.latent(pooled).chunk(2, -1)
            logvar = logvar.clamp(-8, 4)
            if sample:
                eps = torch.randn(mu.shape, device=dev, dtype=dt, generator=generator)
                z = mu + (0.5 * logvar).exp() * eps
            else:
                z = mu
            masks.append(m)
            zs.append(z)
            kl_z.append(gaussian_kl(mu, logvar))
        empty = torch.zeros(0, B, T + 1, device=dev, dtype=dt)
        return Segmentation(torch.stack(masks), torch.stack(zs), torch.stack(kl_z),
                            torch.stack(kl_b) if kl_b else torch.zeros(0, B, device=dev),
                            torch.stack(bounds) if bounds else empty)

    def config_dict(self) -> dict:
        return {"compile": self.cfg.to_dict(), "layer": self.layer}


def compile_loss(model: GridTransformer, net: CompILE, episodes: dict[str, torch.Tensor], cfg: CompILEConfig,
                 sample: bool = True, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Segmentation]:
    """CompILE's ELBO on a batch (means per valid step): (loss, detached metrics, segmentation)."""
    ep = trim(episodes)
    obs, actions = training_tensors(ep, model.world)
    mask = actions >= 0  # (B, T)
    with torch.no_grad():
        e = lower(model, obs[:, :-1], net.layer)  # (B, T, d) the frozen base model's residual stream
    seg = net.segment(net.encode(obs[:, :-1]), mask.to(e.dtype), sample, generator)
    z_t = torch.einsum("mbt,mbz->btz", seg.masks, seg.z)  # (B, T, n_z) the code of each step's segment
    nll, _ = sequence_nll(upper_logits(model, apply_control(e, net.decode(z_t)), net.layer), actions)  # (B, T)
    n = mask.sum().clamp_min(1)
    nll_mean = nll.sum() / n
    kl_z, kl_b = seg.kl_z.sum() / n, seg.kl_b.sum() / n
    loss = nll_mean + cfg.alpha_z * kl_z + cfg.alpha_b * kl_b
    lengths = (seg.masks.sum(-1) > 0.5).sum(0).float().mean()  # segments holding at least half a step
    return loss, {"action_nll": nll_mean.detach(), "kl_z": kl_z.detach(), "kl_b": kl_b.detach(),
                  "segments": lengths.detach()}, seg


@torch.no_grad()
def evaluate(model: GridTransformer, net: CompILE, episodes: dict[str, torch.Tensor], cfg: CompILEConfig) -> dict[str, float]:
    """Deterministic pass (argmax boundaries, z = μ) on held-out episodes: NLL, KLs, segments per episode."""
    was = net.training
    net.eval()
    _, m, _ = compile_loss(model, net, episodes, cfg, sample=False)
    net.train(was)
    return {k: float(v) for k, v in m.items()}


def save_compile(path, net: CompILE, base_checkpoint: str | None, info: dict) -> Path:
    config = {**net.config_dict(), "variant": "compile", "base_checkpoint": base_checkpoint}
    return save_checkpoint(path, net.state_dict(), KIND, config, info)


def load_compile(path, device="cpu", base: str | Path | None = None) -> tuple[CompILE, GridTransformer, int, dict]:
    """(CompILE, its frozen base model, layer, meta); the base comes from ``base`` or the one recorded."""
    from irl_core.device import resolve_device
    from irl_core.pretrain import load_base_model
    dev = resolve_device(device)
    state, config, info = load_checkpoint(path, KIND)
    base = base or config.get("base_checkpoint")
    if not base:
        raise CheckpointError(f"{path}: no base model recorded; pass --base")
    model = load_base_model(base, dev)
    try:
        cfg, layer = CompILEConfig(**config["compile"]), int(config["layer"])
        net = CompILE(model, cfg, layer)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: invalid CompILE config ({type(e).__name__}: {e})") from None
    load_state_into(net, state, f"{Path(path).with_suffix('')}.safetensors")
    return net.to(dev).eval(), freeze(model), layer, info


def train(base: GridTransformer, cfg: CompILEConfig, run: Run, seed: int = 0, progress: bool = True,
          base_checkpoint: str | None = None) -> tuple[CompILE, dict]:
    """Train (or resume from ``run``) CompILE on fresh D* with the base model frozen."""
    dev = next(base.parameters()).device
    model = freeze(base)
    layer = default_layer(model, cfg.layer)
    torch.manual_seed(seed)
    net = CompILE(model, cfg, layer).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    env = BatchedGridPinpad(cfg.batch_size, cfg.tasks, dev, seed=seed, world=model.world)
    noise = torch.Generator(device=dev)
    noise.manual_seed(seed + 1)
    eval_set = heldout_episodes(cfg.eval_episodes, seed, model.world, dev)
    gens = {"env": env.generator, "noise": noise}
    full_cfg = {"stage": "compile", "seed": seed, "base_checkpoint": base_checkpoint, **cfg.to_dict(), "layer": layer}
    last = run.checkpoint_dir / "last"
    step = start_or_resume(run, "compile-state", full_cfg, {"net": net}, opt, gens, dev)
    t0, s0 = time.time(), step
    bar = tqdm(total=cfg.steps, initial=step, desc="compile", unit="step", disable=not progress)
    with run.recording(lambda: step), bar:
        while step < cfg.steps:
            with torch.no_grad():
                episodes = expert_episodes(env, 0.0)
            loss, m, _ = compile_loss(model, net, episodes, cfg, True, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step % cfg.eval_every == 0 or step == cfg.steps:
                row = {"losses/loss": loss.item(), **{f"losses/{k}": float(m[k]) for k in ("action_nll", "kl_z", "kl_b")},
                       "charts/segments": float(m["segments"]), "charts/SPS": (step - s0) / max(1e-9, time.time() - t0)}
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    row.update({f"eval/{k}": v for k, v in evaluate(model, net, eval_set, cfg).items()})
                run.log(step, **row)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(last, training_state({"net": net}, opt, gens), "compile-state", full_cfg, {"step": step})
                run.set_status("running", step=step)
        result = {"seed": seed, "steps": cfg.steps, "layer": layer, **evaluate(model, net, eval_set, cfg)}
        save_compile(run.checkpoint_dir / "compile", net, base_checkpoint, {"seed": seed, "result": result})
        atomic_write_json(run.path / "result.json", result)
    run.set_status("done", step=step)
    return net.eval(), result


class CompILESwitcher(nn.Module):
    """CompILE behind the interface that :class:`irl_core.rl.internal.InternalEnv` drives.

    ``decode`` is CompILE's hypernetwork; the switching rule asks for a new code every ``every`` primitive
    steps (see the module docstring). The state's ``h`` counts the steps taken so far; ``g`` is unused.
    """

    def __init__(self, net: CompILE, every: int | None = None):
        super().__init__()
        self.net = net
        self.every = every or max(1, round(net.cfg.prior_rate))
        self.cfg = net.cfg  # InternalLearner reads cfg.n_z

    def initial_state(self, batch: int) -> SwitchState:
        w = self.net.decoder.hidden.weight
        zeros = lambda n: torch.zeros(batch, n, device=w.device, dtype=w.dtype)  # noqa: E731
        return SwitchState(zeros(1), zeros(1), zeros(self.net.n_z))

    def switch_step(self, e_t: torch.Tensor, state: SwitchState) -> tuple[torch.Tensor, torch.Tensor]:
        due = torch.remainder(state.h[:, 0].round(), self.every) == 0
        return torch.where(due, 1e4, -1e4).to(e_t.dtype), state.g

    def history_step(self, e_t: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        return h_prev + 1

    def decode(self, z: torch.Tensor) -> Control:
        return self.net.decode(z)


