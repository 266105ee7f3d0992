"""Grid datasets D and D* (PAPER.md §1.3): expert episodes with per-step ground-truth subgoal labels.

Episodes are stored compactly as the layout and the agent's cell at every step (observations are a
function of the two and are rebuilt on demand by :func:`irl_core.envs.grid.observations_from_positions`):

==========  ==============  =========================================================
key         shape / dtype   meaning
==========  ==============  =========================================================
layout      (N, 49) int8    −1 empty, −2 wall, 0..7 colour
pos         (N, T+1) int8   agent cell before each action and after the last (−1 pad)
actions     (N, T) int8     0 up, 1 right, 2 down, 3 left (−1 pad)
progress    (N, T) int8     colours of the task visited before each action (−1 pad)
subgoal     (N, T) int8     ground-truth abstract action, the colour pair sought (−1 pad)
task        (N, 12) int8    the task's colours (−1 pad)
length      (N,) int16      number of actions
success     (N,) bool
==========  ==============  =========================================================

D uses the expert with noise ε (default 0, the paper's default), D* uses ε = 0. The dataset size is not
given in the paper; pretraining (irl_core.pretrain) generates fresh episodes on the device by default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from irl_core.envs.grid import BatchedGridPinpad, GridBatch, observations_from_positions
from irl_core.envs.tasks import format_task, subgoal_of_colour, task_set
from irl_core.experts.grid_expert import expert_action

Policy = Callable[[torch.Tensor, GridBatch, int], torch.Tensor]
DATASET_KEYS = ("layout", "pos", "actions", "progress", "subgoal", "task", "length", "success")


def run_episodes(env: BatchedGridPinpad, policy: Policy, task_ids: torch.Tensor | None = None,
                 layout: torch.Tensor | None = None, start: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Reset ``env`` and run ``policy(obs, state, t) -> (B,) actions`` until every episode has ended.

    Returns tensors on the env's device with the keys of :data:`DATASET_KEYS` (full int64/bool dtypes).
    """
    obs = env.reset(task_ids, layout, start)
    s = env.state
    B, T, dev = env.B, env.t_max, env.device
    pos = torch.full((B, T + 1), -1, dtype=torch.long, device=dev)
    actions = torch.full((B, T), -1, dtype=torch.long, device=dev)
    progress = torch.full((B, T), -1, dtype=torch.long, device=dev)
    pos[:, 0] = s.agent
    for t in range(T):
        live = ~s.done
        if not bool(live.any()):
            break
        a = policy(obs, s, t)
        actions[:, t] = torch.where(live, a, -1)
        progress[:, t] = torch.where(live, s.progress, -1)
        obs, _, _, _ = env.step(a)
        pos[:, t + 1] = torch.where(live, s.agent, -1)
    target = s.task.gather(1, progress.clamp_min(0))
    subgoal = torch.where(progress >= 0, subgoal_of_colour(target, "grid"), -1)
    return {"layout": s.layout.clone(), "pos": pos, "actions": actions, "progress": progress, "subgoal": subgoal,
            "task": s.task.clone(), "length": (actions >= 0).sum(1), "success": s.success.clone()}


def trim(episodes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut the per-step arrays to the longest episode (``pos`` keeps one more entry)."""
    T = int(episodes["length"].max())
    out = dict(episodes)
    for k in ("actions", "progress", "subgoal"):
        out[k] = episodes[k][:, :T]
    out["pos"] = episodes["pos"][:, : T + 1]
    return out


def expert_policy(generator: torch.Generator, epsilon: float = 0.0) -> Policy:
    return lambda obs, state, t: expert_action(state, generator, epsilon)


def expert_episodes(env: BatchedGridPinpad, epsilon: float = 0.0) -> dict[str, torch.Tensor]:
    """One batch of ``env.B`` expert episodes (tasks drawn uniformly from the env's task set)."""
    return run_episodes(env, expert_policy(env.generator, epsilon))


def training_tensors(episodes: dict[str, torch.Tensor], max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Episodes → ``(obs (B, T+1, 637) uint8, actions (B, T) long)`` trimmed to the longest episode."""
    T = int(episodes["length"].max()) if max_len is None else max_len
    pos = episodes["pos"][:, : T + 1].long()
    obs = observations_from_positions(episodes["layout"], pos)
    return obs, episodes["actions"][:, :T].long()


def generate_dataset(n: int, tasks: str = "pretrain", epsilon: float = 0.0, seed: int = 0,
                     device: str | torch.device = "cpu", batch_size: int = 4096, progress: bool = True) -> dict[str, np.ndarray]:
    """``n`` expert episodes as compact numpy arrays (see the module docstring)."""
    if n <= 0:
        raise ValueError(f"the number of episodes must be positive, got {n}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in DATASET_KEYS}
    done = 0
    with tqdm(total=n, desc="episodes", unit="ep", disable=not progress) as bar:
        while done < n:
            b = min(batch_size, n - done)
            env = BatchedGridPinpad(b, tasks, device, seed=seed * 1_000_003 + done)
            ep = expert_episodes(env, epsilon)
            for k in DATASET_KEYS:
                parts[k].append(ep[k].cpu().numpy())
            done += b
            bar.update(b)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    dtypes = {"layout": np.int8, "pos": np.int8, "actions": np.int8, "progress": np.int8, "subgoal": np.int8,
              "task": np.int8, "length": np.int16, "success": bool}
    return {k: out[k].astype(dtypes[k]) for k in DATASET_KEYS}


def save_dataset(path: str | Path, data: dict[str, np.ndarray], **meta) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data, **{f"meta_{k}": np.asarray(v) for k, v in meta.items()})


def load_dataset(path: str | Path) -> dict[str, np.ndarray]:
    """Load a dataset written by :func:`save_dataset`, checking that it is one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset not found")
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile/pickle errors from a corrupt file
        raise ValueError(f"{path}: not a readable .npz dataset ({type(e).__name__}: {e})") from None
    missing = [k for k in DATASET_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: not a grid dataset (missing {missing})")
    return data


def episodes_to_torch(data: dict[str, np.ndarray], device="cpu") -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(data[k]).to(device) for k in DATASET_KEYS}


def cli_generate(args) -> int:
    from irl_core.device import resolve_device
    from irl_core.cli import UserError
    dev = resolve_device(args.device)
    task_set(args.tasks, "grid")  # validate before working
    try:
        data = generate_dataset(args.episodes, args.tasks, args.epsilon, args.seed, dev)
    except ValueError as e:
        raise UserError(str(e)) from None
    save_dataset(args.out, data, tasks=args.tasks, epsilon=args.epsilon, seed=args.seed)
    n_tasks = len({format_task(t[t >= 0]) for t in data["task"]})
    print(f"wrote {args.out}: {len(data['length'])} episodes over {n_tasks} task(s), mean length "
          f"{data['length'].mean():.1f}, success {data['success'].mean():.3f}")
    return 0
