"""TransformerLens-style hook points: string names are the public API for reading and writing activations.

A :class:`HookPoint` is an identity module that calls the functions attached to it. A model that derives
from :class:`HookedModule` gets ``run_with_hooks``, ``run_with_cache`` and the ``hooks`` context manager.
Hooks are always removed on exit, also when the forward pass raises.

A hook function is ``fn(activation, hook) -> activation | None``; returning a tensor replaces the
activation (that is how a controller writes into the residual stream), returning None only reads.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]
NameFilter = "str | Sequence[str] | Callable[[str], bool] | None"


class HookPoint(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.name = ""
        self._fns: list[HookFn] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self._fns:
            out = fn(x, self)
            if out is not None:
                x = out
        return x


def _matcher(names) -> Callable[[str], bool]:
    if names is None:
        return lambda _: True
    if callable(names):
        return names
    if isinstance(names, str):
        return lambda n: n == names
    names = set(names)
    return lambda n: n in names


class HookedModule(nn.Module):
    """Mixin: call :meth:`setup_hooks` at the end of ``__init__`` to name every HookPoint."""

    def setup_hooks(self) -> None:
        self._hook_points = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self._hook_points[name] = module

    @property
    def hook_points(self) -> dict[str, HookPoint]:
        return self._hook_points

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]]) -> Iterator[None]:
        """Attach ``(name or predicate, fn)`` pairs for the duration of the ``with`` block."""
        attached: list[tuple[HookPoint, HookFn]] = []
        try:
            for names, fn in fwd_hooks:
                match = _matcher(names)
                points = [hp for n, hp in self._hook_points.items() if match(n)]
                if not points:
                    raise KeyError(f"no hook point matches {names!r}; available: {sorted(self._hook_points)[:6]}…")
                for hp in points:
                    hp._fns.append(fn)
                    attached.append((hp, fn))
            yield
        finally:
            for hp, fn in attached:
                hp._fns.remove(fn)

    def run_with_hooks(self, *args, fwd_hooks=(), **kwargs):
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(self, *args, names_filter=None, detach: bool = True, **kwargs):
        """Run forward and return ``(output, cache)`` with the activation of every matching hook point."""
        cache: dict[str, torch.Tensor] = {}

        def save(x: torch.Tensor, hook: HookPoint) -> None:
            cache[hook.name] = x.detach() if detach else x

        match = _matcher(names_filter)
        names = [n for n in self._hook_points if match(n)]
        with self.hooks([(n, save) for n in names]):
            out = self(*args, **kwargs)
        return out, cache
