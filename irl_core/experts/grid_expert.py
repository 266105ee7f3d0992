"""The gridworld DP expert (docs/paper.md §1.3): the stochastic shortest-path policy.

At every step the expert picks uniformly among *all* moves that lie on a shortest path to the colour it
seeks next, where shortest paths may only cross empty cells (never a wall, never another colour, which
would end the episode). Distances come from :func:`irl_core.envs.grid.distance_maps` (dynamic
programming by relaxation over the grid, batched on any device).

Ties: the paper's expert picks *uniformly* among the optimal moves (``ties="random"``). ``ties="first"``
takes the first optimal move in the order up, right, down, left instead: a deterministic expert whose
action is a function of (layout, cell, target), for D* experiments where the only thing left to explain
given the subgoal is nothing (not in the paper; see irl_core.discovery).

ε-noise: with probability ε the action is instead drawn uniformly among the *non-terminating* actions:
those that neither move onto a colour other than the target nor into a pocket from which the target can
only be reached across another colour (which would doom the episode a few steps later). A no-op into a
wall or the edge counts as non-terminating.
"""
from __future__ import annotations

import torch

from irl_core.envs.grid import INF, GridBatch, effective_next


TIES = ("random", "first")


def action_distribution(state: GridBatch, epsilon: float = 0.0, ties: str = "random") -> torch.Tensor:
    """(B, 4) probabilities of the expert's action in every episode of ``state``."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {list(TIES)}, got {ties!r}")
    nxt = effective_next(state.layout, state.agent, state.world)  # (B, 4)
    target = state.target
    d = state.dist.gather(1, target.view(-1, 1, 1).expand(-1, 1, state.dist.shape[2])).squeeze(1)  # (B, 49)
    nd = torch.where(nxt != state.agent.unsqueeze(1), d.gather(1, nxt), INF)  # (B, 4)
    best = nd.amin(1, keepdim=True)
    optimal = (nd == best) & (best < INF)
    optimal |= ~optimal.any(1, keepdim=True)  # no path (only in finished episodes): uniform, never used
    if ties == "first":  # keep only the first optimal move
        optimal &= optimal.long().cumsum(1) == 1
    probs = optimal.float() / optimal.float().sum(1, keepdim=True)
    if epsilon > 0:
        stay = nxt == state.agent.unsqueeze(1)
        safe = stay | (nd < INF)  # entering only empty cells or the target that still lead to the target
        noise = safe.float() / safe.float().sum(1, keepdim=True)
        probs = (1 - epsilon) * probs + epsilon * noise
    return probs


def optimal_actions(state: GridBatch) -> torch.Tensor:
    """(B, 4) bool: the moves on a shortest path to the current target."""
    return action_distribution(state) > 0


def expert_action(state: GridBatch, generator: torch.Generator, epsilon: float = 0.0, ties: str = "random") -> torch.Tensor:
    """(B,) actions sampled from the expert."""
    probs = action_distribution(state, epsilon, ties)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
