"""Rollouts of the expert or the base model on gridworld-pinpad, their summary statistics and .npz export.

The base model acts through its KV-cached incremental :meth:`~irl_core.models.transformer.GridTransformer.step`
(one new observation per step, all episodes in lockstep), sampling its action (or taking the most
likely one with ``greedy=True``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from irl_core.data import Policy, expert_policy, run_episodes
from irl_core.device import resolve_device
from irl_core.envs.grid import G, BatchedGridPinpad
from irl_core.envs.tasks import format_task, pretrain_tasks, task_set
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


def sequence_statistics(visited: list[list[int]]) -> dict[str, float]:
    """How often the first colours visited spell a pretraining task, the held-out task, or a pair (x, x^1)."""
    pre = {tuple(t) for t in pretrain_tasks("grid")}
    heldout = tuple(task_set("heldout", "grid")[0])
    n = max(1, len(visited))
    first6 = [tuple(v[:6]) for v in visited]
    pair_ok = [len(v) >= 2 and v[1] == (v[0] ^ 1) for v in visited]
    return {
        "follows_pretraining_task": sum(f in pre for f in first6) / n,
        "prefix_of_pretraining_task": sum(any(t[:len(f)] == f for t in pre) for f in first6) / n,
        "follows_heldout_task": sum(tuple(v[:12]) == heldout for v in visited) / n,
        "first_pair_completed": sum(pair_ok) / n,
        "mean_colours_visited": float(np.mean([len(v) for v in visited])) if visited else 0.0,
    }


def rollout(policy_name: str, task: str, episodes: int, seed: int = 0, device="cpu", model: GridTransformer | None = None,
            greedy: bool = False, end_on_wrong: bool = True, batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Run ``episodes`` episodes of the expert or the base model; returns the tensors of :func:`run_episodes`."""
    dev = resolve_device(device)
    tasks = task_set(task, "grid")
    parts = []
    done = 0
    while done < episodes:
        b = min(batch_size, episodes - done)
        env = BatchedGridPinpad(b, tasks, dev, seed=seed * 1_000_003 + done, end_on_wrong=end_on_wrong)
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


def export_npz(path: str | Path, episodes: dict[str, torch.Tensor], **extra) -> None:
    """Write rollouts in DESIGN.md's grid format (layout, start, task, actions, success)."""
    start = episodes["pos"][:, 0].long()
    data = {
        "layout": episodes["layout"].numpy().astype(np.int8).reshape(-1, G, G),
        "start": np.stack([(start // G).numpy(), (start % G).numpy()], 1).astype(np.int64),
        "task": episodes["task"].numpy().astype(np.int8),
        "actions": episodes["actions"].numpy().astype(np.int8),
        "success": episodes["success"].numpy().astype(bool),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data, **extra)


def cli_rollouts(args) -> int:
    from irl_core.cli import UserError
    if args.env == "ant":
        from irl_core import ant_cli
        return ant_cli.rollouts(args)
    if args.policy not in ("expert", "base", "gt-controllers", "internal-rl"):
        raise UserError(f"unknown grid policy {args.policy!r}; expected 'expert', 'base', 'gt-controllers' or 'internal-rl'")
    model = None
    if args.policy in ("base", "gt-controllers"):
        from irl_core.pretrain import load_base_model
        model = load_base_model(args.checkpoint, args.device)
    if args.policy == "gt-controllers":
        from irl_core.controllers import gt_controller_rollouts, load_gt_controllers
        ctrl, _ = load_gt_controllers(args.controllers, args.device)
        eps = gt_controller_rollouts(model, ctrl, args.task, args.episodes, args.seed, args.greedy)
    elif args.policy == "internal-rl":
        from irl_core.internal_rl import policy_rollouts
        eps, _ = policy_rollouts(args.policy_checkpoint, args.episodes, args.seed, args.device, args.greedy, args.task)
    else:
        eps = rollout(args.policy, args.task, args.episodes, args.seed, args.device, model, args.greedy,
                      end_on_wrong=not args.no_cut)
    export_npz(args.out, eps)
    stats = sequence_statistics(visited_colours(eps))
    tasks = ", ".join(format_task(t) for t in task_set(args.task, "grid")[:3])
    print(f"wrote {args.out}: {args.episodes} episodes of {args.policy} on {tasks}{'…' if args.task == 'pretrain' else ''}; "
          f"success {eps['success'].float().mean():.4f}, mean length {eps['length'].float().mean():.1f}, "
          f"first colours spell a pretraining task in {stats['follows_pretraining_task']:.3f}")
    return 0
