"""Rollouts of the expert or the base model on gridworld-pinpad, their summary statistics and .npz export.

The base model acts through its KV-cached incremental :meth:`~irl_core.models.transformer.GridTransformer.step`
(one new observation per step, all episodes in lockstep), sampling its action (or taking the most
likely one with ``greedy=True``). The world is the model's (``model.world``) or, for the expert, a
``world`` argument. Exports and their replay under the rules are :func:`irl_core.data.export_npz` and
:func:`irl_core.data.replay`.
"""
from __future__ import annotations


import numpy as np
import torch

from irl_core.data import Policy, expert_policy, run_episodes
from irl_core.device import resolve_device
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.envs.tasks import task_set
from irl_core.envs.worlds import GridWorld, get_world
from irl_core.models.transformer import GridTransformer


def model_policy(model: GridTransformer, batch: int, generator: torch.Generator, greedy: bool = False) -> Policy:
    """A policy that feeds each new observation to ``model.step`` with a KV cache created at t = 0."""
    cache = {}

    @torch.no_grad()
    def act(obs: torch.Tensor, state, t: int) -> torch.Tensor:
        if t == 0:
            cache["kv"] = model.new_cache(batch)
        logits, _ = model.step(obs, cache["kv"])
        if greedy:
            return logits.argmax(-1)
        return torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=generator).squeeze(1)

    return act


def visited_colours(episodes: dict[str, torch.Tensor]) -> list[list[int]]:
    """The colours entered in each episode, in order (entering = moving onto a colour from another cell)."""
    layout = episodes["layout"].long().cpu()
    pos = episodes["pos"].long().cpu()
    out = []
    for i in range(pos.shape[0]):
        p = pos[i][pos[i] >= 0]
        moved = p[1:] != p[:-1]
        cells = layout[i][p[1:][moved]]
        out.append([int(c) for c in cells if c >= 0])
    return out


def sequence_statistics(visited: list[list[int]], world: GridWorld) -> dict[str, float]:
    """How often the first colours visited spell a pretraining task or the held-out task (and, in a world of
    pair subgoals, a pair (x, x^1))."""
    pre = {tuple(t) for t in world.pretrain_tasks}
    heldout = tuple(world.heldout_task)
    n_pre = max(len(t) for t in pre)
    n = max(1, len(visited))
    first = [tuple(v[:n_pre]) for v in visited]
    out = {
        "follows_pretraining_task": sum(f in pre for f in first) / n,
        "prefix_of_pretraining_task": sum(any(t[:len(f)] == f for t in pre) for f in first) / n,
        "follows_heldout_task": sum(tuple(v[:len(heldout)]) == heldout for v in visited) / n,
        "mean_colours_visited": float(np.mean([len(v) for v in visited])) if visited else 0.0,
    }
    if world.subgoal == "pair":
        out["first_pair_completed"] = sum(len(v) >= 2 and v[1] == (v[0] ^ 1) for v in visited) / n
    return out


def rollout(policy_name: str, task: str, episodes: int, seed: int = 0, device="cpu", model: GridTransformer | None = None,
            greedy: bool = False, end_on_wrong: bool = True, batch_size: int = 1024,
            world: str | GridWorld | None = None) -> dict[str, torch.Tensor]:
    """Run ``episodes`` episodes of the expert or the base model; returns the tensors of :func:`run_episodes`.

    The world is the model's; the expert's is ``world`` (default ``grid7``)."""
    if episodes <= 0:
        raise ValueError(f"the number of episodes must be positive, got {episodes}")
    dev = resolve_device(device)
    world = model.world if model is not None else get_world(world)
    tasks = task_set(task, world)
    parts = []
    done = 0
    while done < episodes:
        b = min(batch_size, episodes - done)
        env = BatchedGridPinpad(b, tasks, dev, seed=seed * 1_000_003 + done, end_on_wrong=end_on_wrong, world=world)
        if policy_name == "expert":
            policy = expert_policy(env.generator)
        elif policy_name == "base":
            if model is None:
                raise ValueError("policy 'base' needs a model")
            policy = model_policy(model, b, env.generator, greedy)
        else:
            raise ValueError(f"unknown grid policy {policy_name!r}; expected 'expert' or 'base'")
        parts.append({k: v.cpu() for k, v in run_episodes(env, policy).items()})
        done += b
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


