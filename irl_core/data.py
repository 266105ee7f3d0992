"""Grid datasets D and D* (docs/paper.md §1.3): expert episodes with per-step ground-truth subgoal labels.

Episodes are stored compactly as the layout and the agent's cell at every step (observations are a
function of the two and are rebuilt on demand by :func:`irl_core.envs.grid.observations_from_positions`):

==========  ==============  =========================================================
key         shape / dtype   meaning
==========  ==============  =========================================================
layout      (N, G²) int8    −1 empty, −2 wall, 0..O−1 colour (49 cells in grid7, 25 in grid5)
pos         (N, T+1) int8   agent cell before each action and after the last (−1 pad)
actions     (N, T) int8     0 up, 1 right, 2 down, 3 left (−1 pad)
progress    (N, T) int8     colours of the task visited before each action (−1 pad)
subgoal     (N, T) int8     ground-truth abstract action: the subgoal of the colour sought (−1 pad)
task        (N, 12) int8    the task's colours (−1 pad)
length      (N,) int16      number of actions
success     (N,) bool
==========  ==============  =========================================================

A file records its world as ``meta_world`` (absent: ``grid7``).
D uses the expert with noise ε (default 0, the paper's default), D* uses ε = 0. The dataset size is not
given in the paper; pretraining (irl_core.pretrain) generates fresh episodes on the device by default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from irl_core.envs.grid import BatchedGridPinpad, GridBatch, GridPinpadEnv, observations_from_positions
from irl_core.envs.tasks import subgoal_of_colour
from irl_core.envs.worlds import WORLDS, GridWorld, WorldError, get_world
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
    subgoal = torch.where(progress >= 0, subgoal_of_colour(target, env.world), -1)
    return {"layout": s.layout.clone(), "pos": pos, "actions": actions, "progress": progress, "subgoal": subgoal,
            "task": s.task.clone(), "length": (actions >= 0).sum(1), "success": s.success.clone()}


def heldout_episodes(n: int, seed: int, world: GridWorld, device="cpu", ties: str = "random") -> dict[str, torch.Tensor]:
    """``n`` held-out D* episodes (ε = 0, pretraining tasks) of ``world`` from a seed stream disjoint from
    pretraining's: what probes, discovery's evaluation and the latent map are measured on. ``ties``: the
    expert's tie-breaking among optimal moves (irl_core.experts.grid_expert)."""
    if n <= 0:
        raise ValueError(f"the number of episodes must be positive, got {n}")
    env = BatchedGridPinpad(n, "pretrain", device, seed=10_000_019 + seed, world=world)
    return trim(expert_episodes(env, 0.0, ties))


def trim(episodes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut the per-step arrays to the longest episode (``pos`` keeps one more entry)."""
    T = int(episodes["length"].max())
    out = dict(episodes)
    for k in ("actions", "progress", "subgoal"):
        out[k] = episodes[k][:, :T]
    out["pos"] = episodes["pos"][:, : T + 1]
    return out


def expert_policy(generator: torch.Generator, epsilon: float = 0.0, ties: str = "random") -> Policy:
    return lambda obs, state, t: expert_action(state, generator, epsilon, ties)


def expert_episodes(env: BatchedGridPinpad, epsilon: float = 0.0, ties: str = "random") -> dict[str, torch.Tensor]:
    """One batch of ``env.B`` expert episodes (tasks drawn uniformly from the env's task set)."""
    return run_episodes(env, expert_policy(env.generator, epsilon, ties))


def training_tensors(episodes: dict[str, torch.Tensor], world: GridWorld, max_len: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Episodes → ``(obs (B, T+1, 637) uint8, actions (B, T) long)`` trimmed to the longest episode."""
    T = int(episodes["length"].max()) if max_len is None else max_len
    pos = episodes["pos"][:, : T + 1].long()
    obs = observations_from_positions(episodes["layout"], pos, world)
    return obs, episodes["actions"][:, :T].long()


def generate_dataset(n: int, tasks: str = "pretrain", epsilon: float = 0.0, seed: int = 0,
                     device: str | torch.device = "cpu", batch_size: int = 4096, progress: bool = True,
                     world: str | GridWorld = "grid7") -> dict[str, np.ndarray]:
    """``n`` expert episodes of ``world`` as compact numpy arrays (see the module docstring)."""
    if n <= 0:
        raise ValueError(f"the number of episodes must be positive, got {n}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in DATASET_KEYS}
    done = 0
    with tqdm(total=n, desc="episodes", unit="ep", disable=not progress) as bar:
        while done < n:
            b = min(batch_size, n - done)
            env = BatchedGridPinpad(b, tasks, device, seed=seed * 1_000_003 + done, world=world)
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


def world_of_layout(layout) -> GridWorld:
    """The world whose grid a batch of layouts (N, G²) has (the two worlds differ in size)."""
    n_cells = int(layout.shape[-1])
    for w in WORLDS.values():
        if w.n_cells == n_cells:
            return w
    raise WorldError(f"no world has {n_cells} cells")


def export_arrays(episodes: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Rollouts (the tensors of :func:`run_episodes`) in docs/design.md's grid format: ``layout`` (N, G, G),
    ``start`` (N, 2) row and column, ``task`` (N, 12), ``actions`` (N, T), ``success`` (N,), and ``world``
    (the name of the world whose size the layout has)."""
    start = episodes["pos"][:, 0].long().cpu()
    world = world_of_layout(episodes["layout"])
    G = world.size
    data = {
        "world": np.asarray(world.name),
        "layout": episodes["layout"].numpy().astype(np.int8).reshape(-1, G, G),
        "start": np.stack([(start // G).numpy(), (start % G).numpy()], 1).astype(np.int64),
        "task": episodes["task"].numpy().astype(np.int8),
        "actions": episodes["actions"].numpy().astype(np.int8),
        "success": episodes["success"].numpy().astype(bool),
    }
    return data


def export_npz(path: str | Path, episodes: dict[str, torch.Tensor], **extra) -> None:
    """Write :func:`export_arrays` of ``episodes`` (and ``extra`` arrays) to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **export_arrays({k: v.cpu() for k, v in episodes.items()}), **extra)


def replay(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Re-run exported episodes (:func:`export_npz`'s arrays) action by action in the gymnasium env of their
    world, an implementation of the rules separate from the batched simulator that produced them.

    Returns ``success`` (N,) as the rules judge it, ``colours_completed`` (N,) and ``consistent`` (N,): whether
    the replay ended exactly where the export's actions end (an action after the end, or actions that stop
    before the end, is an inconsistency)."""
    layout = np.asarray(data["layout"])
    N, G = layout.shape[0], layout.shape[-1]
    world = get_world(str(data["world"])) if "world" in data else world_of_layout(layout.reshape(N, -1))
    success = np.zeros(N, bool)
    completed = np.zeros(N, np.int64)
    consistent = np.ones(N, bool)
    envs: dict[tuple[int, ...], GridPinpadEnv] = {}  # one env per task: reset() with a layout starts afresh
    for i in range(N):
        task = tuple(int(c) for c in np.asarray(data["task"][i]) if c >= 0)
        if task not in envs:
            envs[task] = GridPinpadEnv(task, world=world)
        env = envs[task]
        r, c = (int(v) for v in data["start"][i])
        env.reset(options={"layout": layout[i].reshape(-1), "start": r * G + c})
        actions = [int(a) for a in np.asarray(data["actions"][i]) if a >= 0]
        ended = False
        for k, a in enumerate(actions):
            _, reward, terminated, truncated, info = env.step(a)
            if terminated or truncated:
                ended = True
                consistent[i] = k == len(actions) - 1
                break
        consistent[i] &= ended
        success[i] = bool(info["success"]) if actions else False
        completed[i] = env.progress
    return {"success": success, "colours_completed": completed, "consistent": consistent}


