"""Pretraining throughput of the grid base model: steps/s, episodes/s and tokens/s, per micro-batching setting.

    python scripts/bench_pretrain.py [--preset cpu] [--world grid7|grid5] [--device cpu|cuda] [--chunks 1 8]
                                     [--precision fp32 bf16] [--steps 8] [--threads N]

Each step is what ``irl_core.pretrain.train`` does: fresh expert episodes generated on the device by the
batched env and DP expert, the length-sorted micro-batches of ``accumulate_gradients`` (under the autocast of
each ``--precision``), gradient clipping and one AdamW step (fused on CUDA). Prints a Markdown section with
the machine.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irl_core.config import PRETRAIN_PRESETS, preset  # noqa: E402
from irl_core.data import expert_episodes  # noqa: E402
from irl_core.device import resolve_device  # noqa: E402
from irl_core.envs.grid import BatchedGridPinpad  # noqa: E402
from irl_core.machine import describe_machine  # noqa: E402
from irl_core.models.transformer import GridTransformer  # noqa: E402
from irl_core.pretrain import accumulate_gradients, autocast_for  # noqa: E402


def training_speed(preset_name: str = "cpu", chunks: int | None = None, steps: int = 8, device="cpu",
                   batch_size: int | None = None, world: str = "grid7", precision: str = "auto") -> dict[str, float]:
    """Steps/s, episodes/s and (valid) tokens/s of pretraining steps, after two warm-up steps."""
    dev = resolve_device(device)
    cfg = preset(PRETRAIN_PRESETS, preset_name, chunks=chunks, batch_size=batch_size, world=world, precision=precision)
    model = GridTransformer(cfg.model_config()).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=dev.type == "cuda")
    amp = autocast_for(cfg.precision, dev)
    env = BatchedGridPinpad(cfg.batch_size, cfg.tasks, dev, seed=0, world=world)
    tokens, t = 0, 0.0
    for i in range(steps + 2):
        if i == 2:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t, tokens = time.perf_counter(), 0
        with torch.no_grad():
            batch = expert_episodes(env, cfg.epsilon)
        opt.zero_grad(set_to_none=True)
        accumulate_gradients(model, batch, cfg, amp)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        tokens += int(batch["length"].sum())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"steps_per_s": steps / dt, "episodes_per_s": steps * cfg.batch_size / dt, "tokens_per_s": tokens / dt,
            "chunks": cfg.chunks, "batch_size": cfg.batch_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--world", default="grid7", choices=("grid7", "grid5"))
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=("auto", "fp32", "bf16"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = preset(PRETRAIN_PRESETS, args.preset, batch_size=args.batch_size)
    print(f"## Pretraining throughput (measured {datetime.date.today()}; {describe_machine()}; device {args.device})\n")
    threads = f" --threads {args.threads}" if args.threads else ""
    print(f"Command: `python scripts/bench_pretrain.py --preset {args.preset} --world {args.world} --device {args.device} "
          f"--chunks {' '.join(map(str, args.chunks))} --precision {' '.join(args.precision)} --steps {args.steps}{threads}`; "
          f"d={cfg.d_model}, L={cfg.n_layers}, batch {cfg.batch_size} episodes, world {args.world}.\n")
    print("| micro-batches (length-sorted) | precision | steps/s | episodes/s | tokens/s |\n|---|---|---|---|---|")
    for c in args.chunks:
        for p in args.precision:
            r = training_speed(args.preset, c, args.steps, args.device, args.batch_size, args.world, p)
            print(f"| {c} | {p} | {r['steps_per_s']:.2f} | {r['episodes_per_s']:,.0f} | {r['tokens_per_s']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
