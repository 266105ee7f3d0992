"""Benchmarks of ant-pinpad and its expert; prints a Markdown section for BENCHMARKS.md.

    python scripts/bench_ant.py [--checkpoint checkpoints/ant/expert] [--episodes 200] [--seconds 3]

Measures (one process, one torch thread): raw physics steps/s, environment steps/s with observations (the
gymnasium env, and a batch of 32), render frames/s at 480×480 (top-down and chase), the encoding time of a
500-frame H.264 video, and the expert's success and mean episode length on the 16 pretraining tasks and on
the held-out task 0-1-2-3 (sampled actions as in D, and the mean action as in D*). The expert's training
wall-clock is read from the checkpoint's metadata. ``--json`` also writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from irl_core.machine import describe_machine  # noqa: E402
from irl_core.ant_data import encode_mp4, evaluate_report  # noqa: E402
from irl_core.checkpoints import load_checkpoint  # noqa: E402
from irl_core.envs import ant as A  # noqa: E402


def timed(fn, seconds: float) -> float:
    """Calls ``fn()`` (returning a count) until ``seconds`` pass; returns counts per second."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += fn()
    return n / (time.perf_counter() - t0)


def bench_physics(seconds: float) -> dict:
    out = {}
    rng = np.random.default_rng(0)
    for name, integ in (("implicitfast", mujoco.mjtIntegrator.mjINT_IMPLICITFAST),
                        ("RK4 (gymnasium's)", mujoco.mjtIntegrator.mjINT_RK4)):
        m = A.build_model()
        m.opt.integrator = integ
        d = mujoco.MjData(m)
        d.qpos[2] = 0.75
        ctrl = rng.uniform(-1, 1, (1000, 8))
        k = [0]

        def step():
            d.ctrl[:] = ctrl[k[0] % 1000]
            k[0] += 1
            for _ in range(100):
                mujoco.mj_step(m, d)
            if not 0.2 <= d.qpos[2] <= 1.0:
                mujoco.mj_resetData(m, d)
                d.qpos[2] = 0.75
            return 100
        out[name] = timed(step, seconds)
    return out


def bench_env(seconds: float) -> dict:
    env = A.AntPinpadEnv()
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def gym_step():
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 8))
        if term or trunc:
            env.reset()
        return 1
    batch = A.AntPinpadBatch(32)
    for i in range(32):
        batch.seed(i, i)
        batch.reset_one(i)

    def batch_step():
        _, term, trunc, _ = batch.step(rng.uniform(-1, 1, (32, 8)))
        batch.observe()
        for i in np.flatnonzero(term | trunc):
            batch.reset_one(i)
        return 32
    return {"gym env (1)": timed(gym_step, seconds), "batch of 32": timed(batch_step, seconds)}


def bench_render(seconds: float) -> tuple[dict, list]:
    env = A.AntPinpadEnv(render_mode="rgb_array", width=480, height=480)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    frames: list = []
    out = {}
    for cam in A.CAMERAS:
        def render():
            _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 8))
            if term or trunc:
                env.reset()
            frame = env.render(camera=cam)
            if len(frames) < 500:
                frames.append(frame)
            return 1
        env.render(camera=cam)  # warm-up (context creation)
        out[cam] = timed(render, seconds)
    while len(frames) < 100:  # enough distinct frames for a fair encoding benchmark
        render()
    env.close()
    return out, frames


def bench_encode(frames: list) -> tuple[float, int, int]:
    distinct = len(frames)
    frames = [frames[i % distinct] for i in range(500)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.mp4"
        t0 = time.perf_counter()
        encode_mp4(frames, path)
        dt = time.perf_counter() - t0
        size = path.stat().st_size
    return dt, size, distinct


def machine() -> str:
    import gymnasium
    return (f"{describe_machine()}, mujoco {mujoco.__version__}, gymnasium {gymnasium.__version__}, "
            f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/ant/expert")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--skip-expert", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    phys = bench_physics(args.seconds)
    envs = bench_env(args.seconds)
    render, frames = bench_render(args.seconds)
    enc_s, enc_bytes, distinct = bench_encode(frames)
    report, meta = None, {}
    if not args.skip_expert:
        report = evaluate_report(args.checkpoint, args.episodes, args.seed)
        _, _, meta = load_checkpoint(args.checkpoint)

    lines = [f"## Ant-pinpad ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"Machine: {machine()}. Reproduce: `python scripts/bench_ant.py --episodes {args.episodes}`.", "",
             "| measure | value |", "| --- | --- |"]
    for k, v in phys.items():
        lines.append(f"| physics steps/s, {k} ({A.TIMESTEP} s steps) | {v:,.0f} |")
    for k, v in envs.items():
        lines.append(f"| env steps/s with observations, {k} ({A.FRAME_SKIP} physics steps each) | {v:,.0f} |")
    for k, v in render.items():
        lines.append(f"| render frames/s at 480×480, {k} camera (step + render) | {v:,.1f} |")
    lines.append(f"| H.264 encoding of a 500-frame 480×480 video ({distinct} distinct rendered frames cycled) | "
                 f"{enc_s:.2f} s ({enc_bytes / 1e6:.2f} MB) |")
    if report:
        for mode, what in (("sampled", "sampled actions (D)"), ("mean", "mean action (D*)")):
            for split, name in (("pretrain", "16 pretraining tasks"), ("heldout", "held-out 0-1-2-3")):
                r = report[mode][split]
                ls = r["mean_length_successful"]
                lines.append(f"| expert success, {what}, {name} ({r['episodes']} episodes) | {r['success_rate']:.3f} "
                             f"(mean length {r['mean_length']:.0f}, successful {ls if ls is None else round(ls)}; "
                             f"ends: {', '.join(f'{k} {v}' for k, v in r['events'].items() if v)}) |")
        if meta.get("wall_s"):
            lines.append(f"| expert training | {meta.get('trained_steps', 0):,} env steps in "
                         f"{meta['wall_s'] / 60:.1f} min (1 process, 1 torch thread) |")
    md = "\n".join(lines)
    print(md)
    if args.json:
        Path(args.json).write_text(json.dumps({"physics": phys, "env": envs, "render": render,
                                               "encode_s": enc_s, "expert": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
