"""Raw-action RL (docs/paper.md §6, Fig. 8's first baseline): the pretrained base model itself finetuned on raw
actions with the same critic-free PPO, budget and evaluation as internal RL. Every primitive step is a
decision; the ratio ρ_t = π(a_t | o_{1:t}) / π_old(a_t | o_{1:t}) is computed by a full forward pass of the
episode, and every step of an episode gets its episode's normalised return as advantage.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from irl_core.device import resolve_device
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.rl.ppo import InternalRLConfig, Rollout, RolloutNoise, ppo_objective, sample_categorical
from irl_core.models.transformer import GridTransformer


class RawActionLearner:
    """The base model as the policy over raw actions (all of its parameters are trained)."""

    def __init__(self, model: GridTransformer, cfg: InternalRLConfig, device, seed: int):
        self.cfg, self.device = cfg, resolve_device(device)
        self.model = model.to(self.device).eval()  # no dropout anywhere: eval() changes nothing but the flag
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.env = BatchedGridPinpad(cfg.batch_size, cfg.task, self.device, seed=seed, world=model.world)
        self.env_generator = self.env.generator

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def evaluation_env(self, batch: int, seed: int) -> BatchedGridPinpad:
        return BatchedGridPinpad(batch, self.cfg.task, self.device, seed=seed, world=self.model.world)

    @torch.no_grad()
    def collect(self, generator: torch.Generator, greedy: bool = False, env: BatchedGridPinpad | None = None) -> Rollout:
        env = env or self.env
        obs = env.reset()
        s, B, T = env.state, env.B, env.t_max
        start = s.agent.clone()
        noise = RolloutNoise.draw(B, T, 1, generator, self.device)
        obs_buf = torch.zeros(B, T, env.world.obs_dim, dtype=torch.uint8, device=self.device)
        actions = torch.full((B, T), -1, dtype=torch.long, device=self.device)
        logp = torch.zeros(B, T, device=self.device)
        returns = torch.zeros(B, device=self.device)
        cache = self.model.new_cache(B)
        rows = torch.arange(B, device=self.device)  # the episodes in the KV cache (as in InternalEnv.step)
        for t in range(T):
            live = ~s.done
            logits, _ = self.model.step(obs[rows], cache)  # (rows, 4)
            a_rows = logits.argmax(-1) if greedy else sample_categorical(logits, noise.action_u[rows, t])
            a = torch.zeros(B, dtype=torch.long, device=self.device)
            a[rows] = a_rows
            obs_buf[:, t] = obs
            actions[:, t] = torch.where(live, a, -1)
            logp[rows, t] = F.log_softmax(logits.float(), -1).gather(1, a_rows.unsqueeze(1)).squeeze(1)
            obs, reward, done, _ = env.step(a)
            returns += reward
            if bool(done.all()):
                break
            keep = ~done[rows]
            if int(keep.sum()) <= 0.75 * len(rows):
                idx = keep.nonzero().squeeze(1)
                cache.select(idx)
                rows = rows[idx]
        K = max(1, int(s.t.max()))
        mask = actions[:, :K] >= 0
        return Rollout(s.success.clone(), returns, s.t.clone(), s.t.clone(),
                       {"obs": obs_buf[:, :K], "actions": actions[:, :K], "logp": logp[:, :K], "mask": mask},
                       {"layout": s.layout.clone(), "start": start, "task": s.task.clone()})

    def loss(self, ro: Rollout, adv: torch.Tensor, chunk: int = 128) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """PPO loss with log π(a_t | o_{1:t}) from full forward passes. Episodes are sorted by length and run in
        chunks of ``chunk``, each padded to its own longest episode: held-out episodes are mostly short, and
        padding every one to the batch's longest would cost several times more."""
        d = ro.data
        lengths = d["mask"].sum(1)
        order = torch.argsort(lengths, descending=True)
        K = d["actions"].shape[1]
        pieces = []
        for rows in order.split(chunk):
            k = max(1, int(lengths[rows].max()))
            resid = self.model.run_blocks(self.model.embed_obs(d["obs"][rows, :k]))
            logits = self.model.action_head(self.model.ln_final(resid))  # (rows, k, 4); the obs head is not needed
            lp = F.log_softmax(logits.float(), -1).gather(2, d["actions"][rows, :k].clamp_min(0).unsqueeze(-1))
            pieces.append(F.pad(lp.squeeze(-1), (0, K - k)))
        logp = torch.cat(pieces)[torch.argsort(order)]  # back to the batch's order, (B, K)
        return ppo_objective(logp, d["logp"], adv, d["mask"].float(), self.cfg.clip)
