"""Ant-pinpad episodes of any actor (the expert, the ant base model, a steered base model): ``run_episodes``
seeds episode ``j`` from ``[seed, j]`` whatever else runs beside it, so different actors meet the same
layouts, starts and tasks; ``evaluate`` turns them into success rates and termination counts.
"""
from __future__ import annotations

import numpy as np
import torch

from irl_core.envs import ant as A
from irl_core.experts.ant_expert import ACT_DIM, AntExpert, features
from irl_core.experts.ant_planner import task_solvable


class ExpertActor:
    """The expert as ``run_episodes`` drives any policy: ``start(slot, generator)`` when a slot begins an episode,
    ``act(batch, active)`` → actions (n, 8) in [−1, 1] for every slot (those of ``active`` matter)."""

    def __init__(self, expert: AntExpert):
        self.expert, self.gens = expert, {}

    def start(self, i: int, gen: torch.Generator) -> None:
        self.gens[i] = gen

    def act(self, batch, active: np.ndarray) -> np.ndarray:
        x = features(batch.qpos, batch.qvel, self.expert.planner.directions(batch))
        mean = self.expert.mean_action(x)
        if not self.expert.deterministic:
            for i in np.flatnonzero(active):
                mean[i] = mean[i] + torch.randn(ACT_DIM, generator=self.gens[i], dtype=torch.float64).numpy() * self.expert.action_std
        return np.clip(mean, -1, 1)


def run_episodes(expert, tasks, episodes: int, seed: int = 0, n_parallel: int = 32,
                 record: bool = False, offset: int = 0, any_task: bool = False) -> dict:
    """Run ``episodes`` episodes (tasks cycled in order) with ``expert`` (an :class:`AntExpert`, or any actor
    with :class:`ExpertActor`'s ``start``/``act``, such as the ant base model's); episode ``j`` (counted from
    ``offset``) is seeded from ``[seed, j]`` and plays task ``tasks[j % len(tasks)]``.

    Returns ``success`` (E,), ``length`` (E,), ``event`` (E,) list of str, ``task`` list, ``layout`` (E,4,4), ``start`` (E,2)
    and, with ``record``, per-episode ``obs`` (L, 41), ``actions`` (L, 8), ``progress`` (L,) and ``uv``
    (L+1, 2) torso positions in cell units before every action and after the last one.
    Results do not depend on ``n_parallel`` (every episode has its own random stream). With ``any_task`` an
    episode succeeds on completing any of ``tasks`` (``AntPinpadBatch.reset_one(any_of=)``; ``task`` then
    reports the one it followed), for a policy that is not told its task.
    """
    tasks = [tuple(t) for t in tasks]
    actor = ExpertActor(expert) if isinstance(expert, AntExpert) else expert
    batch = A.AntPinpadBatch(min(n_parallel, episodes))
    slot_ep = np.full(batch.n, -1)
    next_ep = 0
    out = {"success": np.zeros(episodes, bool), "length": np.zeros(episodes, np.int64), "event": [""] * episodes,
           "task": [None] * episodes, "layout": np.zeros((episodes, A.G, A.G), np.int8),
           "start": np.zeros((episodes, 2), np.int64)}
    rec = {k: [None] * episodes for k in ("obs", "actions", "uv", "progress")} if record else None
    buf: dict[int, dict[str, list]] = {}

    def start(i):
        nonlocal next_ep
        if next_ep >= episodes:
            slot_ep[i] = -1
            return
        j = next_ep
        next_ep += 1
        g = offset + j
        batch.seed(i, np.random.SeedSequence([seed, g]).generate_state(1)[0])
        batch.reset_one(i, task=tasks[g % len(tasks)], any_of=tasks if any_task else None)
        out["start"][j] = batch.cell[i]
        slot_ep[i] = j
        actor.start(i, torch.Generator().manual_seed(int(np.random.SeedSequence([seed, g, 1]).generate_state(1)[0])))
        if record:
            buf[i] = {"obs": [], "actions": [], "uv": [], "progress": []}

    for i in range(batch.n):
        start(i)
    while (slot_ep >= 0).any():
        active = slot_ep >= 0
        actions = actor.act(batch, active)
        if record:
            obs = batch.observe()
            uv = batch.uv()
            for i in np.flatnonzero(active):
                buf[i]["obs"].append(obs[i])
                buf[i]["actions"].append(actions[i].astype(np.float32))
                buf[i]["uv"].append(uv[i].astype(np.float32))
                buf[i]["progress"].append(int(batch.progress[i]))
        _, term, trunc, event = batch.step(actions, active)
        if record:
            uv = batch.uv()
        for i in np.flatnonzero(active & (term | trunc)):
            j = slot_ep[i]
            out["success"][j] = event[i] == A.EVENTS.index("success")
            out["length"][j] = batch.t[i]
            out["event"][j] = A.EVENTS[event[i]] or "timeout"
            out["task"][j] = batch.tasks[i]
            out["layout"][j] = batch.layout[i]
            if record:
                buf[i]["uv"].append(uv[i].astype(np.float32))
                for k in rec:
                    rec[k][j] = np.asarray(buf[i][k])
            start(i)
    if record:
        out.update(rec)
    return out


def evaluate(expert, tasks, episodes: int, seed: int = 0, any_task: bool = False) -> dict:
    """Success rate, mean length (all and successful episodes) and termination counts, of the expert or of
    any actor (see :func:`run_episodes`; ``any_task``: success is completing any of ``tasks``)."""
    res = run_episodes(expert, tasks, episodes, seed, any_task=any_task)
    events = {e: int(sum(1 for x in res["event"] if x == e)) for e in ("success", "wrong_colour", "wall", "height", "timeout")}
    succ = res["success"]
    judged = [tuple(t) for t in tasks] if any_task else None
    solvable = np.array([any(task_solvable(res["layout"][j], tuple(res["start"][j]), t) for t in (judged or [res["task"][j]]))
                         for j in range(episodes)])
    return {"episodes": episodes, "success_rate": float(succ.mean()),
            "solvable_fraction": float(solvable.mean()),
            "success_rate_on_solvable": float(succ[solvable].mean()) if solvable.any() else None,
            "mean_length": float(res["length"].mean()),
            "mean_length_successful": float(res["length"][succ].mean()) if succ.any() else None,
            "events": events}
