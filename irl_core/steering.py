"""Steering the frozen base model by injecting a controller from a chosen time step (docs/paper.md §4–§5, Fig. A4).

One episode (or a few on the same layout) of the base model acting through its KV-cached split forward,
lower blocks → control → upper blocks (as :func:`irl_core.controllers.controlled_step`). From time step
``t0`` on, the residual stream at the controlled layer is replaced by ê = e + U e, with U from

* a metacontroller code z ∈ R^{n_z} through its hypernetwork decoder, U = f_hyp(z) (held fixed: the
  temporally-abstract action of the paper, "keeping z fixed for n steps means applying the same U");
* a ground-truth subgoal controller U^{(g)} (g = 0..3 held fixed), or the ground-truth sequence
  (``"gt-sequence"``: g follows the environment's progress, as :func:`~irl_core.controllers.gt_controller_policy`);
* any callable ``(state, t) -> Control | None``.

Before ``t0`` nothing is changed, so the prefix of the rollout is the base model's own.

The rollout is run under the paper's rules by default; ``end_on_wrong=False`` (the environment's
diagnostic mode) keeps the agent moving after a wrong colour to show where it would go (for at most
``diagnostic_steps`` steps after the later of the paper's end and t0, or up to T). Either way the
paper-rules outcome is reported: the episode under the paper's rules is exactly the prefix of the
diagnostic one up to the first wrong colour (the dynamics and the model's inputs are identical until then).

The latent map of a metacontroller's codes is :mod:`irl_core.latent_map`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np
import torch

from irl_core.controllers import Control, GTControllers, apply_control, lower, upper_logits
from irl_core.envs.grid import BatchedGridPinpad, GridBatch
from irl_core.envs.tasks import format_task, task_set
from irl_core.envs.worlds import GridWorld, get_world
from irl_core.metacontroller import MetaController
from irl_core.models.transformer import GridTransformer

LAYOUT_SEED_MAX = 2**31 - 1

ControlFn = Callable[[GridBatch, int], Union[Control, None]]
ControlSpec = Union[None, Control, ControlFn, torch.Tensor, np.ndarray, Sequence[float], int, str]


# --- controllers ----------------------------------------------------------------------------------------
def code_control(meta: MetaController, z) -> ControlFn:
    """U = f_hyp(z) for one fixed code z (n_z,) (or one code per episode, (B, n_z)), at every step."""
    w = meta.decoder.hidden.weight
    z = torch.as_tensor(np.asarray(z, dtype=np.float32)).to(w.device, w.dtype)
    if z.shape[-1] != meta.cfg.n_z or z.dim() > 2:
        raise ValueError(f"a code must have {meta.cfg.n_z} entries, got shape {tuple(z.shape)}")
    with torch.no_grad():
        c = meta.decode(z)
    return lambda state, t: c


def gt_control(ctrl: GTControllers, subgoal: int | str) -> ControlFn:
    """A ground-truth controller: U^{(g)} for a fixed g in 0..K−1, or ``"gt-sequence"`` (g from the env's progress)."""
    if subgoal == "gt-sequence":
        return lambda state, t: ctrl.control(state.world.subgoal_of_colour(state.target))
    g = int(subgoal)
    if not 0 <= g < ctrl.n_subgoals:
        raise ValueError(f"subgoal must lie in [0, {ctrl.n_subgoals - 1}] or be 'gt-sequence', got {subgoal!r}")
    with torch.no_grad():
        c = ctrl.control(torch.tensor(g, device=ctrl.hyper.hidden.weight.device))
    return lambda state, t: c


def as_control_fn(spec: ControlSpec, meta: MetaController | None = None, gt: GTControllers | None = None) -> ControlFn | None:
    """Any supported control spec → a ``(state, t) -> Control | None`` function (None = no control).

    ``None``; a :class:`Control` (fixed U); a callable; a code (tensor, array or list of n_z floats, needs
    ``meta``); an int subgoal 0..3 or ``"gt-sequence"`` (needs ``gt``).
    """
    if spec is None:
        return None
    if isinstance(spec, Control):
        return lambda state, t: spec
    if isinstance(spec, (int, np.integer)) or isinstance(spec, str):
        if gt is None:
            raise ValueError("a ground-truth subgoal needs the gt-controllers (gt=...)")
        return gt_control(gt, spec)
    if callable(spec):
        return spec
    if meta is None:
        raise ValueError("a latent code needs the metacontroller (meta=...)")
    return code_control(meta, spec)


# --- rollouts -------------------------------------------------------------------------------------------
@dataclass
class SteerResult:
    """One steered episode. Cells are ``row * 7 + col``; steps are 0-based (action ``t`` leads to ``path[t+1]``)."""

    layout: np.ndarray            # (49,) int8 codes (−1 empty, −2 wall, 0..7 colour)
    start: int                    # start cell
    task: tuple[int, ...]         # the episode's task
    t0: int                       # first controlled step
    path: list[int]               # cells, length len(actions) + 1
    actions: list[int]            # 0 up, 1 right, 2 down, 3 left
    colours: list[int]            # colours entered in order (in this run; with end_on_wrong=False also after a wrong one)
    visit_steps: list[int]        # the step whose action entered each of ``colours``
    delta_ratio: np.ndarray       # (len(actions),) ‖Δresid‖/‖resid‖ at the controlled layer, Δresid = U e (0 before t0)
    success: bool                 # paper rules: every task colour in order before any wrong one, within T
    outcome: str                  # paper rules: "success", "wrong colour" or "time limit"
    end_step: int                 # paper rules: number of actions of the episode
    completed: int                # paper rules: task colours completed
    end_on_wrong: bool            # whether this run stopped at the first wrong colour (the paper's rule)
    layout_seed: int = 0
    seconds: float = 0.0          # wall time of the call that made it (shared by a batch)
    extra: dict = field(default_factory=dict)

    @property
    def paper_colours(self) -> list[int]:
        """The colours entered under the paper's rules (up to and including a wrong one)."""
        return [c for c, s in zip(self.colours, self.visit_steps) if s < self.end_step]

    def to_dict(self) -> dict:
        return {"layout": [int(x) for x in self.layout], "start": self.start, "task": list(self.task),
                "task_str": format_task(self.task), "t0": self.t0, "path": self.path, "actions": self.actions,
                "colours": self.colours, "visit_steps": self.visit_steps,
                "delta_ratio": [float(x) for x in self.delta_ratio], "success": self.success, "outcome": self.outcome,
                "end_step": self.end_step, "completed": self.completed, "paper_colours": self.paper_colours,
                "end_on_wrong": self.end_on_wrong, "layout_seed": self.layout_seed, "seconds": self.seconds}


def episode_layout(layout_seed: int, task: str = "heldout", device="cpu", world: str | GridWorld = "grid7"
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple]:
    """The episode of ``layout_seed`` in ``world``: ``(task_id (1,), layout (1, 49), start (1,), tasks)``.

    Same draw as ``GridPinpadEnv(task).reset(seed=layout_seed)`` (the Overview page's layouts): a task from
    the set, then a layout on which it is solvable.
    """
    if not 0 <= int(layout_seed) <= LAYOUT_SEED_MAX:
        raise ValueError(f"layout seed must lie in [0, {LAYOUT_SEED_MAX}], got {layout_seed}")
    world = get_world(world)
    tasks = task_set(task, world)
    env = BatchedGridPinpad(1, tasks, device, seed=int(layout_seed), world=world)
    env.reset()
    s = env.state
    return env.task_ids.clone(), s.layout.clone(), s.agent.clone(), tasks


def paper_outcome(task: Sequence[int], colours: Sequence[int], visit_steps: Sequence[int], n_steps: int,
                  t_max: int = 100) -> tuple[bool, str, int, int]:
    """The paper's rules applied to a visit sequence: ``(success, outcome, end_step, completed)``."""
    progress = 0
    for c, s in zip(colours, visit_steps):
        if c == task[progress]:
            progress += 1
            if progress == len(task):
                return True, "success", s + 1, progress
        else:
            return False, "wrong colour", s + 1, progress
    return False, "time limit", min(n_steps, t_max), progress


@torch.no_grad()
def steer_batch(model: GridTransformer, layer: int, control: ControlSpec = None, *, layout_seed: int = 0, t0: int = 0,
                task: str = "heldout", greedy: bool = True, episodes: int = 1, seed: int = 0,
                end_on_wrong: bool = True, diagnostic_steps: int | None = None, meta: MetaController | None = None,
                gt: GTControllers | None = None) -> list[SteerResult]:
    """``episodes`` steered episodes on the layout of ``layout_seed`` (see :func:`steer`)."""
    t_start = time.perf_counter()
    if episodes < 1:
        raise ValueError(f"the number of episodes must be positive, got {episodes}")
    if not 0 <= layer <= model.n_layers:
        raise ValueError(f"controlled layer must lie in [0, {model.n_layers}], got {layer}")
    if t0 < 0:
        raise ValueError(f"t0 must be non-negative, got {t0}")
    if diagnostic_steps is not None and diagnostic_steps < 0:
        raise ValueError(f"diagnostic_steps must be non-negative, got {diagnostic_steps}")
    fn = as_control_fn(control, meta, gt)
    dev = next(model.parameters()).device
    task_id, layout, start, tasks = episode_layout(layout_seed, task, dev, model.world)
    B = episodes
    env = BatchedGridPinpad(B, tasks, dev, seed=int(seed), end_on_wrong=end_on_wrong, world=model.world)
    T = env.t_max
    ratio = torch.zeros(B, T)
    pos = torch.full((B, T + 1), -1, dtype=torch.long, device=dev)
    actions = torch.full((B, T), -1, dtype=torch.long, device=dev)
    paper_end = torch.full((B,), T + 1, dtype=torch.long, device=dev)  # steps of the paper-rules episode (T+1: not ended)
    obs = env.reset(task_id.expand(B), layout.expand(B, -1), start.expand(B))
    s = env.state
    cache = model.new_cache(B)
    pos[:, 0] = s.agent
    for t in range(T):
        live = ~s.done
        if diagnostic_steps is not None:  # the diagnostic continuation stops diagnostic_steps after the paper's end
            live &= t < paper_end.clamp_min(t0) + diagnostic_steps
        if not bool(live.any()):
            break
        e = lower(model, obs.unsqueeze(1), layer, cache)[:, 0]  # (B, d) residual at the controlled layer
        c = fn(s, t) if fn is not None and t >= t0 else None
        if c is not None:
            e_hat = apply_control(e, c)  # ê = e + U e
            ratio[:, t] = ((e_hat - e).norm(dim=-1) / e.norm(dim=-1).clamp_min(1e-12)).float().cpu()
            e = e_hat
        logits = upper_logits(model, e.unsqueeze(1), layer, cache)[:, 0]  # (B, 4)
        if greedy:
            a = logits.argmax(-1)
        else:
            a = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=env.generator).squeeze(1)
        actions[:, t] = torch.where(live, a, -1)
        obs, _, _, info = env.step(a)
        pos[:, t + 1] = torch.where(live, s.agent, -1)
        ended = live & (info["wrong"] | s.success) & (paper_end > T)
        paper_end = torch.where(ended, t + 1, paper_end)
    seconds = time.perf_counter() - t_start
    length = (actions >= 0).sum(1)
    ep = {"layout": layout.expand(B, -1).cpu(), "pos": pos.cpu(), "task": s.task.cpu(), "actions": actions.cpu(),
          "length": length.cpu(), "success": s.success.cpu()}
    lay = layout[0].cpu().numpy().astype(np.int8)
    the_task = tuple(int(c) for c in tasks[int(task_id[0])])
    out = []
    for i in range(B):
        n = int(length[i])
        path = [int(p) for p in ep["pos"][i, : n + 1]]
        colours, steps = [], []
        for k in range(n):
            cell = path[k + 1]
            if cell != path[k] and lay[cell] >= 0:
                colours.append(int(lay[cell]))
                steps.append(k)
        success, outcome, end_step, completed = paper_outcome(the_task, colours, steps, n, T)
        out.append(SteerResult(layout=lay, start=int(start[0]), task=the_task, t0=int(t0), path=path,
                               actions=[int(a) for a in ep["actions"][i, :n]], colours=colours, visit_steps=steps,
                               delta_ratio=ratio[i, :n].numpy(), success=success, outcome=outcome, end_step=end_step,
                               completed=completed, end_on_wrong=end_on_wrong, layout_seed=int(layout_seed),
                               seconds=seconds, extra={"episodes": ep, "index": i}))
    return out


def steer(model: GridTransformer, layer: int, control: ControlSpec = None, *, layout_seed: int = 0, t0: int = 0,
          task: str = "heldout", greedy: bool = True, seed: int = 0, end_on_wrong: bool = True,
          diagnostic_steps: int | None = None, meta: MetaController | None = None,
          gt: GTControllers | None = None) -> SteerResult:
    """One episode of ``model`` on the layout of ``layout_seed``, controlled at ``layer`` from step ``t0`` on.

    ``control``: None (the base model alone), a code z (n_z floats; needs ``meta``), a ground-truth subgoal
    0..3 or ``"gt-sequence"`` (needs ``gt``), a fixed :class:`Control`, or a callable ``(state, t) -> Control``.
    ``task``: ``"heldout"``, ``"pretrain"`` (the seed also draws the task) or a task string. ``greedy``
    takes the most likely action (deterministic); otherwise actions are sampled with ``seed``.
    ``end_on_wrong=False`` keeps the agent going after a wrong colour (the environment's diagnostic mode),
    for at most ``diagnostic_steps`` steps after the later of the paper's end and t0 (None: up to T).
    The paper-rules outcome (``success``, ``outcome``, ``end_step``, ``paper_colours``) is reported either way.
    """
    return steer_batch(model, layer, control, layout_seed=layout_seed, t0=t0, task=task, greedy=greedy, episodes=1,
                       seed=seed, end_on_wrong=end_on_wrong, diagnostic_steps=diagnostic_steps, meta=meta, gt=gt)[0]


def export_steered(path, results: list[SteerResult]) -> None:
    """The rollouts of :func:`steer_batch` in docs/design.md's rollouts .npz format (+ ``delta_ratio`` (N, T) float32).

    ``success`` is the paper-rules outcome; ``actions`` are those of the run (beyond a wrong colour too
    when it was made with ``end_on_wrong=False``).
    """
    from irl_core.data import export_npz
    eps = [r.extra["episodes"] for r in results]
    idx = [r.extra["index"] for r in results]
    ep = {k: torch.stack([e[k][i] for e, i in zip(eps, idx)]) for k in ("layout", "pos", "task", "actions")}
    ep["success"] = torch.tensor([r.success for r in results])
    T = ep["actions"].shape[1]
    ratio = np.zeros((len(results), T), dtype=np.float32)
    for i, r in enumerate(results):
        ratio[i, : len(r.delta_ratio)] = r.delta_ratio
    export_npz(path, ep, delta_ratio=ratio, t0=np.array([r.t0 for r in results], dtype=np.int64))
