"""Training-step time of the ant base model (the Hawk SSM) per preset and precision, and the rollout step.

    python scripts/bench_ant_model.py [--presets cpu paper] [--episodes 32] [--length 200] [--steps 2] [--threads 1]

A training step is ``ant_pretrain_loss`` forward and backward on ``--episodes`` random episodes of ``--length``
steps (the parallel scan; AdamW's update is not included); the rollout step is ``AntSSM.step`` on one
observation, as ``irl_core.ant_base`` runs each slot. Prints a Markdown section with the machine.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irl_core.ant_pretrain import PRESETS  # noqa: E402
from irl_core.machine import describe_machine  # noqa: E402
from irl_core.models.ant_ssm import AntSSM, ant_pretrain_loss  # noqa: E402
from irl_core.pretrain import autocast_for  # noqa: E402


def step_time(model: AntSSM, episodes: int, length: int, steps: int, precision: str) -> float:
    obs, act = torch.randn(episodes, length, 41), torch.randn(episodes, length, 8)
    lengths = torch.full((episodes,), length)
    amp = autocast_for(precision, torch.device("cpu"))
    for i in range(steps + 1):
        if i == 1:
            t = time.perf_counter()
        with amp:
            loss, _ = ant_pretrain_loss(model, obs, act, lengths, 10.0)
        loss.backward()
    return (time.perf_counter() - t) / steps


@torch.no_grad()
def rollout_step_time(model: AntSSM, n: int = 200) -> float:
    state, obs = model.initial_state(1), torch.randn(1, 41)
    model.step(obs, state)
    t = time.perf_counter()
    for _ in range(n):
        _, state = model.step(obs, state)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
    print(f"## Ant base model speed (measured {datetime.date.today()}; {describe_machine()}; {args.threads} thread)\n")
    print(f"Command: `python scripts/bench_ant_model.py --presets {' '.join(args.presets)} --episodes {args.episodes} "
          f"--length {args.length} --steps {args.steps} --threads {args.threads}`\n")
    print("| preset | width × depth | parameters | fp32 training step | bf16 training step | steps/s (bf16) | "
          "rollout step (one slot) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.presets:
        cfg = PRESETS[name]
        torch.manual_seed(0)
        model = AntSSM(cfg.model_config())
        n = sum(p.numel() for p in model.parameters())
        fp32 = step_time(model, args.episodes, args.length, args.steps, "fp32")
        bf16 = step_time(model, args.episodes, args.length, args.steps, "bf16")
        roll = rollout_step_time(model.eval())
        print(f"| {name} | {cfg.d_model} × {cfg.n_layers} | {n:,} | {fp32:.2f} s | {bf16:.2f} s | {1 / bf16:.2f} | "
              f"{roll * 1000:.1f} ms |")
    print(f"\n(a training step: {args.episodes} episodes × {args.length} steps, forward and backward)")


if __name__ == "__main__":
    main()
