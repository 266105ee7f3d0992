"""Internal RL (docs/paper.md §6, Algorithms 1–3): RL in the space of the metacontroller's codes z.

**The internal environment** (:class:`InternalEnv`) is the paper's Algorithm 1, batched over B episodes
and unrolled one primitive step at a time. Everything in it is frozen: the base model (lower blocks on
each new observation with their KV cache, the controller ê = e + U(z) e at the controlled layer, the upper
blocks with their cache, which give the raw action, sampled and stepped in the batched gridworld), the
switching unit (with its recurrent state and the history GRU's) and the decoder f_hyp. At every step the
switching unit reads the new residual e_t and gives β_t; an episode asks its policy for a new code only
when β_t > 0.5 (β binarised by H(β − 0.5)), or at its first step (Algorithm 2); otherwise the previous code
is kept, z_t = z_{t−1}. Episodes in a batch end at different times: a finished episode stays frozen in the
batched env, asks for nothing, and its rows are ignored. The reward between two decisions is accumulated;
on gridworld-pinpad it is the terminal success, so the episode's return is its success.

**The abstract-action policy** (:class:`AbstractActionPolicy`) is a causal 1-layer SSM (a Hawk block of
width 256, Tables A13/A14) over the residual activations e seen at the decision times only; its state
advances only at decisions. Its output is a Gaussian over z ∈ R^8.

**Critic-free PPO** (C.5.2, Eq. 10): the advantage of an episode is its return normalised over the whole
batch, A = (R − mean R) / (std R + δ), δ = 1e-3; every decision of an episode gets its episode's A; the
loss is −E_τ[Σ_k min(ρ_k A, clip(ρ_k, 1 − ε, 1 + ε) A)] with ρ_k = π(z_k | e_{≤k}) / π_old(z_k | e_{≤k}).

Methods (Fig. 8) share the RL algorithm, the budget and this module's training loop:
``internal-rl`` (the frozen metacontroller), ``beta1`` (a metacontroller trained with β ≡ 1: a decision at
every step), ``cotrained`` (a metacontroller co-trained with its own base model), ``compile`` (codes and their decoder
from CompILE, :mod:`irl_core.baselines.compile`, a decision every 10 steps) and ``raw-action`` (the base
model itself finetuned on raw actions, :mod:`irl_core.baselines.raw_action`).

Choices where the paper is silent (README "Choices"):
* π(z | ·) = N(μ(s_k), diag σ²) with a state-independent learned log σ initialised at 0 and μ's head
  initialised at zero, so that the untrained policy samples exactly the prior N(0, I) that the paper
  assumes is a meaningful sampling distribution for z.
* The policy reads LayerNorm(e) (no affine), like the metacontroller.
* PPO clip ε = 0.2, 2 epochs over each batch, no minibatches, no discount (returns are terminal), no
  KL-to-reference term, no entropy bonus (Table A13: entropy reg 0).
* The first decision is made at t = 0 whatever β_1 is (Algorithm 2: "the first z is sampled at episode
  start"); β_1 is still computed so that the switching unit's state advances as in training.
* Raw actions are always sampled from the upper blocks (Algorithm 1); "greedy" evaluation takes the
  policy's mean code.
* "Train steps" vs Fig. 8's episodes is ambiguous (docs/paper.md §6); our budget is counted in episodes.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from irl_core.checkpoints import (CheckpointError, atomic_write_json, load_checkpoint, load_state_into,
                                  resume_training, save_checkpoint, training_state)
from irl_core.config import preset
from irl_core.controllers import apply_control, lower, upper_logits
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.metacontroller import MetaController, SwitchState
from irl_core.models.hawk import HawkBlock, HawkState
from irl_core.models.transformer import GridTransformer
from irl_core.paths import checkpoints_root
from irl_core.runs import Run

POLICY_KIND = "internal-rl-policy"
METHODS = ("internal-rl", "beta1", "cotrained", "compile", "raw-action")
METACONTROLLER_FOR = {"internal-rl": "metacontroller", "beta1": "metacontroller_beta1",
                      "cotrained": "metacontroller_cotrained", "compile": "compile"}
VARIANT_FOR = {"internal-rl": "frozen", "beta1": "beta1", "cotrained": "cotrained", "compile": "compile"}
DEFAULT_SET = "grid5"  # the checkpoint set whose checkpoints a method uses unless told otherwise
EVAL_SEED = 9_999_991  # evaluation layouts: the same for every method and seed, disjoint from training's


@dataclass
class InternalRLConfig:
    """One RL run (Table A13 for the ``paper`` preset)."""

    method: str = "internal-rl"   # one of METHODS
    task: str = "heldout"         # the post-training task ('heldout', 'pretrain' or a task string)
    episodes: int = 1_000_000     # training budget in episodes (Fig. 8's x-axis)
    batch_size: int = 1024        # episodes per update (Table A13)
    lr: float = 3e-5              # AdamW, constant (Table A13; the paper scans 3e-6 … 3e-4)
    weight_decay: float = 0.0
    policy_width: int = 256       # Hawk block width (Table A13)
    init_log_std: float = 0.0     # log σ of π(z|·) at the start (0: the prior N(0, I))
    clip: float = 0.2             # PPO ε (not in the paper)
    epochs: int = 2               # PPO epochs over each batch (not in the paper)
    adv_delta: float = 1e-3       # δ of the batch advantage normalisation
    beta_threshold: float = 0.5   # decisions when β crosses it
    grad_clip: float = 1.0        # not in the paper
    log_every: int = 1            # updates between metric rows
    eval_every: int = 50          # updates between held-out evaluations (and at 0 and the end)
    eval_episodes: int = 1024
    checkpoint_every: int = 25    # updates between resumable checkpoints

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        for name in ("episodes", "batch_size", "epochs", "eval_every", "eval_episodes", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.clip < 1:
            raise ValueError(f"clip must lie in (0, 1), got {self.clip}")

    @property
    def updates(self) -> int:
        return math.ceil(self.episodes / self.batch_size)

    def to_dict(self) -> dict:
        return asdict(self)


RL_PRESETS: dict[str, InternalRLConfig] = {
    "tiny": InternalRLConfig(episodes=24, batch_size=8, lr=1e-3, policy_width=16, eval_every=1, eval_episodes=8,
                             checkpoint_every=1),
    "cpu": InternalRLConfig(episodes=100_000, batch_size=512, lr=1e-4, eval_every=20, eval_episodes=512,
                            checkpoint_every=10),
    "paper": InternalRLConfig(),
}


def rl_preset(name: str, **overrides) -> InternalRLConfig:
    return preset(RL_PRESETS, name, **overrides)


# --- PPO pieces shared by every method ------------------------------------------------------------------
def normalised_advantages(returns: torch.Tensor, delta: float = 1e-3) -> torch.Tensor:
    """A_τ = (R(τ) − mean_B R) / (std_B R + δ) over the whole batch (B,)."""
    r = returns.float()
    return (r - r.mean()) / (r.std(unbiased=False) + delta)


def ppo_objective(logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                  clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate (Eq. 10) for per-decision log-probs (B, K) with episode advantages (B,).

    Returns the loss −mean_τ Σ_k min(ρ A, clip(ρ) A) and detached metrics (ratio statistics, approx. KL,
    clip fraction) over the valid decisions ``mask`` (B, K).
    """
    mask = mask.float()
    log_ratio = (logp - logp_old) * mask
    ratio = log_ratio.exp()
    a = adv.unsqueeze(1)
    surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a) * mask
    loss = -surrogate.sum(1).mean()
    n = mask.sum().clamp_min(1)
    with torch.no_grad():
        metrics = {"ratio_mean": (ratio * mask).sum() / n,
                   "ratio_max_dev": ((ratio - 1).abs() * mask).max(),
                   "approx_kl": (((ratio - 1) - log_ratio) * mask).sum() / n,
                   "clipfrac": (((ratio - 1).abs() > clip).float() * mask).sum() / n}
    return loss, metrics


def sample_categorical(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling with given uniforms u (B,): the same noise gives the same action in any batch."""
    cdf = torch.softmax(logits.float(), -1).cumsum(-1)
    return (cdf < u.unsqueeze(-1)).sum(-1).clamp_max(logits.shape[-1] - 1)


class RolloutNoise(NamedTuple):
    """All the randomness of one batch of episodes, drawn up front and indexed by (episode, step/decision)."""

    action_u: torch.Tensor  # (B, T) uniforms for the raw actions
    z_eps: torch.Tensor     # (B, T, n_z) standard normals for the k-th decision's code

    @classmethod
    def draw(cls, batch: int, t_max: int, n_z: int, generator: torch.Generator, device) -> "RolloutNoise":
        u = torch.rand(batch, t_max, generator=generator, device=device)
        eps = torch.randn(batch, t_max, n_z, generator=generator, device=device)
        return cls(u, eps)


class Rollout(NamedTuple):
    """One batch of episodes: what the RL update and the curves need."""

    success: torch.Tensor    # (B,) bool
    returns: torch.Tensor    # (B,) float: the sum of rewards
    length: torch.Tensor     # (B,) primitive steps
    decisions: torch.Tensor  # (B,) long: decisions (codes, or raw actions for raw-action RL)
    data: dict               # the method's update inputs (e.g. e, z, log π_old, mask)
    episodes: dict           # layout (B, 49), start (B,), task (B, 12): enough to replay an episode


# --- the abstract-action policy ---------------------------------------------------------------------------
class AbstractActionPolicy(nn.Module):
    """π(z_k | e_{t_1}, …, e_{t_k}): LayerNorm(e) → linear → Hawk block → RMSNorm → μ; learned log σ."""

    def __init__(self, d_model: int, n_z: int = 8, width: int = 256, init_log_std: float = 0.0):
        super().__init__()
        self.d_model, self.n_z, self.width = d_model, n_z, width
        self.norm = nn.LayerNorm(d_model, elementwise_affine=False)
        self.inp = nn.Linear(d_model, width)
        self.block = HawkBlock(width)
        self.out_norm = nn.RMSNorm(width)
        self.mean = nn.Linear(width, n_z)
        nn.init.zeros_(self.mean.weight)
        nn.init.zeros_(self.mean.bias)
        self.log_std = nn.Parameter(torch.full((n_z,), float(init_log_std)))

    def initial_state(self, batch: int) -> HawkState:
        return self.block.initial_state(batch, self.mean.weight)

    def step(self, e: torch.Tensor, state: HawkState) -> tuple[torch.Tensor, HawkState]:
        """One decision: e (B, d) → (μ (B, n_z), new state)."""
        y, state = self.block.step(self.inp(self.norm(e)), state)
        return self.mean(self.out_norm(y)), state

    def forward(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The decisions of whole episodes: e (B, K, d), mask (B, K) → μ (B, K, n_z)."""
        return self.mean(self.out_norm(self.block(self.inp(self.norm(e)), mask)))

    def log_prob(self, z: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """log N(z; μ, σ²) summed over the code's dimensions: (…, n_z) → (…)."""
        log_std = self.log_std.expand_as(mu)
        return (-0.5 * ((z - mu) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def config_dict(self) -> dict:
        return {"d_model": self.d_model, "n_z": self.n_z, "width": self.width}


def _rows(state: HawkState, rows: torch.Tensor) -> HawkState:
    return HawkState(*(s[rows] for s in state))


def _put_rows(state: HawkState, rows: torch.Tensor, new: HawkState) -> HawkState:
    for s, n in zip(state, new):
        s[rows] = n
    return state


# --- the internal environment (Algorithm 1) ------------------------------------------------------------------
class InternalEnv:
    """B episodes of the frozen base model + frozen metacontroller parts, stepped one primitive step at a time.

    ``reset()`` is Algorithm 2 (new episodes, empty caches and states, lower blocks on o_1, f_switch once)
    and returns ``(e (B, d), need (B,))``: the residual at the controlled layer and which episodes ask for
    a new code (all of them at the start). ``step(z)`` takes a code for every episode (only the rows of
    ``need`` are read; the others keep theirs) and advances every live episode by one primitive step; it
    returns the new ``(e, need, reward, done)``. A decision loop over these two calls is Algorithm 1.
    """

    def __init__(self, model: GridTransformer, meta: MetaController, layer: int, batch: int, tasks="heldout",
                 device="cpu", seed: int = 0, threshold: float = 0.5):
        self.model, self.meta, self.layer, self.B, self.threshold = model, meta, layer, batch, threshold
        self.env = BatchedGridPinpad(batch, tasks, device, seed=seed, world=model.world)
        self.t_max = self.env.t_max

    @torch.no_grad()
    def reset(self, task_ids=None, layout=None, start=None) -> tuple[torch.Tensor, torch.Tensor]:
        obs = self.env.reset(task_ids, layout, start)
        self.start = self.env.state.agent.clone()
        self.rows = torch.arange(self.B, device=obs.device)  # live episodes, the rows of the KV cache
        self.cache = self.model.new_cache(self.B, self.t_max + 1)  # o_1 … o_{T+1}
        self.state = self.meta.initial_state(self.B)
        self.e = lower(self.model, obs.unsqueeze(1), self.layer, self.cache)[:, 0]  # (B, d)
        self._switch()
        self.need = torch.ones(self.B, dtype=torch.bool, device=self.e.device)  # the first code at t = 0
        return self.e, self.need

    def _switch(self) -> None:
        """β and the new switch state g of the live rows (finished episodes keep stale values, unused)."""
        r = self.rows
        logit, g = self.meta.switch_step(self.e[r], SwitchState(*(s[r] for s in self.state)))
        self._g = self.state.g.clone()
        self._g[r] = g
        self.beta = torch.zeros(self.B, device=logit.device, dtype=logit.dtype)
        self.beta[r] = torch.sigmoid(logit)  # (B,)

    @torch.no_grad()
    def step(self, z: torch.Tensor, action_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes z (B, n_z) (read where ``need``), uniforms (B,) for the raw actions → (e, need, reward, done).

        Only the rows in the KV cache run through the model: when a quarter of them have ended, the ended
        ones leave the cache (most held-out episodes end within a few steps, so this saves most of the
        compute; an ended row still in the cache is computed and ignored).
        """
        r = self.rows
        was_done = self.env.state.done.clone()
        z = torch.where(self.need.unsqueeze(1), z.to(self.state.z.dtype), self.state.z)
        e_live = self.e[r]
        e_hat = apply_control(e_live, self.meta.decode(z[r]))  # ê_t = e_t + U(z_t) e_t
        logits = upper_logits(self.model, e_hat.unsqueeze(1), self.layer, self.cache)[:, 0]  # (live, 4)
        actions = torch.zeros(self.B, dtype=torch.long, device=z.device)
        actions[r] = sample_categorical(logits, action_u[r])
        self.actions = torch.where(was_done, -1, actions)  # (B,) −1 for finished episodes
        h = self.state.h.clone()
        h[r] = self.meta.history_step(e_live, self.state.h[r])
        self.state = SwitchState(h, self._g, z)
        obs, reward, done, _ = self.env.step(actions)
        keep = ~done[r]
        if int(keep.sum()) <= 0.75 * len(r):  # drop ended episodes from the cache (copying it costs: not every step)
            idx = keep.nonzero().squeeze(1)
            self.cache.select(idx)
            self.rows = r = r[idx]
        self.need = torch.zeros_like(done)
        if len(r):
            self.e = self.e.clone()
            self.e[r] = lower(self.model, obs[r].unsqueeze(1), self.layer, self.cache)[:, 0]
            self._switch()  # β_{t+1} from (e_{t+1}, h_t, z_t, g_t)
            self.need[r] = (self.beta[r] > self.threshold) & ~done[r]
        return self.e, self.need, reward, done

    def episodes(self) -> dict:
        s = self.env.state
        return {"layout": s.layout.clone(), "start": self.start, "task": s.task.clone()}


@torch.no_grad()
def collect_internal(ienv: InternalEnv, policy: AbstractActionPolicy, generator: torch.Generator,
                     greedy: bool = False, record: bool = False, **reset_kwargs) -> Rollout:
    """Run one batch of episodes with ``policy`` choosing the codes; returns the :class:`Rollout`.

    ``data`` holds the decisions of each episode in order: ``e`` (B, K, d), ``z`` (B, K, n_z),
    ``logp`` (B, K) under the acting policy, ``mask`` (B, K) and ``time`` (B, K) the primitive step of each;
    with ``record`` also the raw ``actions`` (B, T) and the agent's cells ``pos`` (B, T+1) (−1 padded).
    """
    e, need = ienv.reset(**reset_kwargs)
    B, T, d, dev = ienv.B, ienv.t_max, e.shape[1], e.device
    noise = RolloutNoise.draw(B, T, policy.n_z, generator, dev)
    buf_e = torch.zeros(B, T, d, device=dev, dtype=e.dtype)
    buf_z = torch.zeros(B, T, policy.n_z, device=dev)
    buf_logp = torch.zeros(B, T, device=dev)
    buf_time = torch.full((B, T), -1, dtype=torch.long, device=dev)
    count = torch.zeros(B, dtype=torch.long, device=dev)
    returns = torch.zeros(B, device=dev)
    pstate = policy.initial_state(B)
    z = torch.zeros(B, policy.n_z, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    if record:
        actions = torch.full((B, T), -1, dtype=torch.long, device=dev)
        pos = torch.full((B, T + 1), -1, dtype=torch.long, device=dev)
        pos[:, 0] = ienv.env.state.agent
    for t in range(T):
        rows = need.nonzero().squeeze(1)
        if len(rows):
            mu, new_state = policy.step(e[rows], _rows(pstate, rows))
            _put_rows(pstate, rows, new_state)
            k = count[rows]
            z_rows = mu if greedy else mu + policy.log_std.exp() * noise.z_eps[rows, k]
            buf_e[rows, k], buf_z[rows, k], buf_time[rows, k] = e[rows], z_rows, t
            buf_logp[rows, k] = policy.log_prob(z_rows, mu)
            z[rows] = z_rows
            count[rows] += 1
        live = ~done
        e, need, reward, done = ienv.step(z, noise.action_u[:, t])
        returns += reward
        if record:
            actions[:, t] = ienv.actions
            pos[:, t + 1] = torch.where(live, ienv.env.state.agent, -1)
        if bool(done.all()):
            break
    K = max(1, int(count.max()))
    mask = torch.arange(K, device=dev).unsqueeze(0) < count.unsqueeze(1)
    s = ienv.env.state
    data = {"e": buf_e[:, :K], "z": buf_z[:, :K], "logp": buf_logp[:, :K], "mask": mask, "time": buf_time[:, :K]}
    if record:
        data.update(actions=actions, pos=pos)
    return Rollout(s.success.clone(), returns, s.t.clone(), count, data, ienv.episodes())


# --- learners: the same training loop drives every method ------------------------------------------------------
class InternalLearner:
    """The policy over codes z of one metacontroller (methods internal-rl, beta1, cotrained)."""

    def __init__(self, model: GridTransformer, meta: MetaController, layer: int, cfg: InternalRLConfig, device,
                 seed: int, policy: AbstractActionPolicy | None = None):
        self.model, self.meta, self.layer, self.cfg = model, meta, layer, cfg
        torch.manual_seed(seed)
        self.policy = policy or AbstractActionPolicy(model.cfg.d_model, meta.cfg.n_z, cfg.policy_width,
                                                     cfg.init_log_std).to(device)
        self.ienv = InternalEnv(model, meta, layer, cfg.batch_size, cfg.task, device, seed, cfg.beta_threshold)
        self.env_generator, self.device = self.ienv.env.generator, self.ienv.env.device

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"policy": self.policy}

    def collect(self, generator: torch.Generator, greedy: bool = False, ienv: InternalEnv | None = None) -> Rollout:
        return collect_internal(ienv or self.ienv, self.policy, generator, greedy)

    def loss(self, ro: Rollout, adv: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d = ro.data
        mu = self.policy(d["e"], d["mask"])
        return ppo_objective(self.policy.log_prob(d["z"], mu), d["logp"], adv, d["mask"].float(), self.cfg.clip)

    def evaluation_env(self, batch: int, seed: int) -> InternalEnv:
        return InternalEnv(self.model, self.meta, self.layer, batch, self.cfg.task, self.device, seed,
                           self.cfg.beta_threshold)


def evaluate(learner, episodes: int, seed: int = EVAL_SEED) -> dict[str, float]:
    """Held-out success of the current policy, greedy (mean code / most likely action) and sampled."""
    batch = min(episodes, learner.cfg.batch_size)
    out = {}
    for greedy in (True, False):
        env = learner.evaluation_env(batch, seed)
        g = torch.Generator(device=learner.device)
        g.manual_seed(seed)
        wins, lengths, decisions, n = 0.0, 0.0, 0.0, 0
        while n < episodes:
            ro = learner.collect(g, greedy, env)
            m = min(batch, episodes - n)
            wins += float(ro.success[:m].float().sum())
            lengths += float(ro.length[:m].float().sum())
            decisions += float(ro.decisions[:m].float().sum())
            n += m
        key = "greedy" if greedy else "sampled"
        out[f"eval/success_{key}"] = wins / n
        out[f"eval/decisions_{key}"] = decisions / n
        out[f"eval/length_{key}"] = lengths / n
    return out


# --- training -----------------------------------------------------------------------------------------------
def train(learner, cfg: InternalRLConfig, run: Run, seed: int = 0, progress: bool = True, extra_config: dict | None = None,
          stop_at: int | None = None) -> dict:
    """Critic-free PPO for ``cfg.episodes`` episodes (resumes from ``run``); returns the final evaluation.

    ``stop_at`` (updates) checkpoints and stops early (status ``cancelled``); running the same command
    again resumes from there and continues the same curve.
    """
    dev = learner.device
    params = [p for m in learner.modules.values() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    noise = torch.Generator(device=dev)
    noise.manual_seed(seed + 1)
    gens = {"env": learner.env_generator, "noise": noise}
    full_cfg = {"stage": "internal-rl", "seed": seed, **cfg.to_dict(), **(extra_config or {})}
    last = run.checkpoint_dir / "last"
    update = 0
    resumed = resume_training(last, "internal-rl-state", full_cfg, learner.modules, opt, gens)
    if resumed:
        update = int(resumed["update"])
        run.truncate_metrics(update * cfg.batch_size)
    run.write_config(full_cfg)
    run.set_status("running", device=str(dev), step=update * cfg.batch_size)
    bar = tqdm(total=cfg.updates, initial=update, desc=f"{cfg.method} seed {seed}", unit="update", disable=not progress)
    result = {}

    def checkpoint() -> None:
        save_checkpoint(last, training_state(learner.modules, opt, gens), "internal-rl-state", full_cfg,
                        {"update": update})

    with run.recording(lambda: update * cfg.batch_size), bar:
        if update == 0:
            result = evaluate(learner, cfg.eval_episodes)
            run.log(0, **{"charts/episodes": 0}, **result)
        while update < cfg.updates:
            if stop_at is not None and update >= stop_at:
                checkpoint()
                run.set_status("cancelled", step=update * cfg.batch_size, note="stopped early; run the same command to resume")
                return {"stopped_at": update}
            t0 = time.time()
            ro = learner.collect(noise)
            t_collect = time.time() - t0
            adv = normalised_advantages(ro.returns, cfg.adv_delta)
            for epoch in range(cfg.epochs):
                loss, m = learner.loss(ro, adv)
                if epoch == 0:
                    first = {k: float(v) for k, v in m.items()}
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
            update += 1
            bar.update(1)
            episodes = update * cfg.batch_size
            elapsed = time.time() - t0
            row = {}
            if update % cfg.log_every == 0 or update == cfg.updates:
                row = {"charts/episodes": episodes, "charts/success_rate": float(ro.success.float().mean()),
                       "charts/episodic_return": float(ro.returns.mean()),
                       "charts/episode_length": float(ro.length.float().mean()),
                       "charts/decisions_per_episode": float(ro.decisions.float().mean()),
                       "charts/SPS": cfg.batch_size / elapsed, "charts/collect_seconds": t_collect,
                       "charts/decisions_per_second": float(ro.decisions.sum()) / max(t_collect, 1e-9),
                       "losses/policy_loss": loss.item(), "losses/approx_kl": float(m["approx_kl"]),
                       "losses/clipfrac": float(m["clipfrac"]), "losses/first_epoch_ratio_max_dev": first["ratio_max_dev"]}
            if update % cfg.eval_every == 0 or update == cfg.updates:
                result = evaluate(learner, cfg.eval_episodes)
                row.update({"charts/episodes": episodes, **result})
            if row:
                run.log(episodes, **row)
                bar.set_postfix(success=f"{ro.success.float().mean():.3f}")
            if update % cfg.checkpoint_every == 0 or update == cfg.updates:
                checkpoint()
    result = {**result, "episodes": cfg.updates * cfg.batch_size, "method": cfg.method, "seed": seed}
    atomic_write_json(run.path / "result.json", result)
    run.set_status("done", step=update * cfg.batch_size, result=result)
    return result


# --- loading what a method needs -------------------------------------------------------------------------------
def method_set(set_dir=None) -> Path:
    """The checkpoint set whose checkpoints a method uses: ``set_dir``, by default the shipped ``grid5``."""
    return Path(set_dir or checkpoints_root() / DEFAULT_SET)


def default_metacontroller(method: str, set_dir=None) -> Path:
    """The checkpoint that ``method`` uses in checkpoint set ``set_dir`` (default: the shipped ``grid5``)."""
    return method_set(set_dir) / METACONTROLLER_FOR[method]


def check_variant(method: str, info_variant: str, path) -> None:
    want = VARIANT_FOR[method]
    if info_variant != want:
        how = "compile" if want == "compile" else f"discover --variant {want}"
        raise CheckpointError(f"{path}: a {info_variant!r} checkpoint; method {method!r} needs a {want!r} one "
                              f"(python -m irl_core {how} ...)")


def load_code_module(path, device="cpu", base=None) -> tuple[nn.Module, GridTransformer, int]:
    """(frozen module that switches and decodes codes, base model, layer) of a metacontroller or CompILE checkpoint."""
    from irl_core.checkpoints import read_json
    from irl_core.controllers import freeze
    desc = read_json(Path(str(path)).with_suffix(".json"))
    if isinstance(desc, dict) and desc.get("kind") == "compile":
        from irl_core.baselines.compile import CompILESwitcher, load_compile
        net, model, layer, _ = load_compile(path, device, base)
        return freeze(CompILESwitcher(net)), model, layer
    from irl_core.discovery import load_metacontroller
    meta, model, layer, _ = load_metacontroller(path, device, base)
    return freeze(meta), model, layer


def checkpoint_variant(path) -> str:
    """The variant a metacontroller or CompILE checkpoint records (frozen, beta1, cotrained, compile)."""
    from irl_core.checkpoints import read_json
    return read_json(Path(str(path)).with_suffix(".json"))["config"]["variant"]


def save_policy(path, learner: InternalLearner, cfg: InternalRLConfig, info: dict) -> Path:
    config = {"policy": learner.policy.config_dict(), "method": cfg.method}
    return save_checkpoint(path, learner.policy.state_dict(), POLICY_KIND, config, info)


def load_policy(path, device="cpu") -> tuple[AbstractActionPolicy, dict, dict]:
    """→ (policy, config, meta); meta records the metacontroller and base model it acts through."""
    state, config, info = load_checkpoint(path, POLICY_KIND)
    try:
        policy = AbstractActionPolicy(**config["policy"])
    except (TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: invalid policy config ({type(e).__name__}: {e})") from None
    load_state_into(policy, state, f"{Path(path).with_suffix('')}.safetensors")
    return policy.to(device).eval(), config, info


def policy_rollouts(path, episodes: int, seed: int = 0, device="cpu", greedy: bool = True, task: str | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Episodes of a trained internal-RL policy (for ``rollouts --policy internal-rl``): the tensors of
    :func:`irl_core.data.run_episodes`-style exports (layout, pos, task, actions, success, length)."""
    policy, config, info = load_policy(path, device)
    meta, model, layer = load_code_module(info["metacontroller"], device, info.get("base"))
    cfg = rl_preset("paper", method=config["method"], task=task or info.get("task", "heldout"))
    batch = min(episodes, 1024)
    ienv = InternalEnv(model, meta, layer, batch, cfg.task, device, seed, cfg.beta_threshold)
    g = torch.Generator(device=ienv.env.device)
    g.manual_seed(seed)
    parts = []
    while sum(len(p["success"]) for p in parts) < episodes:
        ro = collect_internal(ienv, policy, g, greedy, record=True)
        parts.append({k: v.cpu() for k, v in {**ro.episodes, "pos": ro.data["pos"], "actions": ro.data["actions"],
                                             "success": ro.success, "length": ro.length, "decisions": ro.decisions}.items()})
    out = {k: torch.cat([p[k] for p in parts])[:episodes] for k in parts[0]}
    return out, {"success": float(out["success"].float().mean()), "world": model.world.name}


def curve_summary(rows: list[list[dict]], key: str = "charts/success_rate") -> dict[str, list[float]]:
    """Median and 25–75% band over runs of ``key`` against ``charts/episodes`` (rows per run)."""
    grids = [{int(r["charts/episodes"]): float(r[key]) for r in run if key in r and "charts/episodes" in r} for run in rows]
    common = sorted(set.intersection(*(set(g) for g in grids))) if grids else []
    values = np.array([[g[x] for x in common] for g in grids]) if common else np.zeros((0, 0))
    if not common:
        return {"episodes": [], "median": [], "q25": [], "q75": [], "runs": len(grids)}
    return {"episodes": common, "median": np.median(values, 0).tolist(), "q25": np.quantile(values, 0.25, 0).tolist(),
            "q75": np.quantile(values, 0.75, 0).tolist(), "runs": len(grids)}


def run_dirs_under(root) -> list[Path]:
    """Every run directory (a folder with a config.json) at any depth below ``root``."""
    return sorted(p.parent for p in Path(root).glob("**/config.json"))


def collect_curves(run_dirs, command: str = "") -> dict:
    """Fig. 8 from the finished internal-RL runs among ``run_dirs``: per method, median and 25–75% band over
    its runs of the training success rate and of the held-out evaluation (greedy and sampled), vs episodes."""
    from irl_core.runs import iter_metrics
    by_method: dict[str, list[tuple[dict, list[dict]]]] = {}
    for path in run_dirs:
        run = Run(path)
        try:
            status, cfg = run.status() or {}, run.read_config()
        except CheckpointError:  # a run directory without a readable config is not a finished run
            continue
        if cfg.get("stage") != "internal-rl" or status.get("status") != "done":
            continue
        by_method.setdefault(cfg["method"], []).append((cfg, list(iter_metrics(run.path / "metrics.jsonl"))))
    methods = {}
    for method, runs in sorted(by_method.items()):
        rows = [r for _, r in runs]
        methods[method] = {"runs": len(runs), "seeds": [c["seed"] for c, _ in runs],
                           "episodes": max(c["episodes"] for c, _ in runs),
                           "train": curve_summary(rows, "charts/success_rate"),
                           "eval_greedy": curve_summary(rows, "eval/success_greedy"),
                           "eval_sampled": curve_summary(rows, "eval/success_sampled")}
    return {"methods": methods, "meta": {"command": command}}
