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

PPO itself, shared with every other method, is :mod:`irl_core.rl.ppo`; which method trains what is
:mod:`irl_core.rl.methods`.

Choices where the paper is silent (README "Choices"):
* π(z | ·) = N(μ(s_k), diag σ²) with a state-independent learned log σ initialised at 0 and μ's head
  initialised at zero, so that the untrained policy samples exactly the prior N(0, I) that the paper
  assumes is a meaningful sampling distribution for z.
* The policy reads LayerNorm(e) (no affine), like the metacontroller.
* The first decision is made at t = 0 whatever β_1 is (Algorithm 2: "the first z is sampled at episode
  start"); β_1 is still computed so that the switching unit's state advances as in training.
* Raw actions are always sampled from the upper blocks (Algorithm 1); "greedy" evaluation takes the
  policy's mean code.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from irl_core.checkpoints import CheckpointError, load_checkpoint, load_state_into, save_checkpoint
from irl_core.controllers import apply_control, lower, upper_logits
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.metacontroller import MetaController, SwitchState
from irl_core.models.hawk import HawkBlock, HawkState
from irl_core.models.transformer import GridTransformer
from irl_core.rl.ppo import InternalRLConfig, Rollout, RolloutNoise, ppo_objective, sample_categorical

POLICY_KIND = "internal-rl-policy"


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


# --- the learner of internal RL (the training loop is irl_core.rl.ppo.train) --------------------------------
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
