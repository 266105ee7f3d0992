"""Pretraining the ant base model (the Hawk SSM of ``irl_core.models.ant_ssm``) on a dataset D of expert
episodes (Eq. 5 with Gaussian actions and λ = 10), from an ``ant-data`` file.

Unlike the grid, whose episodes are generated fresh at every step, ant episodes cost MuJoCo time, so the model
trains on a fixed dataset (``python -m irl_core ant-data --episodes N --out D.npz``) in epochs: every step
takes ``batch_size`` training episodes of similar length (``EpisodeBank.training_ids``: seeded shuffling,
then sorting within pools of ``length_pool`` batches, so that padding to the longest costs little; a pure
function of the step, so a resumed run draws the same batches), and takes one AdamW step; the last ``val_fraction`` of the file's episodes are held
out for ``eval/action_nll``. Observations are standardised with the training episodes' statistics, which the
model keeps (``AntSSM.set_normaliser``).

The run directory is as for the grid (``irl_core.pretrain``): ``metrics.jsonl`` (``losses/action_nll``,
``losses/obs_nll``, ``losses/action_mse``, ``eval/action_nll``, ``eval/action_mse``, ``charts/episodes``,
``charts/SPS``), ``checkpoints/last`` (weights, AdamW moments) from which an interrupted
run resumes the same curve, and ``checkpoints/step<N>`` snapshots.

A step whose loss or gradient is not finite is skipped (no update; ``charts/skipped_steps`` counts them) so that
no NaN reaches the weights or a checkpoint; :data:`MAX_SKIPPED_IN_A_ROW` such steps in a row stop the run with a
one-line error naming them (README "Choices").
"""
from __future__ import annotations

from contextlib import nullcontext

import math
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from irl_core.ant_data import load_dataset
from irl_core.checkpoints import (CheckpointError, load_checkpoint, load_state_into, resume_training, save_checkpoint,
                                  training_state)
from irl_core.device import resolve_device
from irl_core.machine import describe_machine
from irl_core.models.ant_ssm import KIND, AntSSM, AntSSMConfig, ant_pretrain_loss
from irl_core.pretrain import autocast_for
from irl_core.runs import Run

STATE_KIND = "ant-pretrain-state"
LENGTH_POOL = 8  # batches sorted together by length (EpisodeBank.training_ids)
MAX_SKIPPED_IN_A_ROW = 20  # non-finite steps in a row that stop a run (one is a bad batch; twenty, a diverged model)


class TrainingDiverged(RuntimeError):
    """The loss or its gradient stayed non-finite for MAX_SKIPPED_IN_A_ROW steps in a row."""


@dataclass
class AntPretrainConfig:
    """The ant base model (Tables A5, A15) and its training."""

    d_model: int = 256
    n_layers: int = 8
    lru_width: int = 256
    n_heads: int = 8
    d_mlp: int = 512
    init_scale: float = 0.1
    obs_coef: float = 10.0       # λ
    steps: int = 204_800
    batch_size: int = 512        # episodes per step
    lr: float = 3e-4
    min_lr: float = 3e-4         # = lr: the paper's constant learning rate
    warmup_steps: int = 0
    weight_decay: float = 0.03
    grad_clip: float = 1.0
    val_fraction: float = 0.05
    log_every: int = 50
    eval_every: int = 500
    eval_episodes: int = 256     # held-out episodes of the file scored at each evaluation (at most)
    checkpoint_every: int = 250
    snapshot_every: int = 0
    precision: str = "auto"
    length_pool: int = LENGTH_POOL  # batches drawn from pools of this many batches sorted by length (1 = plain random)

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "lru_width", "n_heads", "d_mlp", "steps", "batch_size", "log_every",
                     "eval_every", "eval_episodes", "checkpoint_every", "length_pool"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    def model_config(self) -> AntSSMConfig:
        return AntSSMConfig(d_model=self.d_model, n_layers=self.n_layers, lru_width=self.lru_width,
                            n_heads=self.n_heads, d_mlp=self.d_mlp, init_scale=self.init_scale)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "tiny": AntPretrainConfig(d_model=32, n_layers=2, lru_width=32, n_heads=2, d_mlp=64, steps=20, batch_size=4,
                              log_every=5, eval_every=10, eval_episodes=8, checkpoint_every=10, precision="fp32"),
    # cpu: a quarter of the paper's width and half its depth (one core: ~1 s a step of 32 episodes in bf16);
    # a larger, decaying learning rate for its far fewer steps (BENCHMARKS.md "Ant base model")
    "cpu": AntPretrainConfig(d_model=128, n_layers=4, lru_width=128, n_heads=4, d_mlp=256, steps=3000, batch_size=32,
                             lr=1e-3, min_lr=1e-4, warmup_steps=100, log_every=25, eval_every=250,
                             checkpoint_every=100, snapshot_every=1000),
    "paper": AntPretrainConfig(),
}


def ant_preset(name: str, **overrides) -> AntPretrainConfig:
    """Preset ``name`` with the non-None ``overrides``; ValueError naming the choices for an unknown one."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    known = {f.name for f in fields(AntPretrainConfig)}
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None and k in known})


def learning_rate(cfg: AntPretrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


class EpisodeBank:
    """A dataset's episodes as tensors, split into training and held-out episodes, and padded batches of them."""

    def __init__(self, path: str | Path, val_fraction: float):
        data = load_dataset(path)
        self.path, self.meta = str(path), data["meta"]
        starts, lengths = data["episode_start"], data["length"]
        self.obs = [torch.from_numpy(data["obs"][s:s + n]) for s, n in zip(starts, lengths)]
        self.actions = [torch.from_numpy(data["actions"][s:s + n]) for s, n in zip(starts, lengths)]
        self.subgoal = [torch.from_numpy(data["subgoal"][s:s + n].astype(np.int64)) for s, n in zip(starts, lengths)]
        n = len(self.obs)
        if n < 2:
            raise ValueError(f"{path}: {n} episode(s); the ant base model needs at least 2 (one held out)")
        n_val = max(1, int(round(n * val_fraction)))
        self.train_ids, self.val_ids = list(range(n - n_val)), list(range(n - n_val, n))
        self._epoch, self._batches = None, []  # the epoch whose batches training_ids last cut
        train_obs = torch.cat([self.obs[i] for i in self.train_ids])
        self.obs_mean, self.obs_std = train_obs.mean(0), train_obs.std(0)

    def training_ids(self, step: int, batch_size: int, seed: int, pool: int) -> list[int]:
        """The training episodes of batch ``step``: a pure function of its arguments, so a resumed run draws the
        same batches without any saved sampler state.

        Each epoch is a seeded permutation of the training episodes, cut into pools of ``pool × batch_size``;
        each pool is sorted by length and cut into batches, and the epoch's batches are shuffled. Every
        episode is seen once per epoch, as with plain shuffling, but a batch holds episodes of similar length,
        so little of it is padding (``pool = 1``: plain random batches)."""
        n = len(self.train_ids)
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} training episodes of {self.path}")
        per_epoch = n // batch_size
        epoch, k = divmod(step, per_epoch)
        if self._epoch != (epoch, batch_size, seed, pool):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=gen)[:per_epoch * batch_size].tolist()
            batches = []
            for s in range(0, len(perm), pool * batch_size):
                chunk = sorted(perm[s:s + pool * batch_size], key=lambda i: len(self.obs[self.train_ids[i]]))
                batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
            order = torch.randperm(len(batches), generator=gen).tolist()
            self._epoch, self._batches = (epoch, batch_size, seed, pool), [batches[i] for i in order]
        return [self.train_ids[i] for i in self._batches[k]]

    def batch(self, ids, device) -> dict[str, torch.Tensor]:
        """Episodes ``ids`` padded to the longest: obs (B, T, 41), actions (B, T, 8), subgoal (B, T) (−1 = pad), length (B,)."""
        lengths = torch.tensor([len(self.obs[i]) for i in ids])
        T, B = int(lengths.max()), len(ids)
        obs = torch.zeros(B, T, self.obs[ids[0]].shape[1])
        actions = torch.zeros(B, T, self.actions[ids[0]].shape[1])
        subgoal = torch.full((B, T), -1, dtype=torch.long)
        for j, i in enumerate(ids):
            k = len(self.obs[i])
            obs[j, :k], actions[j, :k], subgoal[j, :k] = self.obs[i], self.actions[i], self.subgoal[i]
        return {"obs": obs.to(device), "actions": actions.to(device), "subgoal": subgoal.to(device),
                "length": lengths.to(device)}


@torch.no_grad()
def evaluate(model: AntSSM, bank: EpisodeBank, ids, obs_coef: float, batch: int = 32, control=None) -> dict[str, float]:
    """Per-step action NLL, action MSE and observation NLL on episodes ``ids`` (weighted by their steps).

    ``control(b)``, if given, returns a context manager the model runs under for batch ``b`` (e.g. hooks that
    steer it with the batch's subgoal labels: ``irl_core.ant_controllers.heldout_action_nll``)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    sums, total = {"action_nll": 0.0, "action_mse": 0.0, "obs_nll": 0.0}, 0
    for k in range(0, len(ids), batch):
        b = bank.batch(ids[k:k + batch], dev)
        with control(b) if control is not None else nullcontext():
            _, m = ant_pretrain_loss(model, b["obs"], b["actions"], b["length"], obs_coef)
        n = int(b["length"].sum())
        for key in sums:
            sums[key] += float(m[key]) * n
        total += n
    model.train(was_training)
    return {k: v / total for k, v in sums.items()}


def train(cfg: AntPretrainConfig, data: str | Path, run: Run, device: str | torch.device = "cpu", seed: int = 0,
          progress: bool = True, stop_at: int | None = None) -> AntSSM:
    """Train (or resume) the ant base model on dataset file ``data`` in ``run``; returns the model.

    ``stop_at`` checkpoints and stops at that step (status ``cancelled``); the same command resumes it."""
    dev = resolve_device(device)
    bank = EpisodeBank(data, cfg.val_fraction)
    torch.manual_seed(seed)
    model = AntSSM(cfg.model_config()).to(dev)
    model.set_normaliser(bank.obs_mean.to(dev), bank.obs_std.to(dev))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay,
                            fused=dev.type == "cuda")
    config = {**cfg.to_dict(), "data": str(data), "episodes": len(bank.obs)}
    last = run.checkpoint_dir / "last"
    run.claim()
    resumed = resume_training(last, STATE_KIND, config, {"model": model}, opt, {})
    step = int(resumed["step"]) if resumed else 0
    if resumed:
        run.truncate_metrics(step)
    run.write_config({"stage": "ant-pretrain", "seed": seed, "device": str(dev), **config})
    run.set_status("running", device=str(dev), step=step)
    amp = autocast_for(cfg.precision, dev)
    val_ids = bank.val_ids[:cfg.eval_episodes]
    warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")  # RMSNorm under bf16 autocast

    def save() -> None:
        save_checkpoint(last, training_state({"model": model}, opt, {}), STATE_KIND, config,
                        {"step": step, "episodes": step * cfg.batch_size})

    t0, s0, skipped, in_a_row = time.time(), step, 0, 0
    bar = tqdm(total=cfg.steps, initial=step, desc="ant-pretrain", unit="step", disable=not progress)
    with run.recording(lambda: step), bar:
        while step < cfg.steps:
            if stop_at is not None and step >= stop_at:
                save()
                run.set_status("cancelled", step=step, note="stopped early; run the same command to resume")
                return model
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            b = bank.batch(bank.training_ids(step, cfg.batch_size, seed, cfg.length_pool), dev)
            opt.zero_grad(set_to_none=True)
            with amp:
                loss, m = ant_pretrain_loss(model, b["obs"], b["actions"], b["length"], cfg.obs_coef)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if torch.isfinite(loss) and torch.isfinite(norm):
                opt.step()
                in_a_row = 0
            else:  # skip the update: one NaN in AdamW's moments would spread to every weight
                opt.zero_grad(set_to_none=True)
                skipped, in_a_row = skipped + 1, in_a_row + 1
                if in_a_row >= MAX_SKIPPED_IN_A_ROW:
                    raise TrainingDiverged(
                        f"the loss or its gradient was not finite for {in_a_row} steps in a row (steps "
                        f"{step + 2 - in_a_row}–{step + 1}): training stopped; those steps left the weights as "
                        "they were, so every checkpoint of the run holds finite weights")
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                sps = (step - s0) / max(1e-9, time.time() - t0)
                row = {f"losses/{k}": float(v) for k, v in m.items()}
                row.update({"charts/episodes": step * cfg.batch_size, "charts/SPS": sps, "charts/skipped_steps": skipped,
                            "charts/learning_rate": learning_rate(cfg, step - 1)})
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    with amp:
                        ev = evaluate(model, bank, val_ids, cfg.obs_coef)
                    row.update({f"eval/{k}": v for k, v in ev.items()})
                    bar.set_postfix(val_nll=f"{ev['action_nll']:.3f}")
                run.log(step, **row)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save()
                run.set_status("running", step=step)
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                save_checkpoint(run.checkpoint_dir / f"step{step}", model.state_dict(), KIND, model.config_dict(),
                                {"steps": step, "episodes": step * cfg.batch_size, "pretrain_config": config})
    run.set_status("done", step=step)
    return model


def export(model: AntSSM, path: str | Path, run: Run, cfg: AntPretrainConfig, seed: int, command: str) -> Path:
    """Save the trained model as a shipped checkpoint, with where and how it was made."""
    metrics = run.metrics()
    evals = [r for r in metrics if "eval/action_nll" in r]
    config = run.read_config()
    meta = {"steps": int((run.status() or {}).get("step", cfg.steps)), "seed": seed, "command": command,
            "machine": describe_machine(), "data": config.get("data"), "dataset_episodes": config.get("episodes"),
            "pretrain_config": cfg.to_dict(), "final_eval_action_nll": evals[-1]["eval/action_nll"] if evals else None}
    meta["episodes"] = meta["steps"] * cfg.batch_size
    return save_checkpoint(path, model.state_dict(), KIND, model.config_dict(), meta)


def load_ant_base(path: str | Path, device: str | torch.device = "cpu") -> AntSSM:
    """Load an ant base-model checkpoint (a clear error for another kind, mismatched shapes or non-finite weights)."""
    state, config, _ = load_checkpoint(path, KIND)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{Path(path).with_suffix('')}.safetensors: {len(bad)} weight tensors hold NaN or "
                              f"infinite values (e.g. {bad[0]}): the run had diverged when it was saved; use an "
                              "earlier snapshot")
    model = AntSSM(AntSSMConfig(**config))
    load_state_into(model, state, f"{Path(path).with_suffix('')}.safetensors")
    return model.to(resolve_device(device)).eval()
