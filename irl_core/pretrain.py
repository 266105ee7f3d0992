"""Pretraining the grid base model (Eq. 5) on expert episodes generated on the training device.

Each step draws ``batch_size`` fresh episodes from the batched env and the DP expert (no data loader,
no dataset on disk: the paper does not give a dataset size, and fresh episodes cannot be overfitted),
rebuilds their observations from layouts and agent cells, and takes one AdamW step. The world
(``cfg.world``: ``grid7`` or ``grid5``) is recorded in the model's config. On CUDA the step runs under bf16
autocast with fused AdamW; on a CPU with native bf16 (AVX-512 BF16 or AMX) under CPU bf16 autocast, which is
1.5× faster there (BENCHMARKS.md), else in fp32 (``precision`` chooses; weights and optimizer stay fp32).

The run directory holds ``metrics.jsonl`` (``losses/action_nll``, ``losses/obs_nll``,
``charts/action_acc``, ``eval/action_acc``, ``charts/episodes``, ``charts/SPS``) and
``checkpoints/last`` (weights, optimizer moments and RNG state) from which an interrupted run resumes
and continues the same curve.

Data-parallel (``torchrun --nproc-per-node N -m irl_core pretrain ...``, see ``irl_core.distributed``): the
model is wrapped in ``DistributedDataParallel``; each of the N processes draws ``batch_size / N`` of every
step's episodes from its own seed stream, and weights its loss by its share of the *whole* step's valid
steps (times N, as DDP averages gradients), so the step's gradient is the one a single process would get
over all N shares' episodes (tested). ``batch_size`` stays the global batch, so a preset means the same
optimisation on any number of processes, and ``chunks`` the global number of micro-batches (each process
takes ``chunks / N`` of them: micro-batches as large as on one process, which is what makes 2 processes
1.7× faster than one on this 2-core machine, BENCHMARKS.md). Rank 0 evaluates and writes the run; the checkpoint keeps every
rank's generator (``rng.env``, ``rng.env1``, ...), so a resumed run continues every stream; resumed with
more processes than it was saved with, the new ranks start their streams afresh.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from irl_core.checkpoints import (CheckpointError, atomic_write_json, load_checkpoint, load_state_into,
                                  resume_training, save_checkpoint, training_state)
from irl_core.config import PretrainConfig
from irl_core.data import expert_episodes, training_tensors
from irl_core.device import resolve_device
from irl_core.distributed import DataParallel, rank_seed
from irl_core.machine import cpu_has_native_bf16, describe_machine
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.models.transformer import KIND, GridTransformer, TransformerConfig, pretrain_loss
from irl_core.runs import Run


def learning_rate(cfg: PretrainConfig, step: int) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, frac)))


def autocast_for(precision: str, device: torch.device):
    """The autocast context of ``precision`` (fp32, bf16 or auto, see the module docstring) on ``device``."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}; choose auto, fp32 or bf16")
    bf16 = precision == "bf16" or (precision == "auto" and (device.type == "cuda" or cpu_has_native_bf16()))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def accumulate_gradients(model: GridTransformer, episodes: dict[str, torch.Tensor], cfg: PretrainConfig,
                         amp, ddp: DistributedDataParallel | None = None, total: float | None = None,
                         processes: int = 1) -> dict[str, float]:
    """Eq. 5 on one batch of episodes, back-propagated in ``cfg.chunks`` length-sorted micro-batches.

    Each micro-batch is trimmed to its own longest episode, so less compute goes to padding (episodes of
    the pretraining tasks are 31 steps on average but a batch of 128 pads them to ~55). Every chunk's
    per-step mean loss is weighted by its share of the batch's valid steps, so the accumulated gradient
    is the gradient of the whole batch's loss (the test compares the two). Returns the batch's metrics.

    Data-parallel: ``ddp`` wraps ``model`` (gradients are all-reduced on the last chunk only), ``total`` is
    the valid steps of every process's batch together and ``processes`` their number, so that the averaged
    gradient is the one of all the processes' episodes as one batch; the metrics are this process's part
    of the whole batch's (sum them over processes).
    """
    order = torch.argsort(episodes["length"])
    total = float(episodes["length"].sum()) if total is None else float(total)
    if total == 0:
        raise RuntimeError("the batch holds no steps (batch size 0?)")
    sums = {"action_nll": 0.0, "obs_nll": 0.0, "action_acc": 0.0}
    parts = [p for p in torch.tensor_split(order, max(1, min(cfg.chunks, len(order)))) if len(p)]
    for i, part in enumerate(parts):
        with torch.no_grad():
            obs, actions = training_tensors({k: v[part] for k, v in episodes.items()}, model.world)
        share = float((actions >= 0).sum()) / total
        sync = ddp.no_sync() if ddp is not None and i < len(parts) - 1 else nullcontext()
        with sync:
            with amp:
                loss, m = pretrain_loss(ddp or model, obs, actions, cfg.obs_coef)
            (loss * (share * processes)).backward()
        for k in sums:
            sums[k] += float(m[k]) * share
    return sums


def _optimizer(model: torch.nn.Module, cfg: PretrainConfig, device: torch.device) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay,
                             fused=device.type == "cuda")


def initialise_from(model: GridTransformer, cfg: PretrainConfig) -> int:
    """Copy the weights of checkpoint ``cfg.init_from`` into ``model``; returns the episodes it was trained on.

    The checkpoint's architecture must be the one ``cfg`` describes (a clear error otherwise), so that a
    run can extend a shipped model's training with a new schedule; the optimizer starts afresh.
    """
    state, config, meta = load_checkpoint(cfg.init_from, KIND)
    wanted = model.config_dict()
    diff = sorted(k for k in wanted if config.get(k) != wanted[k])
    if diff:
        raise CheckpointError(f"{cfg.init_from}: its architecture differs from this preset's in "
                              + ", ".join(f"{k} ({config.get(k)} vs {wanted[k]})" for k in diff))
    load_state_into(model, state, cfg.init_from)  # load_state_dict copies onto the model's device
    return int(meta.get("episodes", 0))


@torch.no_grad()
def evaluate(model: GridTransformer, episodes: dict[str, torch.Tensor], batch: int = 256) -> dict[str, float]:
    """Per-step action accuracy and NLL of ``model`` on a fixed set of episodes."""
    model.eval()
    correct = nll = n = 0.0
    N = episodes["length"].shape[0]
    for i in range(0, N, batch):
        part = {k: v[i:i + batch] for k, v in episodes.items()}
        obs, actions = training_tensors(part, model.world)
        logits, _ = model(obs[:, :-1])
        mask = actions >= 0
        lp = torch.log_softmax(logits[mask].float(), -1)
        correct += float((lp.argmax(-1) == actions[mask]).sum())
        nll += float(-lp.gather(1, actions[mask].view(-1, 1)).sum())
        n += float(mask.sum())
    model.train()
    return {"action_acc": correct / n, "action_nll": nll / n}


class _SavedGenerator:
    """Another process's generator state, for ``training_state`` on the process that writes the checkpoint."""

    def __init__(self, state: torch.Tensor):
        self.state = state

    def get_state(self) -> torch.Tensor:
        return self.state


def _generators(env: BatchedGridPinpad, dp: DataParallel) -> dict:
    """Every process's episode generator by checkpoint name (a collective; the dict matters on rank 0 only)."""
    states = dp.gather(env.generator.get_state())
    return {"env": env.generator, **{f"env{r}": _SavedGenerator(st) for r, st in enumerate(states) if r}}


def train(cfg: PretrainConfig, run: Run, device: str | torch.device = "cpu", seed: int = 0,
          progress: bool = True, stop_at: int | None = None, dp: DataParallel | None = None) -> GridTransformer:
    """Train (or resume) a base model in ``run``; returns the trained model.

    ``stop_at`` checkpoints and stops early at that step (status ``cancelled``); running the same
    command again resumes from there and continues the same curve. ``dp``: this process's place in a
    data-parallel run (``irl_core.distributed``; every process calls ``train``, rank 0 with the run, the
    others with a ``ReadOnlyRun`` of it).
    """
    dp = dp or DataParallel()
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model = GridTransformer(cfg.model_config()).to(dev)
    init_episodes = initialise_from(model, cfg) if cfg.init_from else 0
    opt = _optimizer(model, cfg, dev)
    env = BatchedGridPinpad(dp.share(cfg.batch_size), cfg.tasks, dev, seed=rank_seed(seed, dp.rank), world=cfg.world)
    eval_set = None
    if dp.main:
        eval_env = BatchedGridPinpad(cfg.eval_episodes, cfg.tasks, dev, seed=seed + 7919, world=cfg.world)
        eval_set = expert_episodes(eval_env, 0.0)
    last = run.checkpoint_dir / "last"
    step = 0
    own = "env" if dp.main else f"env{dp.rank}"
    resumed = resume_training(last, "grid-pretrain-state", cfg.to_dict(), {"model": model}, opt, {own: env.generator},
                              optional=() if dp.main else (own,))
    if resumed:
        step = int(resumed["step"])
        run.truncate_metrics(step)
    ddp = DistributedDataParallel(model, find_unused_parameters=cfg.obs_coef == 0) if dp.world > 1 else None
    run.write_config({"stage": "pretrain", "seed": seed, "device": str(dev), "processes": dp.world, **cfg.to_dict()})
    run.set_status("running", device=str(dev), step=step)
    amp = autocast_for(cfg.precision, dev)
    share_cfg = replace(cfg, chunks=max(1, cfg.chunks // dp.world))  # micro-batches as large as on one process
    episodes_seen = init_episodes + step * cfg.batch_size

    def save() -> None:
        generators = _generators(env, dp)
        if dp.main:
            save_checkpoint(last, training_state({"model": model}, opt, generators), "grid-pretrain-state",
                            cfg.to_dict(), {"step": step, "episodes": episodes_seen, "processes": dp.world})

    t0, s0 = time.time(), step
    bar = tqdm(total=cfg.steps, initial=step, desc="pretrain", unit="step", disable=not (progress and dp.main))
    with run.recording(lambda: step), bar:
        while step < cfg.steps:
            if stop_at is not None and step >= stop_at:
                save()
                run.set_status("cancelled", step=step, note="stopped early; run the same command to resume")
                return model
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            with torch.no_grad():
                batch = expert_episodes(env, cfg.epsilon)
            opt.zero_grad(set_to_none=True)
            total = dp.sum({"steps": float(batch["length"].sum())}, dev)["steps"]
            m = accumulate_gradients(model, batch, share_cfg, amp, ddp, total, dp.world)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            episodes_seen += cfg.batch_size
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                m = dp.sum(m, dev)
                sps = (step - s0) / max(1e-9, time.time() - t0)
                row = {"losses/action_nll": float(m["action_nll"]), "losses/obs_nll": float(m["obs_nll"]),
                       "charts/action_acc": float(m["action_acc"]), "charts/episodes": episodes_seen,
                       "charts/SPS": sps, "charts/episodes_per_s": sps * cfg.batch_size,
                       "charts/learning_rate": learning_rate(cfg, step - 1)}
                if dp.main and (step % cfg.eval_every == 0 or step == cfg.steps):
                    ev = evaluate(model, eval_set)
                    row.update({"eval/action_acc": ev["action_acc"], "eval/action_nll": ev["action_nll"]})
                    bar.set_postfix(acc=f"{ev['action_acc']:.3f}")
                run.log(step, **row)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save()
                run.set_status("running", step=step)
            if dp.main and cfg.snapshot_every and step % cfg.snapshot_every == 0:
                save_checkpoint(run.checkpoint_dir / f"step{step}", model.state_dict(), KIND, model.config_dict(),
                                {"steps": step, "episodes": episodes_seen, "pretrain_config": cfg.to_dict()})
    run.set_status("done", step=step)
    return model


def export(model: GridTransformer, path: str | Path, run: Run, cfg: PretrainConfig, seed: int, command: str) -> Path:
    """Save the trained model as a shipped checkpoint with where and how it was made."""
    metrics = run.metrics()
    evals = [r for r in metrics if "eval/action_acc" in r]
    steps = int((run.status() or {}).get("step", cfg.steps))
    episodes = next((r["charts/episodes"] for r in reversed(metrics) if "charts/episodes" in r), steps * cfg.batch_size)
    meta = {"steps": steps, "episodes": int(episodes), "seed": seed, "command": command,
            "machine": describe_machine(),
            "device": str(next(model.parameters()).device), "pretrain_config": cfg.to_dict(),
            "final_eval_action_acc": evals[-1]["eval/action_acc"] if evals else None}
    out = save_checkpoint(path, model.state_dict(), KIND, model.config_dict(), meta)
    curve = [{k: r[k] for k in r if k in ("step", "charts/episodes", "losses/action_nll", "charts/action_acc",
                                             "eval/action_acc", "eval/action_nll", "charts/SPS")} for r in metrics]
    atomic_write_json(Path(path).parent / "reports" / "pretrain_curve.json", {"meta": meta, "curve": curve})
    return out


def load_base_model(path: str | Path, device: str | torch.device = "cpu") -> GridTransformer:
    """Load a shipped base model; refuses a file of another kind or with mismatched shapes."""
    state, config, _ = load_checkpoint(path, KIND)
    try:
        model = GridTransformer(TransformerConfig(**config))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model config ({e})") from None
    load_state_into(model, state, f"{Path(path).with_suffix('')}.safetensors")
    return model.to(resolve_device(device)).eval()


