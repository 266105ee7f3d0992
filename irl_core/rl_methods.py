"""Which learner each of Fig. 8's methods trains (docs/paper.md §6): internal RL over a frozen code module
(metacontroller, β ≡ 1, co-trained, CompILE; :mod:`irl_core.internal_rl`) or raw-action RL
(:mod:`irl_core.baselines.raw_action`). Kept apart from both so that imports flow one way."""
from __future__ import annotations

from irl_core.baselines.raw_action import RawActionLearner
from irl_core.internal_rl import (InternalLearner, InternalRLConfig, checkpoint_variant, check_variant, default_metacontroller,
                                  load_code_module, method_set)
from irl_core.pretrain import load_base_model


def make_learner(cfg: InternalRLConfig, device, seed: int, metacontroller=None, base=None, set_dir=None):
    """The learner of ``cfg.method`` with its frozen parts loaded from checkpoints (by default those of the
    checkpoint set ``set_dir``, itself by default the shipped ``grid5``)."""
    if cfg.method == "raw-action":
        base = base or method_set(set_dir) / "base"
        return RawActionLearner(load_base_model(base, device), cfg, device, seed)
    path = metacontroller or default_metacontroller(cfg.method, set_dir)
    meta, model, layer = load_code_module(path, device, base)
    check_variant(cfg.method, checkpoint_variant(path), path)
    return InternalLearner(model, meta, layer, cfg, device, seed)
