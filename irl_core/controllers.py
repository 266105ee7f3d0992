"""Residual-stream controllers and the ground-truth subgoal controllers (docs/paper.md §4, Eq. 1, Table A7).

A controller rewrites the residual stream between two blocks of the frozen base model,

    ê_{t,l} = e_{t,l} + U_t e_{t,l},                                                        (Eq. 1, 11)

with U_t produced by a hypernetwork ``f_hyp`` from a code z_t. On the grid U is low-rank (rank 16),
U = A Bᵀ with A, B ∈ R^{n_e × 16} (the factorisation is our choice: docs/paper.md §8; it is LoRA's), and
ê = e + A (Bᵀ e) is computed with two explicit matrix–vector products (never an einsum that could
silently become a diagonal gain, docs/paper.md §9). ``rank=0`` gives a full n_e × n_e matrix (the ant's
"Linear" controller).

Ground-truth controllers are the metacontroller with β ≡ 1 and z_t = onehot(g_t, K=4), g_t the subgoal
of the colour sought (C.3; its pair in ``grid7``, the colour itself in ``grid5``): one hypernetwork decodes
the K one-hot codes into K matrices U^{(g)}. They are trained on fresh D* episodes of the base model's world
(ε = 0 expert, pretraining tasks) with the base model frozen, and evaluated on the world's held-out task
(``grid7``: 0-1-2-3-4-5-6-7-0-1-2-3, ``grid5``: 0-1-2-3) by activating U^{(g)} in the task's order, g = the
subgoal of the colour sought read from the environment's ground-truth progress, while the split model runs step by step with its KV
cache (lower blocks → controller → upper blocks → sample → env.step).

Choices where the paper is silent:
* Hypernetwork: Linear(n_z → 32) → ReLU → Linear(32 → 2·n_e·r). LoRA-style initialisation: the output
  rows that make A start random (its bias ~ N(0, 1/n_e), so A's columns have norm ≈ 1) and those that make
  B start at zero, so U = 0 (the controller is the identity) at the start of training but gradients flow.
* Actions of the controlled model are sampled (not argmax) during evaluation, as the paper's agent does.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from irl_core.config import preset
from irl_core.checkpoints import (CheckpointError, load_checkpoint, load_state_into,
                                  save_checkpoint, start_or_resume, training_state)
from irl_core.data import export_arrays, expert_episodes, replay, run_episodes, training_tensors, trim
from irl_core.device import resolve_device
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.experts.grid_expert import TIES
from irl_core.envs.tasks import task_set
from irl_core.envs.worlds import check_same_world
from irl_core.models.transformer import GridTransformer, KVCache
from irl_core.runs import Run

GT_KIND = "gt-controllers"
EVAL_SEED_OFFSET = 7_777_777  # evaluation episodes never share a seed stream with training's


# --- the controller ---------------------------------------------------------------------------------
class Control(NamedTuple):
    """U as factors: ``a`` (…, d, r) and ``b`` (…, d, r) with U = a bᵀ, or ``a`` = U (…, d, d) and ``b`` None."""

    a: torch.Tensor
    b: torch.Tensor | None

    def matrix(self) -> torch.Tensor:
        """The full (…, d, d) matrix U (for tests and plots; the forward pass never builds it)."""
        return self.a if self.b is None else self.a @ self.b.transpose(-1, -2)


def apply_control(e: torch.Tensor, control: Control) -> torch.Tensor:
    """ê = e + U e for residuals ``e`` (…, d) and a control whose leading dims broadcast with e's."""
    v = e.unsqueeze(-1)  # (…, d, 1)
    if control.b is None:
        ue = control.a @ v  # (…, d, 1)
    else:
        ue = control.a @ (control.b.transpose(-1, -2) @ v)  # (…, d, r) @ (…, r, 1) → (…, d, 1)
    return e + ue.squeeze(-1).to(e.dtype)


class Hypernetwork(nn.Module):
    """f_hyp: a code z (…, n_z) → the controller U (as :class:`Control`), one hidden ReLU layer."""

    def __init__(self, n_z: int, d_model: int, rank: int = 16, hidden: int = 32, b_init_std: float = 0.0):
        super().__init__()
        if rank < 0 or rank > d_model:
            raise ValueError(f"rank must lie in [0, d_model={d_model}] (0 = full rank), got {rank}")
        self.n_z, self.d_model, self.rank = n_z, d_model, rank
        self.hidden = nn.Linear(n_z, hidden)
        n_out = 2 * d_model * rank if rank else d_model * d_model
        self.out = nn.Linear(hidden, n_out)
        with torch.no_grad():
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
            if rank:  # A's half: random, B's half: zero → U = A·0ᵀ = 0 but ∂L/∂B ≠ 0
                a_rows = d_model * rank
                nn.init.normal_(self.out.weight[:a_rows], std=1.0 / (hidden * d_model) ** 0.5)
                nn.init.normal_(self.out.bias[:a_rows], std=1.0 / d_model ** 0.5)
            if b_init_std > 0:  # optional: U depends on z from the first step (B's half / full U random)
                nn.init.normal_(self.out.weight[d_model * rank:], std=b_init_std / hidden ** 0.5)

    def forward(self, z: torch.Tensor) -> Control:
        lead = z.shape[:-1]
        w = self.out(F.relu(self.hidden(z)))  # (…, n_out)
        d, r = self.d_model, self.rank
        if r == 0:
            return Control(w.view(*lead, d, d), None)
        a, b = w.view(*lead, 2, d, r).unbind(-3)  # 2 × (…, d, r)
        return Control(a, b)


# --- running the split model ------------------------------------------------------------------------
def lower(model: GridTransformer, obs: torch.Tensor, layer: int, cache: KVCache | None = None) -> torch.Tensor:
    """Observations (B, T, 637) → residual stream e at ``layer`` (B, T, d)."""
    return model.run_blocks(model.embed_obs(obs), 0, layer, cache)


def upper_logits(model: GridTransformer, e_hat: torch.Tensor, layer: int, cache: KVCache | None = None) -> torch.Tensor:
    """Controlled residual ê at ``layer`` (B, T, d) → action logits (B, T, 4) of the upper blocks."""
    return model.action_logits(model.run_blocks(e_hat, layer, None, cache))


def controlled_step(model: GridTransformer, obs_t: torch.Tensor, cache: KVCache, layer: int,
                    control: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One KV-cached step of the split model: obs (B, 637) → e → ``control(e)`` → action logits (B, 4)."""
    e = lower(model, obs_t.unsqueeze(1), layer, cache)[:, 0]  # (B, d)
    return upper_logits(model, control(e).unsqueeze(1), layer, cache)[:, 0]


def sequence_nll(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step action NLL (B, T) (zero at padding, ``actions`` = −1) and the validity mask (B, T)."""
    mask = actions >= 0
    nll = F.cross_entropy(logits.float().flatten(0, 1), actions.clamp_min(0).flatten(), reduction="none")
    return nll.view(actions.shape) * mask, mask


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def default_layer(model: GridTransformer, layer: int | None) -> int:
    L = model.n_layers
    layer = L // 2 if layer is None else layer
    if not 0 <= layer <= L:
        raise ValueError(f"controlled layer must lie in [0, {L}] for a {L}-layer model, got {layer}")
    return layer


def load_base_for_layer(path, device, layer: int | None) -> GridTransformer:
    """The base model at ``path`` for a command that controls ``layer``; an invalid layer is a one-line user error."""
    from irl_core.errors import UserError
    from irl_core.pretrain import load_base_model
    model = load_base_model(path, device)
    try:
        default_layer(model, layer)
    except ValueError as e:
        raise UserError(str(e)) from None
    return model


# --- ground-truth subgoal controllers ---------------------------------------------------------------
@dataclass
class GTControllerConfig:
    """Training of ground-truth subgoal controllers (Table A7 for the ``paper`` preset)."""

    layer: int | None = None      # controlled layer (0 = embedding, l = after block l−1); None = L/2
    rank: int = 16                # rank of U = A Bᵀ (0 = full n_e × n_e)
    hidden: int = 32              # hypernetwork hidden width
    n_subgoals: int | None = None  # K, one-hot code size (None: the world's, 4 pairs in grid7, 4 colours in grid5)
    tasks: str = "pretrain"       # training tasks of D* (fresh ε = 0 expert episodes every step)
    dstar_ties: str = "random"    # D* expert's tie-breaking: "random" (the paper's) or "first" (deterministic)
    steps: int = 3200             # AdamW steps
    batch_size: int = 512         # episodes per step
    lr: float = 1e-3
    weight_decay: float = 0.03
    grad_clip: float = 1.0        # not in the paper; a no-op at these losses, guards against spikes
    log_every: int = 50
    checkpoint_every: int = 400
    eval_episodes: int = 1000     # held-out-task episodes for the success rate

    def __post_init__(self):
        if self.dstar_ties not in TIES:
            raise ValueError(f"dstar_ties must be one of {list(TIES)}, got {self.dstar_ties!r}")

    def to_dict(self) -> dict:
        return asdict(self)


GT_PRESETS: dict[str, GTControllerConfig] = {
    "tiny": GTControllerConfig(steps=8, batch_size=16, log_every=2, checkpoint_every=4, eval_episodes=16),
    # cpu: 4× fewer steps and batch than Table A7, so a 3× larger lr (measured on a partly trained cpu base: 60 steps
    # of batch 32 reached action NLL 0.478 at lr 3e-3 vs 0.515 after 120 steps at 1e-3)
    "cpu": GTControllerConfig(steps=800, batch_size=128, lr=3e-3, log_every=25, checkpoint_every=100, eval_episodes=1000),
    "paper": GTControllerConfig(),
}


def gt_preset(name: str, **overrides) -> GTControllerConfig:
    return preset(GT_PRESETS, name, **overrides)


class GTControllers(nn.Module):
    """One controller per abstract action: U^{(g)} = f_hyp(onehot(g, K))."""

    def __init__(self, d_model: int, layer: int, rank: int = 16, hidden: int = 32, n_subgoals: int = 4,
                 world: str = "grid7"):
        super().__init__()
        self.layer, self.n_subgoals, self.world = layer, n_subgoals, world
        self.hyper = Hypernetwork(n_subgoals, d_model, rank, hidden)

    def control(self, subgoal: torch.Tensor) -> Control:
        """Subgoals (…) int (−1 = padding, treated as 0 and masked by the caller) → U for each entry."""
        z = F.one_hot(subgoal.long().clamp_min(0), self.n_subgoals).to(self.hyper.hidden.weight.dtype)
        return self.hyper(z)

    def forward(self, e: torch.Tensor, subgoal: torch.Tensor) -> torch.Tensor:
        """ê = e + U^{(g)} e for residuals (…, d) and subgoals (…)."""
        return apply_control(e, self.control(subgoal))

    def config_dict(self) -> dict:
        return {"d_model": self.hyper.d_model, "layer": self.layer, "rank": self.hyper.rank,
                "hidden": self.hyper.hidden.out_features, "n_subgoals": self.n_subgoals, "world": self.world}


def gt_loss(model: GridTransformer, ctrl: GTControllers, episodes: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean action NLL over valid steps of the frozen model under the ground-truth controllers."""
    ep = trim(episodes)
    obs, actions = training_tensors(ep, model.world)
    with torch.no_grad():
        e = lower(model, obs[:, :-1], ctrl.layer)  # (B, T, d)
    logits = upper_logits(model, ctrl(e, ep["subgoal"]), ctrl.layer)  # (B, T, 4)
    nll, mask = sequence_nll(logits, actions)
    return nll.sum() / mask.sum().clamp_min(1)


def train_gt_controllers(model: GridTransformer, cfg: GTControllerConfig, run: Run, seed: int = 0,
                         progress: bool = True) -> GTControllers:
    """Train (or resume from ``run``) ground-truth controllers on fresh D* with ``model`` frozen."""
    dev = next(model.parameters()).device
    freeze(model)
    layer = default_layer(model, cfg.layer)
    torch.manual_seed(seed)
    world = model.world
    ctrl = GTControllers(model.cfg.d_model, layer, cfg.rank, cfg.hidden, cfg.n_subgoals or world.n_subgoals,
                         world.name).to(dev)
    opt = torch.optim.AdamW(ctrl.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    env = BatchedGridPinpad(cfg.batch_size, cfg.tasks, dev, seed=seed, world=world)
    last = run.checkpoint_dir / "last"
    full_cfg = {"stage": "gt-controllers", "seed": seed, **cfg.to_dict(), "layer": layer}
    step = start_or_resume(run, "gt-controllers-state", full_cfg, {"ctrl": ctrl}, opt, {"env": env.generator}, dev)
    t0, s0 = time.time(), step
    bar = tqdm(total=cfg.steps, initial=step, desc="gt-controllers", unit="step", disable=not progress)
    with run.recording(lambda: step), bar:
        while step < cfg.steps:
            with torch.no_grad():
                episodes = expert_episodes(env, 0.0, cfg.dstar_ties)
            loss = gt_loss(model, ctrl, episodes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ctrl.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                run.log(step, **{"losses/action_nll": loss.item(), "charts/SPS": (step - s0) / max(1e-9, time.time() - t0)})
                bar.set_postfix(nll=f"{loss.item():.3f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(last, training_state({"ctrl": ctrl}, opt, {"env": env.generator}),
                                "gt-controllers-state", full_cfg, {"step": step})
                run.set_status("running", step=step)
    run.set_status("done", step=step)
    return ctrl.eval()


def gt_controller_policy(model: GridTransformer, ctrl: GTControllers, batch: int, generator: torch.Generator,
                         greedy: bool = False):
    """A :data:`irl_core.data.Policy` that applies U^{(g)}, g = subgoal of the colour the env says is sought."""
    cache: dict[str, KVCache] = {}

    @torch.no_grad()
    def act(obs: torch.Tensor, state, t: int) -> torch.Tensor:
        if t == 0:
            cache["kv"] = model.new_cache(batch)
        g = state.world.subgoal_of_colour(state.target)  # (B,) ground-truth progress → abstract action
        logits = controlled_step(model, obs, cache["kv"], ctrl.layer, lambda e: ctrl(e, g))
        if greedy:
            return logits.argmax(-1)
        return torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=generator).squeeze(1)

    return act


@torch.no_grad()
def gt_controller_rollouts(model: GridTransformer, ctrl: GTControllers, task: str = "heldout", episodes: int = 1000,
                           seed: int = 0, greedy: bool = False, batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Episodes of the controlled base model; the same dict (on the CPU) as :func:`irl_core.data.run_episodes`."""
    if episodes <= 0:
        raise ValueError(f"the number of episodes must be positive, got {episodes}")
    dev = next(model.parameters()).device
    tasks = task_set(task, model.world)
    parts, done = [], 0
    while done < episodes:
        b = min(batch_size, episodes - done)
        env = BatchedGridPinpad(b, tasks, dev, seed=EVAL_SEED_OFFSET + seed * 1_000_003 + done, world=model.world)
        parts.append({k: v.cpu() for k, v in run_episodes(env, gt_controller_policy(model, ctrl, b, env.generator, greedy)).items()})
        done += b
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def evaluate_gt_controllers(model: GridTransformer, ctrl: GTControllers, episodes: int = 1000, seed: int = 0,
                            task: str = "heldout") -> dict[str, float]:
    """Success rate (and mean number of task colours completed) of the controllers activated in the task's order.

    ``success_rate`` is judged by replaying the exported rollouts in the gymnasium env of the world (a separate
    implementation of the rules, :func:`irl_core.data.replay`); ``success_rate_simulator`` is the batched
    simulator's own count, and ``replay_consistent`` says the replays ended where the episodes did."""
    eps = gt_controller_rollouts(model, ctrl, task, episodes, seed)
    replayed = replay(export_arrays(eps))
    return {"success_rate": float(replayed["success"].mean()), "episodes": episodes, "task": task,
            "success_rate_simulator": float(eps["success"].double().mean()),
            "replay_consistent": bool(replayed["consistent"].all()), "world": model.world.name,
            "mean_length": float(eps["length"].float().mean()),
            "mean_colours_completed": float(replayed["colours_completed"].mean())}


def save_gt_controllers(path, ctrl: GTControllers, meta: dict) -> Path:
    return save_checkpoint(path, ctrl.state_dict(), GT_KIND, ctrl.config_dict(), meta)


def load_gt_controllers(path, device="cpu", base: GridTransformer | None = None) -> tuple[GTControllers, dict]:
    """Load ground-truth controllers; with ``base``, refuse controllers made in another world (one line)."""
    state, config, meta = load_checkpoint(path, GT_KIND)
    if base is not None:
        check_same_world(base.world, config, f"{path}")
    try:
        ctrl = GTControllers(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid gt-controllers config ({e})") from None
    load_state_into(ctrl, state, f"{Path(path).with_suffix('')}.safetensors")
    return ctrl.to(resolve_device(device)).eval(), meta
