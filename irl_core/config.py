"""Typed configs, one per stage, with the presets ``tiny`` (tests, seconds), ``cpu`` (the shipped
checkpoints, trainable on a 2-core machine) and ``paper`` (the paper's tables)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from irl_core.models.transformer import TransformerConfig


@dataclass
class PretrainConfig:
    """Pretraining of the grid base model on expert episodes (Eq. 5)."""

    # architecture (Table A4 for the paper preset)
    d_model: int = 128
    n_layers: int = 6
    n_heads: int = 4
    d_mlp: int = 256
    init_scale: float = 0.1
    encoder: str = "agent_centred"
    # data: fresh expert episodes generated on the training device each step
    world: str = "grid7"          # grid7 (the paper's 7×7) or grid5 (the laptop 5×5), irl_core.envs.worlds
    tasks: str = "pretrain"
    epsilon: float = 0.0          # expert noise of D (the paper's default is 0)
    obs_coef: float = 0.01        # λ, weight of the next-observation loss
    init_from: str | None = None  # start from this base-model checkpoint's weights (fresh optimizer)
    # optimisation (AdamW, betas (0.9, 0.999))
    steps: int = 3000
    batch_size: int = 128         # episodes per step
    lr: float = 1e-3
    min_lr: float = 1e-4          # end of the cosine decay ("constant" ignores it)
    schedule: str = "cosine"      # "constant" (the paper) or "cosine" (with warm-up)
    warmup_steps: int = 100
    weight_decay: float = 0.03
    grad_clip: float = 1.0
    chunks: int = 1               # length-sorted micro-batches per step (same gradient, less padding)
    precision: str = "auto"       # "fp32", "bf16" (autocast) or "auto": bf16 on CUDA and on CPUs with native bf16
    # bookkeeping
    log_every: int = 25
    eval_every: int = 500
    eval_episodes: int = 512
    checkpoint_every: int = 250
    snapshot_every: int = 0       # also keep the weights every N steps as checkpoints/step<N> (0: never)

    def model_config(self) -> TransformerConfig:
        return TransformerConfig(d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                                 d_mlp=self.d_mlp, init_scale=self.init_scale, encoder=self.encoder, world=self.world)

    def to_dict(self) -> dict:
        return asdict(self)


PRETRAIN_PRESETS: dict[str, PretrainConfig] = {
    # tiny: fp32, because bf16 kernels on matrices this small are slower than fp32 ones (and tests stay exact)
    "tiny": PretrainConfig(d_model=32, n_layers=2, n_heads=2, d_mlp=64, steps=20, batch_size=16, warmup_steps=2,
                           log_every=5, eval_every=10, eval_episodes=32, checkpoint_every=10, precision="fp32"),
    "cpu": PretrainConfig(chunks=8),
    "paper": PretrainConfig(d_model=256, n_layers=6, n_heads=4, d_mlp=512, steps=256_000, batch_size=1024, lr=3e-4,
                            schedule="constant", warmup_steps=0, log_every=100, eval_every=4000,
                            checkpoint_every=2000),
}


def preset(presets: dict, name: str, **overrides):
    """A copy of preset ``name`` with the non-None ``overrides`` applied; clear error for unknown names."""
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
    known = {f.name for f in fields(presets[name])}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}")
    return replace(presets[name], **{k: v for k, v in overrides.items() if v is not None})
