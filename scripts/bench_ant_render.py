"""How fast a rendered ant rollout becomes a playable video, and what bounds it; prints a Markdown section for
BENCHMARKS.md ("Ant rendering") and with ``--update BENCHMARKS.md`` writes it there (replacing the previous one).

    python scripts/bench_ant_render.py [--repeats 3] [--update BENCHMARKS.md] [--json FILE]

Measures, on one process with one torch thread:

1. **End to end**: ``irl_core.ant_media.render_rollout`` — what the app's Rollouts page runs in its worker — for a
   300-step rollout (the held-out task 0-1-2-3 with the mean action, on the first layout seed whose episode lasts
   at least 300 steps) at 480×480 and 320×240, top-down and chase: wall-clock from the request to the finished
   mp4 and its record, split into setup (model, expert, offscreen context, reset), policy, physics, rendering
   and encoding (the time the encoder held the loop up, plus its finish). The app's settings against the
   model's defaults (what ``python -m irl_core video`` uses) as the baseline.
2. **The profile of one frame**: the same 300 states drawn again with multisampling on and off and shadow maps
   of 2048², 1024², 512² and none: seconds per frame in MuJoCo's scene update and in drawing plus reading the
   pixels back (EGL on Mesa's llvmpipe, a software rasteriser, here).
3. **Encoding alone**: the H.264 writer (``ant_data.encode_mp4``: libx264, crf 23, yuv420p) on 301 frames held in
   memory.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from irl_core import ant_media as M  # noqa: E402
from irl_core.ant_data import encode_mp4  # noqa: E402
from irl_core.envs import ant as A  # noqa: E402
from irl_core.machine import describe_machine  # noqa: E402

STEPS = 300
SIZES = ((480, 480), (320, 240))
GOALS = {(480, 480): 10.0, (320, 240): 5.0}
BEGIN, END = "<!-- ant-render:begin -->", "<!-- ant-render:end -->"


def gl_renderer() -> str:
    ctx = mujoco.GLContext(16, 16)
    ctx.make_current()
    try:
        from OpenGL import GL
        return f"{GL.glGetString(GL.GL_RENDERER).decode()}, OpenGL {GL.glGetString(GL.GL_VERSION).decode()}"
    except Exception as e:  # noqa: BLE001 - informative only
        return f"unknown ({e})"
    finally:
        ctx.free()


def long_seed(checkpoint) -> int:
    for seed in range(200):
        if M.simulate(M.make_request("expert-mean", "0-1-2-3", seed), checkpoint)["length"] >= STEPS:
            return seed
    raise RuntimeError(f"no layout seed in 0..199 gives an episode of {STEPS} steps")


def end_to_end(seed: int, checkpoint, repeats: int) -> list[dict]:
    rows = []
    for (w, h) in SIZES:
        for camera in A.CAMERAS:
            req = M.make_request("expert-mean", "0-1-2-3", seed, camera, w, h, STEPS)
            for label, settings, n in (("app", M.RenderSettings(), repeats),
                                       ("model defaults (`video` command)", M.RenderSettings.model_defaults(), 1)):
                runs = []
                for _ in range(n):
                    with tempfile.TemporaryDirectory() as tmp:
                        rec = M.render_rollout(req, checkpoint, tmp, settings)
                        mb = (Path(tmp) / rec["video"]).stat().st_size / 1e6
                    assert rec["frames"] == STEPS + 1
                    runs.append((rec["wall_s"], rec["seconds"], mb))
                walls = [r[0] for r in runs]
                mid = runs[walls.index(sorted(walls)[len(walls) // 2])]
                rows.append({"size": f"{w}×{h}", "camera": camera, "settings": label, "runs": n,
                             "wall_s": mid[0], "max_s": max(walls), "phases": mid[1], "mb": mid[2],
                             "goal_s": GOALS[(w, h)] if label == "app" else None})
                print(f"{w}x{h} {camera} {label}: {mid[0]:.2f} s (max {max(walls):.2f}) {mid[1]}", file=sys.stderr)
    return rows


def states(seed: int, checkpoint) -> list[tuple[np.ndarray, np.ndarray]]:
    from irl_core.experts.ant_expert import AntExpert
    expert = AntExpert.load(checkpoint, deterministic=True, seed=seed)
    batch = A.AntPinpadBatch(1)
    batch.seed(0, seed)
    batch.reset_one(0, task=(0, 1, 2, 3))
    out = [(batch.qpos[0].copy(), batch.qvel[0].copy())]
    for _ in range(STEPS):
        batch.step(expert.act(batch))
        out.append((batch.qpos[0].copy(), batch.qvel[0].copy()))
    return out


def frame_profile(seed: int, checkpoint) -> list[dict]:
    qs = states(seed, checkpoint)
    rows = []
    combos = [((480, 480), c, m, s) for c in A.CAMERAS for m in (4, 0) for s in (2048, 1024, 512, 0)]
    combos += [((320, 240), c, 0, s) for c in A.CAMERAS for s in (1024, 512, 0)]
    for (w, h), camera, samples, shadow in combos:
        default = (samples, shadow) == (4, 2048)  # exactly the model's settings, 1024² buffer included
        s = M.RenderSettings(offsamples=samples, shadowsize=shadow, fit_buffer=not default)
        batch = A.AntPinpadBatch(1, model=M.build_render_model(w, h, s))
        batch.seed(0, seed)
        batch.reset_one(0, task=(0, 1, 2, 3))
        r = A.AntRenderer(batch, w, h)
        r.apply_layout(batch.layout[0])
        d = batch.datas[0]
        t_scene = t_draw = 0.0
        for qpos, qvel in qs:
            d.qpos[:], d.qvel[:] = qpos, qvel
            mujoco.mj_forward(batch.model, d)
            t0 = time.perf_counter()
            r.renderer.update_scene(d, camera=camera)
            t1 = time.perf_counter()
            r.renderer.render()
            t_draw += time.perf_counter() - t1
            t_scene += t1 - t0
        r.close()
        n = len(qs)
        app = M.RenderSettings()
        rows.append({"size": f"{w}×{h}", "camera": camera, "msaa": samples, "shadow": shadow,
                     "app": (samples, shadow) == (app.offsamples, app.shadow_side(w, h)),
                     "default": default, "scene_ms": 1e3 * t_scene / n, "draw_ms": 1e3 * t_draw / n})
        print(f"frame {w}x{h} {camera} msaa {samples} shadow {shadow}: {1e3 * (t_scene + t_draw) / n:.1f} ms",
              file=sys.stderr)
    return rows


def encode_alone(seed: int, checkpoint) -> list[dict]:
    rows = []
    qs = states(seed, checkpoint)
    for (w, h) in SIZES:
        batch = A.AntPinpadBatch(1, model=M.build_render_model(w, h))
        batch.seed(0, seed)
        batch.reset_one(0, task=(0, 1, 2, 3))
        r = A.AntRenderer(batch, w, h)
        frames = []
        for qpos, qvel in qs:
            batch.datas[0].qpos[:], batch.datas[0].qvel[:] = qpos, qvel
            mujoco.mj_forward(batch.model, batch.datas[0])
            frames.append(r.render(0, "topdown"))
        r.close()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            encode_mp4(frames, Path(tmp) / "v.mp4")
            rows.append({"size": f"{w}×{h}", "frames": len(frames), "s": time.perf_counter() - t0,
                         "mb": (Path(tmp) / "v.mp4").stat().st_size / 1e6})
    return rows


def markdown(info: dict, e2e: list[dict], prof: list[dict], enc: list[dict]) -> str:
    out = [BEGIN, f"## Ant rendering (measured {info['date']})", "",
           f"Machine: {info['machine']}; mujoco {info['mujoco']}, MUJOCO_GL={info['gl']} ({info['renderer']}); "
           f"load average {info['load_before']} before and {info['load_after']} after (other jobs were running). "
           f"Reproduce: `python scripts/bench_ant_render.py --update BENCHMARKS.md`. The rollout: held-out task "
           f"0-1-2-3, mean action, layout seed {info['seed']}, {STEPS} steps ({STEPS + 1} frames, 15 s of video).", "",
           "### From request to playable video", "",
           "`ant_media.render_rollout` (the Rollouts page's worker), median of the runs; phases in seconds "
           "(encode: the time the H.264 writer held the loop up, plus its finish).", "",
           "| size | camera | settings | runs | wall-clock (s) | goal | setup | policy | physics | render | encode | mp4 (MB) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in e2e:
        p = r["phases"]
        goal = "" if r["goal_s"] is None else (f"≤ {r['goal_s']:g} s: " + ("met" if r["max_s"] <= r["goal_s"] else
                                                                          "NOT met"))
        out.append(f"| {r['size']} | {r['camera']} | {r['settings']} | {r['runs']} | {r['wall_s']:.2f} "
                   f"(max {r['max_s']:.2f}) | {goal} | {p.get('setup', 0):.2f} | {p.get('policy', 0):.2f} | "
                   f"{p.get('physics', 0):.2f} | {p.get('render', 0):.2f} | {p.get('encode', 0):.2f} | {r['mb']:.2f} |")
    out += ["", "### What one frame costs (ms; the same 301 states drawn again)", "",
            "| size | camera | multisampling | shadow map | settings | scene update | draw + read pixels | total |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in prof:
        shadow = f"{r['shadow']}²" if r["shadow"] else "none"
        which = "app" if r["app"] else "model default" if r["default"] else ""
        out.append(f"| {r['size']} | {r['camera']} | {r['msaa']}× | {shadow} | {which} | {r['scene_ms']:.2f} | "
                   f"{r['draw_ms']:.2f} | {r['scene_ms'] + r['draw_ms']:.2f} |")
    out += ["", "### Encoding alone (frames in memory)", "", "| size | frames | seconds | mp4 (MB) |",
            "| --- | --- | --- | --- |"]
    out += [f"| {r['size']} | {r['frames']} | {r['s']:.2f} | {r['mb']:.2f} |" for r in enc]
    out += ["", info["notes"], END]
    return "\n".join(out) + "\n"


NOTES = (
    "What bounds it: drawing the frames. MuJoCo renders offscreen through EGL on Mesa's llvmpipe (the CPU "
    "rasterises), and with the model's defaults 4× multisampling and a 2048² shadow map made most of a frame; the "
    "physics (5 implicitfast steps per control step) and the expert's MLP take a few hundredths of a second for "
    "the whole rollout. The app therefore renders without multisampling, with a 1024² shadow map (512² for frames of at "
    "most 320 pixels, where it looks the same; shadows are kept: they show a lifted leg from above) into an "
    "offscreen buffer of the frame's size, and streams the frames to the "
    "encoder while rendering, so libx264 (a separate ffmpeg process) works on the second core; what encoding still "
    "costs is the tail of frames it holds for its look-ahead. Turning shadows off would make the frames about 3× "
    "cheaper again. Setup (model, expert, EGL context) is a fraction of a second once the process has imported "
    "torch; the first render of a process also initialises EGL. Times vary with the load of the machine's two cores.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="end-to-end runs per setting with the app's settings (default 3)")
    p.add_argument("--checkpoint", default=str(M.DEFAULT_EXPERT), help="expert checkpoint")
    p.add_argument("--update", help="write the section into this Markdown file (e.g. BENCHMARKS.md)")
    p.add_argument("--json", help="also write the numbers as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    info = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": describe_machine(),
            "mujoco": mujoco.__version__, "gl": os.environ.get("MUJOCO_GL"), "renderer": gl_renderer(),
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()), "python": platform.python_version()}
    seed = long_seed(args.checkpoint)
    info["seed"] = seed
    e2e = end_to_end(seed, args.checkpoint, args.repeats)
    prof = frame_profile(seed, args.checkpoint)
    enc = encode_alone(seed, args.checkpoint)
    info["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["notes"] = NOTES
    text = markdown(info, e2e, prof, enc)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "end_to_end": e2e, "frame": prof, "encode": enc}, indent=2))
    if args.update:
        path = Path(args.update)
        old = path.read_text() if path.exists() else ""
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + r"\n?", re.S)
        new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
        path.write_text(new)
        print(f"updated {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
