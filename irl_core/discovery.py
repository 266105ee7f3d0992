"""Unsupervised discovery of abstract actions: metacontroller training, its metrics and its switching export.

Training (docs/paper.md §5.2–5.3): each step draws ``batch_size`` fresh D* episodes (ε = 0 expert, pretraining
tasks), runs the base model's lower blocks to layer l (no gradient for the ``frozen`` variants), the
metacontroller, and the upper blocks on ê, and takes one AdamW step on Eq. 3 (λ = 0). Variants:

* ``frozen``: the paper's method, base model loaded and frozen (its parameters never change);
* ``beta1``: the same with β ≡ 1 ("internal RL without temporal integration" baseline);
* ``cotrained``: §5.5 — a base model of the same architecture, **randomly initialised** (grid), trained
  jointly with the metacontroller on Eq. 3 alone.

Metrics in the run directory (``metrics.jsonl``): ``losses/action_nll`` (distortion, per valid step),
``losses/kl`` (rate, per valid step), ``losses/loss``, ``charts/switches`` (mean number of steps with
β > 0.5 per episode), and every ``eval_every`` steps the same on held-out D* episodes with the switching
alignment: ``eval/precision``, ``eval/recall``, ``eval/f1``, ``eval/binary_fraction``. The final numbers go
to ``result.json`` (``rate`` and ``distortion`` are per valid step of held-out D*, computed deterministically
with z̃ = μ; multiply by ``mean_length`` for per-episode sums) and the trained metacontroller to
``checkpoints/metacontroller`` (kind ``"metacontroller"``). ``checkpoints/last`` holds the full training
state (weights, AdamW moments, data and noise generators) from which an interrupted run resumes.

Switching alignment: :func:`irl_core.switching.switch_alignment`.

One module (about 440 lines): the metacontroller's training loop with the metrics it logs and the
export of its switching, which read the same inference (the α sweep's scheduling is in ``irl_core.sweeps``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from irl_core.config import preset
from irl_core.checkpoints import (CheckpointError, atomic_write_json, load_checkpoint, load_state_into,
                                  read_json, save_checkpoint, start_or_resume, training_state)
from irl_core.controllers import default_layer, freeze, lower, sequence_nll, upper_logits
from irl_core.data import expert_episodes, heldout_episodes, training_tensors, trim
from irl_core.device import resolve_device
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.experts.grid_expert import TIES
from irl_core.metacontroller import KIND, MetaController, MetaControllerConfig
from irl_core.models.transformer import GridTransformer, TransformerConfig
from irl_core.paths import repo_relative
from irl_core.runs import Run
from irl_core.switching import SWITCHING_METRICS, switch_alignment

VARIANTS = ("frozen", "beta1", "cotrained")
PAPER_ALPHAS = (0.0, 0.05, 0.1, 0.17, 0.3, 0.5, 1.0)


@dataclass
class DiscoveryConfig:
    """One metacontroller training run (Table A9 for the ``paper`` preset)."""

    alpha: float = 0.1            # KL strength α of Eq. 3
    variant: str = "frozen"       # "frozen", "beta1" (β ≡ 1) or "cotrained" (§5.5)
    layer: int | None = None      # controlled layer; None = L/2
    # architecture (Table A9)
    n_z: int = 8
    enc_hidden: int = 64
    dec_hidden: int = 32
    n_h: int = 32
    n_s: int = 32
    n_switch: int = 32
    emb_layers: int = 1
    emb_readout: str = "pooled"   # sequence embedding read out pooled (one s) or per step (s_t); not in the paper
    rank: int = 16                # rank of U (0 = full)
    gumbel: bool = False          # Gumbel-Sigmoid β in training (the paper: grid rate–distortion only)
    gumbel_temperature: float = 1.0
    switch_bias: float = 0.0      # initial β-head bias (0 → β ≈ 0.5); not in the paper
    decoder_init_std: float = 0.0  # 0 = LoRA-style decoder init (U(z) = 0 at the start); not in the paper
    # data and optimisation
    tasks: str = "pretrain"       # tasks of D* (fresh ε = 0 expert episodes every step)
    dstar_ties: str = "random"    # D* expert's tie-breaking: "random" (the paper's) or "first" (deterministic)
    steps: int = 64_000
    batch_size: int = 512         # episodes per step
    lr: float = 1e-3
    alpha_warmup: int = 0         # steps of a linear ramp of α from 0 (0 = constant α, the paper); not in the paper
    weight_decay: float = 0.03
    grad_clip: float = 1.0        # not in the paper; guards against rare spikes
    # bookkeeping
    log_every: int = 50
    eval_every: int = 1000
    eval_episodes: int = 512      # held-out D* episodes for eval/* and result.json
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {list(VARIANTS)}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {self.alpha}")
        if self.dstar_ties not in TIES:
            raise ValueError(f"dstar_ties must be one of {list(TIES)}, got {self.dstar_ties!r}")
        if self.alpha_warmup < 0:
            raise ValueError(f"alpha_warmup must be non-negative, got {self.alpha_warmup}")

    def alpha_at(self, step: int) -> float:
        """α of Eq. 3 at training step ``step`` (0-based): constant, or ramped over ``alpha_warmup`` steps."""
        if self.alpha_warmup <= 0:
            return self.alpha
        return self.alpha * min(1.0, (step + 1) / self.alpha_warmup)

    def meta_config(self, d_model: int) -> MetaControllerConfig:
        return MetaControllerConfig(d_model=d_model, n_z=self.n_z, enc_hidden=self.enc_hidden, dec_hidden=self.dec_hidden,
                                    n_h=self.n_h, n_s=self.n_s, n_switch=self.n_switch, emb_layers=self.emb_layers,
                                    emb_readout=self.emb_readout,
                                    rank=self.rank, force_beta_one=self.variant == "beta1", gumbel=self.gumbel,
                                    gumbel_temperature=self.gumbel_temperature, switch_bias=self.switch_bias,
                                    decoder_init_std=self.decoder_init_std)

    def to_dict(self) -> dict:
        return asdict(self)


DISCOVERY_PRESETS: dict[str, DiscoveryConfig] = {
    "tiny": DiscoveryConfig(steps=6, batch_size=8, log_every=2, eval_every=3, eval_episodes=16, checkpoint_every=3),
    "cpu": DiscoveryConfig(steps=3000, batch_size=128, log_every=25, eval_every=250, eval_episodes=512,
                           checkpoint_every=250),
    "paper": DiscoveryConfig(),
}


def discovery_preset(name: str, **overrides) -> DiscoveryConfig:
    return preset(DISCOVERY_PRESETS, name, **overrides)


# --- base model / metacontroller construction ---------------------------------------------------------
def make_models(base: GridTransformer, cfg: DiscoveryConfig, seed: int) -> tuple[GridTransformer, MetaController, int]:
    """(base model to use, metacontroller, layer) for ``cfg.variant``; co-training re-initialises the base."""
    dev = next(base.parameters()).device
    layer = default_layer(base, cfg.layer)
    torch.manual_seed(seed)
    if cfg.variant == "cotrained":
        model = GridTransformer(base.cfg).to(dev).train()
    else:
        model = freeze(base)
    meta = MetaController(cfg.meta_config(base.cfg.d_model)).to(dev)
    return model, meta, layer


def metacontroller_loss(model: GridTransformer, meta: MetaController, layer: int, episodes: dict[str, torch.Tensor],
                        alpha: float, frozen: bool = True, sample: bool = True,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], object]:
    """Eq. 3 on a batch of episodes: (loss, detached metrics, :class:`MetaOutput`)."""
    ep = trim(episodes)
    obs, actions = training_tensors(ep, model.world)
    mask = actions >= 0  # (B, T)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
        e = lower(model, obs[:, :-1], layer)  # (B, T, d)
    out = meta(e, mask, sample=sample, generator=generator)
    nll, _ = sequence_nll(upper_logits(model, out.e_hat, layer), actions)  # (B, T)
    n = mask.sum().clamp_min(1)
    nll_mean = nll.sum() / n
    kl_mean = (out.kl * mask).sum() / n
    loss = nll_mean + alpha * kl_mean
    switches = ((out.beta > 0.5) & mask).sum(1).float().mean()
    beta_mean = (out.beta * mask).sum() / n
    return loss, {"action_nll": nll_mean.detach(), "kl": kl_mean.detach(), "switches": switches.detach(),
                  "beta_mean": beta_mean.detach()}, out


@torch.no_grad()
def infer(model: GridTransformer, meta: MetaController, layer: int, episodes: dict[str, torch.Tensor],
          batch: int = 256) -> dict[str, np.ndarray | float]:
    """Deterministic pass (z̃ = μ, no Gumbel noise) on episodes: β, integrated codes z, labels, lengths, mean NLL
    and KL per step."""
    was = meta.training, model.training
    meta.eval(), model.eval()
    T = int(episodes["length"].max())
    betas, codes, nll_sum, kl_sum, n = [], [], 0.0, 0.0, 0
    for i in range(0, episodes["length"].shape[0], batch):
        part = {k: v[i:i + batch] for k, v in episodes.items()}
        obs, actions = training_tensors(part, model.world, T)
        mask = actions >= 0
        out = meta(lower(model, obs[:, :-1], layer), mask, sample=False)
        nll, _ = sequence_nll(upper_logits(model, out.e_hat, layer), actions)
        betas.append((out.beta * mask).float().cpu())
        codes.append(out.z.float().cpu())
        nll_sum += float(nll.sum())
        kl_sum += float((out.kl * mask).sum())
        n += int(mask.sum())
    meta.train(was[0]), model.train(was[1])
    return {"beta": torch.cat(betas).numpy().astype(np.float32), "z": torch.cat(codes).numpy().astype(np.float32),
            "subgoal": episodes["subgoal"][:, :T].cpu().numpy().astype(np.int8),
            "length": episodes["length"].cpu().numpy().astype(np.int64),
            "action_nll": nll_sum / max(1, n), "kl": max(0.0, kl_sum / max(1, n))}  # a KL ≥ 0 (rounding gave −1e-8)


def segments(beta: np.ndarray, length: int, threshold: float = 0.5) -> list[tuple[int, int]]:
    """Maximal runs of steps between switches: ``[(first, last)]`` (inclusive) over the ``length`` valid steps."""
    starts = [0] + [t for t in range(1, length) if beta[t] > threshold]
    ends = [s - 1 for s in starts[1:]] + [length - 1]
    return list(zip(starts, ends))


def centroid_accuracy(codes: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of labelled codes nearer to their own subgoal's mean code than to any other (in R^{n_z})."""
    ok = labels >= 0
    codes, labels = codes[ok], labels[ok]
    classes = np.unique(labels)
    if len(classes) < 2:
        return float("nan")
    cents = np.stack([codes[labels == c].mean(0) for c in classes])
    pred = classes[((codes[:, None, :] - cents[None]) ** 2).sum(-1).argmin(1)]
    return float((pred == labels).mean())


def segment_ends(beta: np.ndarray, z: np.ndarray, subgoal: np.ndarray, length: np.ndarray,
                 threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every labelled segment (steps between switches): ``(code at its last step (S, n_z), majority subgoal (S,),
    episode (S,), first step (S,))``."""
    codes, labels, episode, start = [], [], [], []
    for i, (b, zz, g, n) in enumerate(zip(beta, z, subgoal, length)):
        for first, last in segments(b, int(n), threshold):
            lab = g[first:last + 1]
            lab = lab[lab >= 0]
            if len(lab):
                codes.append(zz[last])
                labels.append(int(np.bincount(lab).argmax()))
                episode.append(i)
                start.append(first)
    return (np.asarray(codes, dtype=np.float64).reshape(-1, z.shape[-1]), np.asarray(labels, dtype=np.int64),
            np.asarray(episode, dtype=np.int64), np.asarray(start, dtype=np.int64))


def code_accuracy(beta: np.ndarray, z: np.ndarray, subgoal: np.ndarray, length: np.ndarray,
                  threshold: float = 0.5) -> float:
    """Do the codes name the subgoal? Nearest-centroid accuracy (in R^{n_z}) of the code at the last step of
    every segment (steps between switches) against the segment's majority subgoal; NaN with < 2 subgoals."""
    codes, labels, _, _ = segment_ends(beta, z, subgoal, length, threshold)
    return centroid_accuracy(codes, labels) if len(codes) else float("nan")


def code_diagnosis(model: GridTransformer, meta: MetaController, layer: int, episodes: dict[str, torch.Tensor],
                   threshold: float = 0.5) -> dict:
    """What the segment codes carry. For the code at the last step of every segment (steps between switches):
    ``dims_used`` (dimensions whose standard deviation over segments exceeds 0.05), ``code_std`` per
    dimension, and 3-fold cross-validated logistic-regression accuracy of the segment's majority
    ``subgoal`` and of its ``first_action`` from the code, with the majority-class rates as chance levels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    r = infer(model, meta, layer, episodes)
    codes, subgoal, episode, first = segment_ends(r["beta"], r["z"], r["subgoal"], r["length"], threshold)
    first_action = episodes["actions"].cpu().numpy()[episode, first]
    std = codes.std(0) if len(codes) else np.zeros(meta.cfg.n_z)
    out = {"segments": int(len(codes)), "dims_used": int((std > 0.05).sum()), "code_std": np.round(std, 4).tolist()}
    for name, y in (("subgoal", subgoal), ("first_action", first_action.astype(np.int64))):
        counts = np.bincount(y) if len(y) else np.zeros(1)
        chance = float(counts.max() / max(1, len(y)))
        ok = len(y) >= 30 and (counts >= 3).sum() >= 2 and std.sum() > 0
        acc = float(cross_val_score(LogisticRegression(max_iter=2000), codes, y, cv=3).mean()) if ok else float("nan")
        out[f"{name}_accuracy"], out[f"{name}_chance"] = acc, chance
    return out


def evaluate(model: GridTransformer, meta: MetaController, layer: int, episodes: dict[str, torch.Tensor]) -> dict[str, float]:
    """Rate, distortion, switches, alignment and code accuracy on held-out episodes."""
    r = infer(model, meta, layer, episodes)
    return {"action_nll": r["action_nll"], "kl": r["kl"], **switch_alignment(r["beta"], r["subgoal"], r["length"]),
            "code_accuracy": code_accuracy(r["beta"], r["z"], r["subgoal"], r["length"])}


# --- checkpoints --------------------------------------------------------------------------------------
def save_metacontroller(path, meta: MetaController, model: GridTransformer, layer: int, cfg: DiscoveryConfig,
                        info: dict) -> Path:
    """Weights of the metacontroller (and of the base model when co-trained) + config and provenance."""
    state = {f"meta.{k}": v for k, v in meta.state_dict().items()}
    if cfg.variant == "cotrained":
        state.update({f"base.{k}": v for k, v in model.state_dict().items()})
    config = {"meta": meta.config_dict(), "layer": layer, "variant": cfg.variant, "base_config": model.config_dict()}
    return save_checkpoint(path, state, KIND, config, {"discovery_config": cfg.to_dict(), **info})


def load_metacontroller(path, device="cpu", base: str | Path | None = None) -> tuple[MetaController, GridTransformer, int, dict]:
    """Load ``(metacontroller, base model, layer, meta)``; a frozen variant loads its base model from ``base``
    or from the checkpoint's recorded ``base_checkpoint``. Any mismatch raises :class:`CheckpointError`."""
    from irl_core.pretrain import load_base_model
    dev = resolve_device(device)
    state, config, info = load_checkpoint(path, KIND)
    weights = f"{Path(path).with_suffix('')}.safetensors"
    try:
        meta = MetaController(MetaControllerConfig(**config["meta"]))
        layer, variant, base_cfg = int(config["layer"]), config["variant"], TransformerConfig(**config["base_config"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: invalid metacontroller config ({type(e).__name__}: {e})") from None
    load_state_into(meta, {k[5:]: v for k, v in state.items() if k.startswith("meta.")}, weights)
    if variant == "cotrained":
        model = GridTransformer(base_cfg)
        load_state_into(model, {k[5:]: v for k, v in state.items() if k.startswith("base.")}, weights)
    else:
        base = base or info.get("base_checkpoint")
        if not base:
            raise CheckpointError(f"{path}: no base model recorded; pass --base")
        model = load_base_model(base, dev)
        if model.cfg.d_model != meta.cfg.d_model or model.n_layers != base_cfg.n_layers:
            raise CheckpointError(f"{path}: trained on a base model with d_model={meta.cfg.d_model}, "
                                  f"{base_cfg.n_layers} layers; {base} has d_model={model.cfg.d_model}, {model.n_layers} layers")
    return meta.to(dev).eval(), freeze(model.to(dev)), layer, info


def metacontroller_at(run_dir, base: GridTransformer) -> tuple[MetaController, GridTransformer, int, DiscoveryConfig, int]:
    """The metacontroller of a discovery run as of its latest resumable checkpoint (finished or not):
    ``(metacontroller, base model (co-trained: its own), layer, config, step)``, in eval mode."""
    run_dir = Path(run_dir)
    full = read_json(run_dir / "config.json")
    known = DiscoveryConfig.__dataclass_fields__
    cfg = DiscoveryConfig(**{k: v for k, v in full.items() if k in known})
    state, _, info = load_checkpoint(run_dir / "checkpoints" / "last", "metacontroller-state")
    model, meta, layer = make_models(base, cfg, int(full.get("seed", 0)))
    weights = run_dir / "checkpoints" / "last.safetensors"
    load_state_into(meta, {k[5:]: v for k, v in state.items() if k.startswith("meta.")}, weights)
    if cfg.variant == "cotrained":
        load_state_into(model, {k[5:]: v for k, v in state.items() if k.startswith("base.")}, weights)
    return meta.eval(), freeze(model), layer, cfg, int(info.get("step", 0))


# --- training -----------------------------------------------------------------------------------------
def train(base: GridTransformer, cfg: DiscoveryConfig, run: Run, seed: int = 0, progress: bool = True,
          base_checkpoint: str | None = None) -> dict:
    """Train (or resume from ``run``) one metacontroller; returns the final result (also in ``result.json``)."""
    dev = next(base.parameters()).device
    model, meta, layer = make_models(base, cfg, seed)
    frozen = cfg.variant != "cotrained"
    params = list(meta.parameters()) + ([] if frozen else list(model.parameters()))
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    env = BatchedGridPinpad(cfg.batch_size, cfg.tasks, dev, seed=seed, world=base.world)
    noise = torch.Generator(device=dev)
    noise.manual_seed(seed + 1)
    eval_set = heldout_episodes(cfg.eval_episodes, seed, base.world, dev, cfg.dstar_ties)
    modules = {"meta": meta} if frozen else {"meta": meta, "base": model}
    gens = {"env": env.generator, "noise": noise}
    full_cfg = {"stage": "discover", "seed": seed, "base_checkpoint": base_checkpoint, **cfg.to_dict(), "layer": layer}
    last = run.checkpoint_dir / "last"
    # a larger --steps continues a finished run: the learning rate is constant and only the α warm-up depends on
    # the step, so the longer run is the one that would have been trained from the start
    step = start_or_resume(run, "metacontroller-state", full_cfg, modules, opt, gens, dev, extendable=("steps",))
    t0, s0 = time.time(), step
    bar = tqdm(total=cfg.steps, initial=step, desc=f"discover α={cfg.alpha} {cfg.variant}", unit="step",
               disable=not progress)
    with run.recording(lambda: step), bar:
        while step < cfg.steps:
            with torch.no_grad():
                episodes = expert_episodes(env, 0.0, cfg.dstar_ties)
            loss, m, _ = metacontroller_loss(model, meta, layer, episodes, cfg.alpha_at(step), frozen, True, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step % cfg.eval_every == 0 or step == cfg.steps:
                row = {"losses/loss": loss.item(), "losses/action_nll": float(m["action_nll"]),
                       "losses/kl": float(m["kl"]), "charts/switches": float(m["switches"]),
                       "charts/beta_mean": float(m["beta_mean"]),
                       "charts/SPS": (step - s0) / max(1e-9, time.time() - t0)}
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    ev = evaluate(model, meta, layer, eval_set)
                    row.update({f"eval/{k}": v for k, v in ev.items()})
                    bar.set_postfix(nll=f"{ev['action_nll']:.3f}", kl=f"{ev['kl']:.2f}", f1=f"{ev['f1']:.2f}")
                run.log(step, **row)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(last, training_state(modules, opt, gens), "metacontroller-state", full_cfg, {"step": step})
                run.set_status("running", step=step)
        ev = evaluate(model, meta, layer, eval_set)
        result = {"alpha": cfg.alpha, "seed": seed, "variant": cfg.variant, "layer": layer, "steps": cfg.steps,
                  "rate": ev["kl"], "distortion": ev["action_nll"], **ev, "run_dir": str(run.path),
                  "base_checkpoint": base_checkpoint}
        save_metacontroller(run.checkpoint_dir / "metacontroller", meta, model, layer, cfg,
                            {"base_checkpoint": base_checkpoint, "seed": seed, "result": result})
        atomic_write_json(run.path / "result.json", result)
    run.set_status("done", step=step)
    return result


# --- switching export ---------------------------------------------------------------------------------


def export_switching(checkpoint, out, episodes: int = 200, seed: int = 0, device="cpu", base=None,
                     ties: str = "random") -> dict[str, float]:
    """Write docs/design.md's ``switching`` .npz on held-out D* episodes; returns the metrics.

    Keys: ``beta`` (N, T) float32, ``subgoal`` (N, T) int8, ``length`` (N,) int — docs/design.md's format — and,
    for the app's switching page, ``layout`` (N, G, G) int8, ``pos`` (N, T+1) int8 agent cells (−1 pad),
    ``task`` (N, 12) int8 (−1 pad), one float64 scalar per entry of :data:`SWITCHING_METRICS` (the
    alignment over all N episodes), ``checkpoint`` (str) and ``dstar_ties`` (str: the D* expert's tie-break,
    ``ties``: "random", the paper's, or "first").
    """
    if episodes <= 0:
        raise ValueError(f"the number of episodes must be positive, got {episodes}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {list(TIES)}, got {ties!r}")
    meta, model, layer, _ = load_metacontroller(checkpoint, device, base)
    ep = heldout_episodes(episodes, seed, model.world, resolve_device(device), ties)
    r = infer(model, meta, layer, ep)
    metrics = {"action_nll": r["action_nll"], "kl": r["kl"], **switch_alignment(r["beta"], r["subgoal"], r["length"])}
    T = r["beta"].shape[1]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, beta=r["beta"], subgoal=r["subgoal"], length=r["length"],
                        layout=ep["layout"].cpu().numpy().reshape(-1, model.world.size, model.world.size).astype(np.int8),
                        pos=ep["pos"][:, :T + 1].cpu().numpy().astype(np.int8),
                        task=ep["task"].cpu().numpy().astype(np.int8),
                        checkpoint=np.array(repo_relative(checkpoint)), dstar_ties=np.array(ties),
                        **{k: np.float64(metrics[k]) for k in SWITCHING_METRICS})
    return metrics
