"""Scale-out costs on this machine: an α sweep through the local job backend against the same sweep through
Ray, and data-parallel pretraining (torchrun, gloo) with 1 and 2 processes.

    python scripts/bench_scale_out.py [--base checkpoints/grid5/base] [--sweep-presets tiny cpu]
                                      [--cpu-steps 60] [--ddp-steps 30] [--jobs 2] [--repeats 3]

Sweep: the same points (2 α × 2 seeds, frozen, ``--jobs`` at a time, one CPU thread each) run by
``irl_core.sweeps.run_sweep`` with each backend, in fresh directories; the wall clock includes starting each
job (and, for Ray, starting a local Ray with ``--jobs`` CPUs). The ``cpu`` preset runs are cut to
``--cpu-steps`` steps, so that what differs is the backends' overhead, not the training.

DDP: ``torchrun --standalone --nproc-per-node N -m irl_core pretrain --preset cpu --world grid5`` for
``--ddp-steps`` steps (one thread per process, the global batch of 128 split over the N processes); the step
time is the run's own ``charts/SPS`` at its last logged step (the first steps' warm-up included), and the
wall clock is the whole command (process start and rendezvous included). The 1- and 2-process runs alternate
``--repeats`` times and the fastest of each is shown (this machine's speed drifts between minutes).

Prints a Markdown section with the machine and the date.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from irl_core.jobs.local import LocalBackend  # noqa: E402
from irl_core.jobs.ray_backend import RayBackend  # noqa: E402
from irl_core.machine import describe_machine  # noqa: E402
from irl_core.sweeps import run_sweep  # noqa: E402

ALPHAS, SEEDS = (0.1, 0.3), (0, 1)


def sweep_time(backend, base: str, preset: str, steps: int | None, jobs: int, root: Path) -> float:
    t = time.perf_counter()
    out = run_sweep(base, root, preset, ALPHAS, SEEDS, ("frozen",), jobs, "cpu",
                    {"steps": steps} if steps else None, progress=False, backend=backend)
    if out["failed"]:
        raise SystemExit(f"sweep points failed: {out['failed']} (see {root}/points/*/log.txt)")
    return time.perf_counter() - t


def ddp_run(n: int, steps: int, root: Path) -> dict:
    run = root / f"ddp{n}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
                    "-m", "irl_core", "pretrain", "--preset", "cpu", "--world", "grid5", "--steps", str(steps),
                    "--threads", "1", "--run-dir", str(run)], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    return {"wall": wall, "sps": last["charts/SPS"], "episodes_per_s": last["charts/episodes_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="checkpoints/grid5/base", help="base model of the sweep points")
    ap.add_argument("--sweep-presets", nargs="+", default=["tiny", "cpu"])
    ap.add_argument("--cpu-steps", type=int, default=60, help="steps of each cpu-preset sweep point")
    ap.add_argument("--ddp-steps", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="DDP runs per process count (alternated; the best is shown)")
    args = ap.parse_args()
    os.environ.setdefault("IRL_THREADS", "1")
    rows, ddp = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for preset in args.sweep_presets:
            steps = args.cpu_steps if preset == "cpu" else None
            local = sweep_time(LocalBackend(), args.base, preset, steps, args.jobs, tmp / f"local-{preset}")
            ray_backend = RayBackend(num_cpus=args.jobs)
            t = time.perf_counter()
            ray_backend.connect()
            start = time.perf_counter() - t
            ray = sweep_time(ray_backend, args.base, preset, steps, args.jobs, tmp / f"ray-{preset}")
            ray_backend.shutdown()
            rows.append((preset, steps, local, start, ray))
        for rep in range(args.repeats):  # alternated, best of each: this VM's speed drifts by tens of per cent
            for n in (1, 2):
                r = ddp_run(n, args.ddp_steps, tmp / f"rep{rep}")
                if n not in ddp or r["sps"] > ddp[n]["sps"]:
                    ddp[n] = r
    n_points = len(ALPHAS) * len(SEEDS)
    print(f"## Scale-out: job backends and data-parallel pretraining (measured {datetime.date.today()}; "
          f"{describe_machine()})\n")
    print(f"Command: `python scripts/bench_scale_out.py --sweep-presets {' '.join(args.sweep_presets)} "
          f"--cpu-steps {args.cpu_steps} --ddp-steps {args.ddp_steps} --jobs {args.jobs} --repeats {args.repeats}`\n")
    print(f"α sweep of {n_points} points (α {', '.join(map(str, ALPHAS))} × seeds {', '.join(map(str, SEEDS))}, "
          f"frozen, base `{args.base}`), {args.jobs} at a time, one thread each:\n")
    print("| preset | steps per point | local backend | Ray: start a local Ray | Ray: the sweep | Ray's overhead per job |")
    print("|---|---|---|---|---|---|")
    for preset, steps, local, start, ray in rows:
        print(f"| {preset} | {steps or 'preset'} | {local:.1f} s | {start:.1f} s | {ray:.1f} s | "
              f"{(ray - local) / n_points * args.jobs:+.1f} s |")
    print(f"\nData-parallel pretraining, `cpu` preset on grid5 (global batch 128 in 8 micro-batches), {args.ddp_steps} "
          f"steps, one thread per process, gloo, best of {args.repeats}:\n")
    print("| processes | steps/s | episodes/s | speed-up | wall clock of the command |")
    print("|---|---|---|---|---|")
    for n, r in ddp.items():
        print(f"| {n} | {r['sps']:.2f} | {r['episodes_per_s']:.0f} | {r['sps'] / ddp[1]['sps']:.2f}× | {r['wall']:.0f} s |")


if __name__ == "__main__":
    main()
