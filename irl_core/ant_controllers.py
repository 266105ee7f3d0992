"""Ground-truth subgoal controllers on the ant base model (docs/paper.md §4, Table A8) and latent-code injection
(§5.4, Fig. A4).

A controller per subgoal g (the colour sought) rewrites the residual stream at layer l (default L/2):
ê_t = e_t + U^{(g_t)} e_t with U^{(g)} ∈ R^{n_e × n_e}, full rank ("Linear" in Table A8), initialised at zero so
that training starts from the base model. They are trained on D* with the base model frozen, minimising the
action NLL (λ = 0) with g_t the ground-truth label, and evaluated in MuJoCo on the held-out task 0-1-2-3 with
the controller of the colour the task asks for next (switched on ground-truth progress).

Injection: the base model acts alone until step ``t0``, then the controller for colour ``g`` is switched on for
the rest of the episode; the measure is how often the first colour the ant enters after ``t0`` is ``g``,
against the base model alone on the same episodes (same seeds: layouts, starts and draws until ``t0``).
The paper: 23% → 36% for "go to blue" from step 30.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from irl_core.ant_base import BaseModelActor, first_colour_after
from irl_core.ant_pretrain import LENGTH_POOL, EpisodeBank, evaluate as evaluate_nll
from irl_core.checkpoints import load_checkpoint, load_state_into, save_checkpoint, start_or_resume, training_state
from irl_core.envs import ant as A
from irl_core.envs.tasks import ANT_HELDOUT_TASK, ANT_PRETRAIN_TASKS
from irl_core.experts.ant_episodes import evaluate, run_episodes
from irl_core.models.ant_ssm import AntSSM, ant_pretrain_loss
from irl_core.runs import Run

KIND = "ant-gt-controllers"
STATE_KIND = "ant-gt-controllers-state"


@dataclass
class AntGTConfig:
    """Table A8: full-rank linear controllers at L/2, 3,200 steps of 256 D* episodes, AdamW 3e-4, wd 0.03."""

    layer: int | None = None  # None: L/2
    steps: int = 3200
    batch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 0.03
    log_every: int = 50
    checkpoint_every: int = 200
    eval_episodes: int = 200

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {"tiny": AntGTConfig(steps=10, batch_size=4, log_every=5, checkpoint_every=5, eval_episodes=4),
           "cpu": AntGTConfig(steps=800, batch_size=32, lr=1e-3, log_every=25, checkpoint_every=100),
           "paper": AntGTConfig()}


def ant_gt_preset(name: str, **overrides) -> AntGTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def hook_name(layer: int) -> str:
    """The hook of residual-stream layer ``layer`` (0: the embedding, l: after block l − 1)."""
    return "hook_embed" if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"


class AntGTControllers(nn.Module):
    """One full-rank linear controller per colour: ê = e + U^{(g)} e (g = −1: no control)."""

    def __init__(self, d_model: int, layer: int, n_subgoals: int = A.N_COLOURS):
        super().__init__()
        self.layer, self.n_subgoals = layer, n_subgoals
        self.U = nn.Parameter(torch.zeros(n_subgoals, d_model, d_model))

    def forward(self, e: torch.Tensor, subgoal: torch.Tensor) -> torch.Tensor:
        """e (…, d), subgoal (…) int → ê (…, d)."""
        U = self.U[subgoal.long().clamp_min(0)]                       # (…, d, d)
        delta = torch.einsum("...ij,...j->...i", U.to(e.dtype), e)
        return e + delta * (subgoal >= 0).unsqueeze(-1).to(e.dtype)

    def config_dict(self) -> dict:
        return {"d_model": self.U.shape[1], "layer": self.layer, "n_subgoals": self.n_subgoals}


def train_ant_gt_controllers(model: AntSSM, cfg: AntGTConfig, data, run: Run, seed: int = 0,
                             progress: bool = True, stop_at: int | None = None) -> AntGTControllers:
    """Train (or resume from ``run``) the controllers on the episodes of dataset file ``data`` (D*).

    ``stop_at`` checkpoints and stops at that step (status ``cancelled``; the controllers are returned as they are
    there, to be evaluated); the same command without it resumes the run."""
    dev = model.obs_mean.device
    for p in model.parameters():
        p.requires_grad_(False)
    layer = model.n_layers // 2 if cfg.layer is None else cfg.layer
    if not 0 <= layer <= model.n_layers:
        raise ValueError(f"controlled layer {layer} is outside 0..{model.n_layers}")
    bank = EpisodeBank(data, 0.05)
    torch.manual_seed(seed)
    ctrl = AntGTControllers(model.cfg.d_model, layer).to(dev)
    opt = torch.optim.AdamW(ctrl.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    config = {**cfg.to_dict(), "layer": layer, "data": str(data)}
    step = start_or_resume(run, STATE_KIND, config, {"ctrl": ctrl}, opt, {}, dev)
    bar = tqdm(total=cfg.steps, initial=step, desc="ant-gt-controllers", unit="step", disable=not progress)
    with run.recording(lambda: step), bar:
        while step < cfg.steps:
            if stop_at is not None and step >= stop_at:
                save_checkpoint(run.checkpoint_dir / "last", training_state({"ctrl": ctrl}, opt, {}),
                                STATE_KIND, config, {"step": step})
                run.set_status("cancelled", step=step, note="stopped early; run the same command to resume")
                return ctrl.eval()
            b = bank.batch(bank.training_ids(step, cfg.batch_size, seed, LENGTH_POOL), dev)
            with model.hooks([(hook_name(layer), lambda x, hook: ctrl(x, b["subgoal"]))]):
                loss, m = ant_pretrain_loss(model, b["obs"], b["actions"], b["length"], 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                run.log(step, **{"losses/action_nll": float(m["action_nll"]), "losses/action_mse": float(m["action_mse"])})
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(run.checkpoint_dir / "last", training_state({"ctrl": ctrl}, opt, {}),
                                STATE_KIND, config, {"step": step})
                run.set_status("running", step=step)
    run.set_status("done", step=step)
    return ctrl.eval()


def heldout_action_nll(model: AntSSM, ctrl: AntGTControllers, data, batch: int = 32) -> dict:
    """Per-step action NLL on the held-out episodes of D* file ``data`` (the split training leaves out), for the base
    model alone and with the controllers switched on the ground-truth labels: what the controllers buy in the
    objective they were trained on, measured on episodes they never saw."""
    bank = EpisodeBank(data, 0.05)
    steer = lambda b: model.hooks([(hook_name(ctrl.layer), lambda x, hook: ctrl(x, b["subgoal"]))])  # noqa: E731
    return {"base_alone": evaluate_nll(model, bank, bank.val_ids, 0.0, batch)["action_nll"],
            "controlled": evaluate_nll(model, bank, bank.val_ids, 0.0, batch, control=steer)["action_nll"],
            "episodes": len(bank.val_ids), "steps": int(sum(len(bank.obs[i]) for i in bank.val_ids))}


def save_ant_gt_controllers(path, ctrl: AntGTControllers, meta: dict):
    return save_checkpoint(path, ctrl.state_dict(), KIND, ctrl.config_dict(), meta)


def load_ant_gt_controllers(path, device="cpu") -> AntGTControllers:
    state, config, _ = load_checkpoint(path, KIND)
    ctrl = AntGTControllers(**config)
    load_state_into(ctrl, state, path)
    return ctrl.to(device).eval()


class ControlledActor(BaseModelActor):
    """The base model with controllers switched on per slot: ``subgoal(batch, i)`` → the colour to steer to at
    this step (−1: none)."""

    def __init__(self, model: AntSSM, ctrl: AntGTControllers, subgoal, sample: bool = True):
        super().__init__(model, sample)
        self.ctrl, self.subgoal = ctrl, subgoal
        self._current = torch.tensor([-1])

    def _step(self, batch, i, obs, state):
        self._current = torch.tensor([int(self.subgoal(batch, i))], device=obs.device)
        with self.model.hooks([(hook_name(self.ctrl.layer), lambda x, hook: self.ctrl(x, self._current))]):
            return self.model.step(obs, state)


def task_progress_subgoal(batch, i: int) -> int:
    """The colour slot ``i``'s task asks for next (ground-truth progress)."""
    task, k = batch.tasks[i], int(batch.progress[i])
    return int(task[k]) if k < len(task) else -1


def evaluate_controllers(model: AntSSM, ctrl: AntGTControllers, episodes: int = 200, seed: int = 0,
                         sample: bool = True) -> dict:
    """Held-out success with the controllers switched on ground-truth progress, beside the base model alone."""
    tasks = [ANT_HELDOUT_TASK]
    return {"controlled": evaluate(ControlledActor(model, ctrl, task_progress_subgoal, sample), tasks, episodes, seed),
            "base_alone": evaluate(BaseModelActor(model, sample), tasks, episodes, seed),
            "layer": ctrl.layer, "sample": sample, "seed": seed}


def injection(model: AntSSM, ctrl: AntGTControllers, colour: int, t0: int = 30, episodes: int = 200, seed: int = 0,
              tasks=ANT_PRETRAIN_TASKS, sample: bool = True, any_task: bool = True) -> dict:
    """How often the first colour entered after ``t0`` is ``colour``: with its controller switched on from ``t0``,
    and for the base model alone on the same episodes (episodes that end before ``t0`` are left out of both).

    ``any_task`` (default): an episode runs on as long as the colours entered could still be a pretraining
    task (the base model is not told its task, as in the paper's unconditioned rollouts), rather than ending at
    the first colour off the episode's drawn task; both arms are judged alike either way."""
    inject = ControlledActor(model, ctrl, lambda batch, i: colour if int(batch.t[i]) >= t0 else -1, sample)
    rates = {}
    for name, actor in (("base_alone", BaseModelActor(model, sample)), ("injected", inject)):
        res = run_episodes(actor, tasks, episodes, seed, record=True, any_task=any_task)
        firsts = [first_colour_after(res["uv"][j], res["layout"][j], t0) for j in range(episodes)
                  if res["length"][j] > t0]
        rates[name] = {"episodes": len(firsts), "reached_first": float(np.mean([f == colour for f in firsts]))
                       if firsts else None}
    return {"colour": colour, "t0": t0, "seed": seed, "sample": sample, "any_task": any_task, **rates}
