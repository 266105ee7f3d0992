"""Which learner each of Fig. 8's methods trains (docs/paper.md §6), and the checkpoints it needs: internal RL
over a frozen code module (the metacontroller, β ≡ 1, co-trained, or CompILE's; :mod:`irl_core.rl.internal`)
or raw-action RL (:mod:`irl_core.rl.baselines.raw_action`). The one module of the package that knows every
method; nothing else in it imports this one."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from irl_core.checkpoints import CheckpointError, read_json
from irl_core.controllers import freeze
from irl_core.models.transformer import GridTransformer
from irl_core.paths import checkpoints_root
from irl_core.pretrain import load_base_model
from irl_core.rl.baselines.raw_action import RawActionLearner
from irl_core.rl.internal import InternalEnv, InternalLearner, collect_internal, load_policy
from irl_core.rl.ppo import InternalRLConfig, rl_preset

METACONTROLLER_FOR = {"internal-rl": "metacontroller", "beta1": "metacontroller_beta1",
                      "cotrained": "metacontroller_cotrained", "compile": "compile"}
VARIANT_FOR = {"internal-rl": "frozen", "beta1": "beta1", "cotrained": "cotrained", "compile": "compile"}
DEFAULT_SET = "grid5"  # the checkpoint set whose checkpoints a method uses unless told otherwise


def method_set(set_dir=None) -> Path:
    """The checkpoint set whose checkpoints a method uses: ``set_dir``, by default the shipped ``grid5``."""
    return Path(set_dir or checkpoints_root() / DEFAULT_SET)


def default_metacontroller(method: str, set_dir=None) -> Path:
    """The checkpoint that ``method`` uses in checkpoint set ``set_dir`` (default: the shipped ``grid5``)."""
    return method_set(set_dir) / METACONTROLLER_FOR[method]


def check_variant(method: str, info_variant: str, path) -> None:
    want = VARIANT_FOR[method]
    if info_variant != want:
        how = "compile" if want == "compile" else f"discover --variant {want}"
        raise CheckpointError(f"{path}: a {info_variant!r} checkpoint; method {method!r} needs a {want!r} one "
                              f"(python -m irl_core {how} ...)")


def load_code_module(path, device="cpu", base=None) -> tuple[nn.Module, GridTransformer, int]:
    """(frozen module that switches and decodes codes, base model, layer) of a metacontroller or CompILE checkpoint."""
    desc = read_json(Path(str(path)).with_suffix(".json"))
    if isinstance(desc, dict) and desc.get("kind") == "compile":
        from irl_core.rl.baselines.compile import CompILESwitcher, load_compile
        net, model, layer, _ = load_compile(path, device, base)
        return freeze(CompILESwitcher(net)), model, layer
    from irl_core.discovery import load_metacontroller
    meta, model, layer, _ = load_metacontroller(path, device, base)
    return freeze(meta), model, layer


def checkpoint_variant(path) -> str:
    """The variant a metacontroller or CompILE checkpoint records (frozen, beta1, cotrained, compile)."""
    return read_json(Path(str(path)).with_suffix(".json"))["config"]["variant"]


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


def policy_rollouts(path, episodes: int, seed: int = 0, device="cpu", greedy: bool = True, task: str | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Episodes of a trained internal-RL policy (for ``rollouts --policy internal-rl``): the tensors of
    :func:`irl_core.data.run_episodes`-style exports (layout, pos, task, actions, success, length)."""
    policy, config, info = load_policy(path, device)
    meta, model, layer = load_code_module(info["metacontroller"], device, info.get("base"))
    cfg = rl_preset("paper", method=config["method"], task=task or info.get("task", "heldout"))
    batch = min(episodes, 1024)
    ienv = InternalEnv(model, meta, layer, batch, cfg.task, device, seed, cfg.beta_threshold)
    g = torch.Generator(device=ienv.env.device)
    g.manual_seed(seed)
    parts = []
    while sum(len(p["success"]) for p in parts) < episodes:
        ro = collect_internal(ienv, policy, g, greedy, record=True)
        parts.append({k: v.cpu() for k, v in {**ro.episodes, "pos": ro.data["pos"], "actions": ro.data["actions"],
                                             "success": ro.success, "length": ro.length, "decisions": ro.decisions}.items()})
    out = {k: torch.cat([p[k] for p in parts])[:episodes] for k in parts[0]}
    return out, {"success": float(out["success"].float().mean()), "world": model.world.name}
