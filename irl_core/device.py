"""Resolving ``--device`` with a clear error when the requested accelerator is absent; one CPU thread for
one-row model steps."""
from __future__ import annotations

from contextlib import contextmanager

import torch


class DeviceError(RuntimeError):
    """The requested device does not exist on this machine."""


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (cuda when present) → a usable ``torch.device``."""
    name = str(name or "cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} was requested but this machine has no CUDA GPU; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        raise DeviceError(f"device type {dev.type!r} is not supported; use cpu or cuda")
    return dev


def available_devices() -> list[str]:
    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


@contextmanager
def one_torch_thread():
    """Run the block with one torch CPU thread, then restore the count. For rollouts that step a small model one
    row at a time: a second thread gains nothing there and, while another process keeps a core busy, every op waits
    for it (a step of the ant base model: 3 ms on one thread, 230 ms on two beside a training job, measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
