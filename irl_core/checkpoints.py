"""Saving and loading artifacts: safetensors weights beside a JSON config (never pickles).

A checkpoint ``NAME`` is the pair ``NAME.safetensors`` + ``NAME.json``. The JSON holds ``kind`` (what the
weights are, e.g. ``"grid-transformer"``), ``config`` (the model's constructor arguments) and free-form
``meta``. Loading checks the kind, that both files exist and parse, and that every tensor the model
expects is present with the right shape; any problem raises :class:`CheckpointError` naming the file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not match what the caller expects."""


def checkpoint_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """A checkpoint's two files, (weights ``.safetensors``, description ``.json``), from its path with or without
    either suffix."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


def _umask_mode(tmp: str) -> None:
    """Give a temp file (mkstemp makes it 0600) the mode a plain ``open`` would: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def naming(e: OSError, path: str | os.PathLike) -> OSError:
    """``e`` itself when it names its file, else the same error (same errno, so the same subclass) naming
    ``path``: a write that fails on a full disk reports no file name of its own."""
    if e.filename is not None or e.errno is None:
        return e
    return OSError(e.errno, e.strerror or str(e), str(path))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it over ``path`` (with the umask's mode).

    On any failure (a full disk included) the temp file is removed and ``path`` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _umask_mode(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise naming(e, path) from None
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def save_checkpoint(path: str | os.PathLike, state: dict[str, torch.Tensor], kind: str,
                    config: dict, meta: dict | None = None) -> Path:
    """Save ``state`` (a state dict) and its JSON description atomically; returns the weights path."""
    weights, desc = checkpoint_files(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(dir=weights.parent, prefix=f".{weights.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        _umask_mode(tmp)
        os.replace(tmp, weights)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise naming(e, weights) from None
        raise
    atomic_write_json(desc, {"kind": kind, "config": config, "meta": meta or {}})
    return weights


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Load ``(state, config, meta)``; checks the files exist, parse, and (if given) are of ``kind``."""
    weights, desc_path = checkpoint_files(path)
    if not weights.exists():
        raise CheckpointError(f"{weights}: checkpoint weights not found")
    desc = read_json(desc_path)
    if not isinstance(desc, dict) or "config" not in desc or "kind" not in desc:
        raise CheckpointError(f"{desc_path}: missing 'kind' or 'config'")
    if kind is not None and desc["kind"] != kind:
        raise CheckpointError(f"{weights}: this is a {desc['kind']!r} checkpoint, expected {kind!r}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: corrupted safetensors file ({e})") from None
    return state, desc["config"], desc.get("meta", {})


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Copy ``state`` into ``module``, refusing missing, unexpected or mis-shaped tensors with a clear message."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: does not match the model (missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''})")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: tensor {k!r} has shape {tuple(state[k].shape)}, the model expects {tuple(v.shape)}")
    module.load_state_dict(state)


def training_state(modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
                   generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """Weights of ``modules``, AdamW moments and generator states as one flat tensor dict."""
    state = {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        for k, v in opt.state.get(p, {}).items():
            state[f"opt.{i}.{k}"] = v.reshape(-1) if v.dim() == 0 else v
    for name, g in generators.items():
        state[f"rng.{name}"] = g.get_state()
    return state


def restore_training_state(modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
                           generators: dict[str, torch.Generator], state: dict[str, torch.Tensor], source,
                           optional: tuple[str, ...] = ()) -> None:
    """Inverse of :func:`training_state`: weights, optimizer moments and generator states back in place.
    Generators named in ``optional`` may be absent from ``state`` (they keep their own state then)."""
    for name, m in modules.items():
        load_state_into(m, {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")}, source)
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        entry = {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"opt.{i}.")}
        if entry:
            entry["step"] = entry["step"].reshape(()) if "step" in entry else torch.tensor(0.0)
            opt.state[p] = {k: v.to(p.device) if k != "step" else v for k, v in entry.items()}
    for name, g in generators.items():
        if f"rng.{name}" not in state and name in optional:
            continue
        if f"rng.{name}" not in state:
            raise CheckpointError(f"{source}: missing generator state {name!r}")
        g.set_state(state[f"rng.{name}"].to(torch.uint8).cpu())


def resume_training(last: str | os.PathLike, kind: str, config: dict, modules: dict[str, torch.nn.Module],
                    opt: torch.optim.Optimizer, generators: dict[str, torch.Generator],
                    optional: tuple[str, ...] = (), extendable: tuple[str, ...] = ()) -> dict:
    """Restore a run's training state from checkpoint ``last`` when it exists; returns its meta (``{}`` if none).

    A checkpoint saved with a config other than ``config`` is refused: resuming it would mix two runs. The one
    exception is ``extendable``: config entries (e.g. ``steps``) that ``config`` may raise above the saved value,
    so that a finished run continues as if it had been started with the larger value (the caller guarantees that
    nothing before the old end depends on them). Generators named in ``optional`` may be missing from it (see
    :func:`restore_training_state`).
    """
    if not Path(last).with_suffix(".json").exists():
        return {}
    state, saved, meta = load_checkpoint(last, kind)
    if saved != config and not _extends(saved, config, extendable):
        raise CheckpointError(f"{last}: was trained with a different config; use a new --run-dir")
    restore_training_state(modules, opt, generators, state, last, optional)
    return meta


def _extends(saved: dict, config: dict, extendable: tuple[str, ...]) -> bool:
    """Whether ``config`` differs from ``saved`` only by raising numbers named in ``extendable``."""
    if set(saved) != set(config):
        return False
    differ = [k for k in config if saved[k] != config[k]]
    return all(k in extendable and isinstance(saved[k], (int, float)) and isinstance(config[k], (int, float))
               and config[k] > saved[k] for k in differ)


def start_or_resume(run, kind: str, config: dict, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
                    generators: dict[str, torch.Generator], device, extendable: tuple[str, ...] = ()) -> int:
    """Begin a training stage in ``run`` (a :class:`irl_core.runs.Run`): restore its ``checkpoints/last`` when
    there is one (dropping metric rows logged after it), record the config and mark it running; returns the
    step to continue from (0 for a new run). The run is claimed first (:meth:`irl_core.runs.Run.claim`): a
    second writer is refused before it reads or writes anything. ``extendable``: see :func:`resume_training`."""
    run.claim()
    resumed = resume_training(run.checkpoint_dir / "last", kind, config, modules, opt, generators,
                              extendable=extendable)
    step = int(resumed["step"]) if resumed else 0
    if resumed:
        run.truncate_metrics(step)
    run.write_config(config)
    run.set_status("running", device=str(device), step=step)
    return step
