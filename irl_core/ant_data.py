"""Ant-pinpad datasets D / D*, rollout exports, expert evaluation reports and mp4 videos.

Dataset file (``.npz``, compact: episodes are concatenated, not padded). With ``S`` steps in all and ``N``
episodes:

=================  ============  ======================================================================
key                shape, dtype  content
=================  ============  ======================================================================
``obs``            (S, 41) f32   the environment's observation before each action (ant.py's layout)
``actions``        (S, 8) f32    the action taken (clipped to [−1, 1]; sampled for D, the mean for D*)
``subgoal``        (S,) int8     ground-truth abstract action = the colour being sought (tasks.py)
``xy``             (S, 2) f32    torso position in cell units before each action
``episode_start``  (N,) int64    index of each episode's first step; ``length`` (N,) its number of steps
``layout``         (N, 4, 4) i8  −1 empty, −2 wall, 0..3 colour; ``task`` (N, 4) int8 padded with −1
``success``        (N,) bool     always true unless ``keep_failures``
``meta``           () str        JSON: kind (D or D*), checkpoint, seed, attempted episodes, env constants
=================  ============  ======================================================================

D samples the expert's Gaussian and D* takes its mean (docs/paper.md §1.3); like the paper, only successful
episodes are kept (``keep_failures`` keeps all). Episode ``j`` is seeded from ``[seed, j]``, so the same
seed gives the same file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from irl_core.checkpoints import atomic_write_bytes
from irl_core.envs import ant as A
from irl_core.envs.tasks import ANT_HELDOUT_TASK, ANT_PRETRAIN_TASKS, format_task, subgoal_labels

TASK_PAD = 4  # ant tasks have at most 4 colours here (pretraining 3, held-out 4)
CHUNK = 256   # episodes run per call while generating a dataset (the progress bar moves per chunk; the file does not depend on it)
VIDEO_FPS = int(round(1 / A.CONTROL_DT))


def _load_expert(checkpoint, mean_action: bool, seed: int = 0):
    from irl_core.experts.ant_expert import AntExpert
    return AntExpert.load(checkpoint, deterministic=mean_action, seed=seed)


def _pad_tasks(tasks: Sequence[Sequence[int]]) -> np.ndarray:
    width = max(TASK_PAD, max((len(t) for t in tasks), default=0))
    out = np.full((len(tasks), width), -1, dtype=np.int8)
    for i, t in enumerate(tasks):
        out[i, :len(t)] = t
    return out


def _save_npz(path, **arrays) -> None:
    import io
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: the output must be a .npz file")
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------
def generate_dataset(checkpoint, tasks, episodes: int, seed: int = 0, mean_action: bool = False,
                     keep_failures: bool = False, progress: bool = True, max_attempts: int | None = None) -> dict:
    """Collect ``episodes`` (successful, unless ``keep_failures``) expert episodes on ``tasks`` (cycled)."""
    from tqdm import tqdm
    from irl_core.experts.ant_episodes import run_episodes

    expert = _load_expert(checkpoint, mean_action, seed)
    max_attempts = max_attempts or (episodes if keep_failures else 20 * episodes + 64)
    kept: list[dict] = []
    attempted = 0
    bar = tqdm(total=episodes, unit="ep", disable=not progress, desc="ant " + ("D*" if mean_action else "D"))
    while len(kept) < episodes and attempted < max_attempts:
        need = episodes - len(kept)
        chunk = min(max_attempts - attempted, need if keep_failures else max(32, int(need * 1.3)), CHUNK)
        res = run_episodes(expert, tasks, chunk, seed, record=True, offset=attempted)
        attempted += chunk
        for j in range(chunk):
            if (keep_failures or res["success"][j]) and len(kept) < episodes:
                kept.append({k: res[k][j] for k in ("obs", "actions", "uv", "progress", "task", "layout", "success")})
                bar.update(1)
    bar.close()
    if len(kept) < episodes:
        raise RuntimeError(f"only {len(kept)} of {episodes} successful episodes in {attempted} attempts: "
                           "is the expert checkpoint trained?")
    lengths = np.array([len(e["actions"]) for e in kept], dtype=np.int64)
    meta = {"kind": "D*" if mean_action else "D", "checkpoint": str(checkpoint), "seed": seed,
            "attempted": attempted, "tasks": [format_task(t) for t in tasks], "cell_size": A.CELL_SIZE,
            "control_dt": A.CONTROL_DT, "obs_dim": A.OBS_DIM}
    return {
        "obs": np.concatenate([e["obs"] for e in kept]).astype(np.float32),
        "actions": np.concatenate([e["actions"] for e in kept]).astype(np.float32),
        "subgoal": np.concatenate([subgoal_labels(e["task"], e["progress"], "ant") for e in kept]).astype(np.int8),
        "xy": np.concatenate([e["uv"][:-1] for e in kept]).astype(np.float32),
        "episode_start": np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        "length": lengths,
        "layout": np.stack([e["layout"] for e in kept]).astype(np.int8),
        "task": _pad_tasks([e["task"] for e in kept]),
        "success": np.array([bool(e["success"]) for e in kept]),
        "meta": np.array(json.dumps(meta)),
        "attempted": attempted,
    }


def save_dataset(path, data: dict) -> None:
    _save_npz(path, **{k: v for k, v in data.items() if k != "attempted"})


def load_dataset(path) -> dict:
    """Load a dataset file; ``episodes(data)`` splits it back into per-episode dicts."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    data["meta"] = json.loads(str(data["meta"]))
    return data


def merge_datasets(paths: Sequence) -> dict:
    """Concatenate dataset files of one kind (made with different seeds, e.g. in parallel) into one dataset.

    ValueError if the files mix D and D* or disagree on the environment's constants."""
    if len(paths) < 2:
        raise ValueError("merging needs at least two dataset files")
    parts = [load_dataset(p) for p in paths]
    metas = [d["meta"] for d in parts]
    for key in ("kind", "cell_size", "control_dt", "obs_dim"):
        values = {json.dumps(m.get(key)) for m in metas}
        if len(values) > 1:
            raise ValueError(f"cannot merge datasets that differ in {key}: {sorted(values)}")
    lengths = np.concatenate([d["length"] for d in parts])
    width = max(d["task"].shape[1] for d in parts)
    tasks = [np.pad(d["task"], ((0, 0), (0, width - d["task"].shape[1])), constant_values=-1) for d in parts]
    meta = {**metas[0], "seed": [m["seed"] for m in metas], "attempted": sum(int(m.get("attempted", 0)) for m in metas),
            "merged_from": [str(p) for p in paths]}
    out = {k: np.concatenate([d[k] for d in parts]) for k in ("obs", "actions", "subgoal", "xy", "layout", "success")}
    out.update({"task": np.concatenate(tasks), "length": lengths, "meta": np.array(json.dumps(meta)),
                "episode_start": np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)})
    return out


def episodes(data: dict):
    """Yield per-episode views ``{"obs", "actions", "subgoal", "xy", "task", "layout"}`` of a loaded dataset."""
    for i, (s, n) in enumerate(zip(data["episode_start"], data["length"])):
        task = tuple(int(c) for c in data["task"][i] if c >= 0)
        yield {"obs": data["obs"][s:s + n], "actions": data["actions"][s:s + n], "subgoal": data["subgoal"][s:s + n],
               "xy": data["xy"][s:s + n], "task": task, "layout": data["layout"][i]}


# --------------------------------------------------------------------------------------------------
# Rollouts export (docs/design.md's ant format) and evaluation reports
# --------------------------------------------------------------------------------------------------
def export_rollouts(checkpoint, tasks, n: int, seed: int, out, mean_action: bool = False) -> dict:
    """Write ``layout`` (N,4,4) i8, ``task`` (N,4) i8, ``xy`` (N,T,2) f32 (NaN after the episode; T = the longest
    episode + 1: positions before every action and after the last), ``length`` (N,), ``success`` (N,)."""
    from irl_core.experts.ant_episodes import run_episodes
    expert = _load_expert(checkpoint, mean_action, seed)
    res = run_episodes(expert, tasks, n, seed, record=True)
    T = int(res["length"].max()) + 1
    xy = np.full((n, T, 2), np.nan, dtype=np.float32)
    for j, uv in enumerate(res["uv"]):
        xy[j, :len(uv)] = uv
    arrays = {"layout": res["layout"].astype(np.int8), "task": _pad_tasks(res["task"]), "xy": xy,
              "length": res["length"].astype(np.int64), "success": res["success"].astype(bool)}
    _save_npz(out, **arrays)
    return arrays


def evaluate_report(checkpoint, episodes: int = 200, seed: int = 0, heldout_episodes: int | None = None) -> dict:
    """Success and episode length on the 16 pretraining tasks and the held-out task, sampled (as D) and
    mean (as D*) actions; the shipped ``checkpoints/ant/reports/expert.json``. ``pretrain_any`` judges the
    same episodes on completing any pretraining task, as the base model is judged (``irl_core.ant_base``)."""
    import time
    from irl_core.experts.ant_episodes import evaluate
    heldout_episodes = heldout_episodes or episodes
    t0 = time.time()
    report = {"checkpoint": str(checkpoint), "seed": seed, "cell_size": A.CELL_SIZE, "control_dt": A.CONTROL_DT}
    for mode, det in (("sampled", False), ("mean", True)):
        expert = _load_expert(checkpoint, det, seed)
        report[mode] = {"pretrain": evaluate(expert, ANT_PRETRAIN_TASKS, episodes, seed),
                        "pretrain_any": evaluate(_load_expert(checkpoint, det, seed), ANT_PRETRAIN_TASKS, episodes, seed,
                                                 any_task=True),
                        "heldout": evaluate(expert, [ANT_HELDOUT_TASK], heldout_episodes, seed + 1)}
    report["eval_wall_s"] = round(time.time() - t0, 1)
    return report


# --------------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------------
def encode_mp4(frames, path, fps: int = VIDEO_FPS) -> int:
    """H.264 (yuv420p, faststart) mp4 that plays in browsers; returns the number of frames written."""
    import imageio.v2 as imageio
    path = Path(path)
    if path.suffix != ".mp4":
        raise ValueError(f"{path}: the video must be an .mp4 file")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    n = 0
    with imageio.get_writer(tmp, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=16,
                            ffmpeg_params=["-movflags", "+faststart", "-crf", "23"], quality=None) as w:
        for frame in frames:
            w.append_data(np.asarray(frame, dtype=np.uint8))
            n += 1
    tmp.replace(path)
    return n


def record_video(checkpoint, task, seed: int, out, camera: str = "topdown", size: int = A.RENDER_SIZE,
                 mean_action: bool = False, layout=None) -> dict:
    """Roll out the expert on ``task`` (reset seeded with ``seed``) and write an mp4 (one frame per step + 1)."""
    from irl_core.envs.tasks import parse_task
    task = parse_task(task, "ant")
    if size < 16 or size % 16:
        raise ValueError(f"--size must be a positive multiple of 16, got {size}")
    expert = _load_expert(checkpoint, mean_action, seed)
    env = A.AntPinpadEnv(task=task, render_mode="rgb_array", camera=camera, width=size, height=size)
    _, info = env.reset(seed=seed, options={"layout": layout} if layout is not None else None)
    frames = [env.render()]
    done = False
    while not done:
        _, _, term, trunc, info = env.step(expert.act(env.batch)[0])
        frames.append(env.render())
        done = term or trunc
    env.close()
    n = encode_mp4(frames, out)
    return {"frames": n, "length": info["t"], "event": info["event"] or "timeout", "task": format_task(task)}
