"""Critic-free PPO (docs/paper.md §6, C.5.2, Eq. 10), the same for every method of Fig. 8: the run's config and
presets, the advantage and clipped objective, the rollout records, the held-out evaluation and the training loop.

A *learner* (:class:`irl_core.rl.internal.InternalLearner` over codes z, or
:class:`irl_core.rl.baselines.raw_action.RawActionLearner` over raw actions) supplies ``collect`` (one batch of
episodes as a :class:`Rollout`), ``loss`` (the PPO objective of its decisions), ``evaluation_env`` and
``modules`` (what is trained and checkpointed); :func:`train` is the loop, top to bottom.

The advantage of an episode is its return normalised over the whole batch, A = (R − mean R) / (std R + δ),
δ = 1e-3; every decision of an episode gets its episode's A; the loss is
−E_τ[Σ_k min(ρ_k A, clip(ρ_k, 1 − ε, 1 + ε) A)] with ρ_k = π(z_k | e_{≤k}) / π_old(z_k | e_{≤k}).
Choices where the paper is silent (README "Choices"): PPO clip ε = 0.2, 2 epochs over each batch, no
minibatches, no discount (returns are terminal), no KL-to-reference term, no entropy bonus (Table A13:
entropy reg 0); "train steps" vs Fig. 8's episodes is ambiguous (docs/paper.md §6): our budget is counted in
episodes.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from tqdm import tqdm

from irl_core.checkpoints import atomic_write_json, read_json, resume_training, save_checkpoint, training_state
from irl_core.config import preset
from irl_core.runs import Run

METHODS = ("internal-rl", "beta1", "cotrained", "compile", "raw-action")
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
        finished = read_json(run.path / "result.json") if (run.path / "result.json").exists() else {}
        if update >= cfg.updates and "eval/success_greedy" in finished:  # a finished run: nothing to do, nothing lost
            return finished
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
