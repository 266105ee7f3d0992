"""Data-parallel training over ``torch.distributed`` processes, as started by ``torchrun``.

``torchrun --nproc-per-node N -m irl_core pretrain ...`` starts N copies of the command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their environment. :func:`init_data_parallel`
joins them into one process group (NCCL when the device is CUDA, each process on GPU ``LOCAL_RANK``; gloo on
the CPU) and returns a :class:`DataParallel` describing this process; without ``torchrun`` it returns the
single-process one and touches nothing.

Each process generates its own share of every step's fresh episodes from its own seed stream
(:func:`rank_seed`: rank 0 keeps the run's seed, so one process is exactly today's run); one process
(rank 0) writes the run directory (``irl_core.runs.ReadOnlyRun`` stands in for it in the others).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from irl_core.device import resolve_device

__all__ = ["DataParallel", "init_data_parallel", "rank_seed"]

SEED_STRIDE = 1_000_003  # a prime far beyond any seed a user passes: rank streams never collide across seeds


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s episode stream in a run of seed ``seed``."""
    return seed + SEED_STRIDE * rank


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run (``world == 1``: no process group)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run (checkpoints, metrics, status)."""
        return self.rank == 0

    def share(self, batch_size: int) -> int:
        """Episodes per step this process generates: ``batch_size`` split evenly (ValueError if it cannot be)."""
        if batch_size % self.world:
            raise ValueError(f"--batch-size {batch_size} does not split evenly over {self.world} processes")
        return batch_size // self.world

    def sum(self, values: dict[str, float], device: torch.device) -> dict[str, float]:
        """``values`` summed over every process (all of them must call this at the same point)."""
        if self.world == 1:
            return dict(values)
        t = torch.tensor([float(values[k]) for k in values], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return {k: float(v) for k, v in zip(values, t.tolist())}

    def gather(self, obj) -> list:
        """``obj`` of every process, by rank (a collective)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` in every process (a collective)."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def close(self, together: bool = True) -> None:
        """Leave the process group. ``together`` (a run that ended normally): every process waits at a barrier
        first, since a process that tore its gloo connections down while another was still writing the
        checkpoint could abort at exit ("terminate called without an active exception"). A process leaving on
        an error passes ``together=False``: it must not wait for the others (torchrun stops them)."""
        if self.world > 1 and torch.distributed.is_initialized():
            if together:
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def init_data_parallel(device: str | torch.device = "cpu") -> tuple[DataParallel, torch.device]:
    """Join torchrun's process group when there is one; returns this process's :class:`DataParallel` and the
    device it trains on (``cuda:LOCAL_RANK`` for CUDA runs, else ``device`` resolved)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return DataParallel(), dev
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DataParallel(torch.distributed.get_rank(), torch.distributed.get_world_size()), dev
