"""The ant base model acting alone in MuJoCo: closed-loop rollouts of the Hawk SSM (its step form) in the
batched ant env, and their success on the pretraining tasks and on the held-out task.

The model reads each slot's observation, its recurrent state is reset when the slot starts an episode, and the
action is a draw from its Gaussian (``sample=True``, as in D) or its mean, clipped to [−1, 1]. Slots are stepped
one at a time, so that an episode does not depend on which other episodes ran beside it (batched kernels differ in
the last bits with the batch, and the ant's dynamics amplify them). Episodes are
seeded exactly as the expert's (``irl_core.experts.ant_episodes.run_episodes``), so the base model and the
expert are compared on the same layouts, starts and tasks.
"""
from __future__ import annotations

import numpy as np
import torch

from irl_core.envs.tasks import ANT_HELDOUT_TASK, ANT_PRETRAIN_TASKS
from irl_core.experts.ant_episodes import evaluate, run_episodes
from irl_core.models.ant_ssm import AntSSM, AntSSMState

__all__ = ["BaseModelActor", "evaluate_base_model", "run_base_episodes"]


class BaseModelActor:
    """The ant base model as an actor of ``run_episodes`` (``start`` / ``act``), one recurrent state per slot."""

    def __init__(self, model: AntSSM, sample: bool = True):
        self.model, self.sample = model.eval(), sample
        self.state = None
        self.gens: dict[int, torch.Generator] = {}

    def start(self, i: int, gen: torch.Generator) -> None:
        self.gens[i] = gen
        if self.state is not None:
            self.state.h[:, i] = 0
            self.state.conv[:, i] = 0

    def _step(self, batch, i: int, obs: torch.Tensor, state: AntSSMState):
        """One slot's model step (subclasses steer it: ``irl_core.ant_controllers.ControlledActor``)."""
        return self.model.step(obs, state)

    @torch.no_grad()
    def act(self, batch, active: np.ndarray) -> np.ndarray:
        dev = self.model.obs_mean.device
        if self.state is None:
            self.state = self.model.initial_state(batch.n, dev)
        obs = torch.as_tensor(np.asarray(batch.observe()), dtype=torch.float32, device=dev)
        actions = np.zeros((batch.n, self.model.cfg.act_dim))
        for i in np.flatnonzero(active):  # one slot at a time: a batched kernel's last bits would depend on the batch
            (mean, log_std, _), st = self._step(batch, i, obs[i:i + 1], AntSSMState(self.state.h[:, i:i + 1],
                                                                                      self.state.conv[:, i:i + 1]))
            self.state.h[:, i:i + 1], self.state.conv[:, i:i + 1] = st.h, st.conv
            actions[i] = mean[0].double().cpu().numpy()
            if self.sample:
                noise = torch.randn(actions.shape[1], generator=self.gens[i], dtype=torch.float64).numpy()
                actions[i] += noise * log_std[0].double().exp().cpu().numpy()
        return np.clip(actions, -1, 1)


def run_base_episodes(model: AntSSM, tasks, episodes: int, seed: int = 0, sample: bool = True, record: bool = False,
                      n_parallel: int = 32) -> dict:
    """``run_episodes`` with the base model acting (see the module docstring)."""
    return run_episodes(BaseModelActor(model, sample), tasks, episodes, seed, n_parallel=n_parallel, record=record)


def evaluate_base_model(model: AntSSM, episodes: int = 200, seed: int = 0, sample: bool = True,
                        heldout_episodes: int | None = None) -> dict:
    """Success of the base model alone on the 16 pretraining tasks and on the held-out task.

    The base model is not told its task (the observation has none), so ``pretrain`` (success on the episode's
    drawn task) is bounded by about a sixteenth of its skill; ``pretrain_any`` counts an episode a success
    when it completes *any* pretraining task (what an imitator of the expert on all of them can do, and what
    the expert's 0.71 on its own task is compared with); ``heldout`` is success on 0-1-2-3, which no
    pretraining task starts like."""
    return {"policy": "base model", "sample": sample, "seed": seed,
            "pretrain": evaluate(BaseModelActor(model, sample), ANT_PRETRAIN_TASKS, episodes, seed),
            "pretrain_any": evaluate(BaseModelActor(model, sample), ANT_PRETRAIN_TASKS, episodes, seed, any_task=True),
            "heldout": evaluate(BaseModelActor(model, sample), [ANT_HELDOUT_TASK], heldout_episodes or episodes, seed)}


@torch.no_grad()
def ant_residual_stream(model: AntSSM, bank, ids, batch: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The residual stream after every layer (layer 0: the embedding) at every valid step of episodes ``ids`` of an
    ``EpisodeBank``: ``resid`` (n_steps, L+1, d) float32, ``subgoal`` (n_steps,) and ``episode`` (n_steps,)."""
    names = ["hook_embed"] + [f"blocks.{l}.hook_resid_post" for l in range(model.n_layers)]
    dev = model.obs_mean.device
    resid, subgoal, episode = [], [], []
    for k in range(0, len(ids), batch):
        part = list(ids[k:k + batch])
        b = bank.batch(part, dev)
        _, cache = model.run_with_cache(b["obs"], names_filter=names)
        valid = b["subgoal"] >= 0
        resid.append(torch.stack([cache[n].float() for n in names], 2)[valid].cpu().numpy())
        subgoal.append(b["subgoal"][valid].cpu().numpy())
        episode.append(torch.as_tensor(part, device=dev)[:, None].expand_as(valid)[valid].cpu().numpy())
    return np.concatenate(resid), np.concatenate(subgoal), np.concatenate(episode)


def ant_probe_report(model: AntSSM, data, episodes: int = 500, seed: int = 0) -> dict:
    """Per-layer linear probes of the subgoal (the colour sought) with shuffled-label controls, on up to
    ``episodes`` episodes of dataset file ``data`` (D* for the paper's probes), split by episode
    (``irl_core.probing.probe_layers``)."""
    from irl_core.ant_pretrain import EpisodeBank
    from irl_core.probing import probe_layers
    bank = EpisodeBank(data, 0.5)
    ids = list(range(min(episodes, len(bank.obs))))
    resid, subgoal, episode = ant_residual_stream(model, bank, ids)
    out = probe_layers(resid, subgoal, episode, seed)
    mid = model.n_layers // 2
    return {"data": str(data), "episodes": len(ids), "n_layers": model.n_layers, "mid_layer": mid,
            "mid_margin": out["accuracy"][mid] - out["control"][mid], **out}
