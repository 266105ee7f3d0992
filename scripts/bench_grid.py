"""Measure the gridworld figures quoted in BENCHMARKS.md and print them as a Markdown section.

    python scripts/bench_grid.py [--checkpoint checkpoints/grid/base] [--episodes 1000] [--threads 2]

Expert success on every task, batched env throughput, base-model training tokens/s, KV-cached rollout
steps/s, and the shipped base model's quality (read from its probes report, which
``python -m irl_core probes`` writes).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irl_core.machine import describe_machine  # noqa: E402
from irl_core.data import expert_episodes  # noqa: E402
from irl_core.envs.grid import BatchedGridPinpad  # noqa: E402
from irl_core.envs.tasks import format_task  # noqa: E402
from irl_core.envs.worlds import get_world  # noqa: E402
from irl_core.pretrain import load_base_model  # noqa: E402
from bench_pretrain import training_speed  # noqa: E402
from irl_core.rollouts import model_policy  # noqa: E402
from irl_core.data import run_episodes  # noqa: E402


def machine() -> str:
    return describe_machine()


def expert_table(n: int, world) -> list[str]:
    rows = ["| task | episodes | success | mean length |", "|---|---|---|---|"]
    for task in world.pretrain_tasks + (world.heldout_task,):
        ep = expert_episodes(BatchedGridPinpad(n, [task], seed=123, world=world))
        rows.append(f"| {format_task(task)} | {n} | {ep['success'].float().mean():.3f} | {ep['length'].float().mean():.1f} |")
    return rows


def env_speed(world, B: int = 4096, steps: int = 100) -> tuple[float, float]:
    """(steps/s of ``step`` alone, seconds per ``reset``) at batch ``B``; observations are built every step."""
    env = BatchedGridPinpad(B, seed=0, world=world)
    t = time.perf_counter()
    env.reset()
    reset_s = time.perf_counter() - t
    actions = torch.randint(4, (steps, B))
    t = time.perf_counter()
    for i in range(steps):
        obs, *_ = env.step(actions[i])
    return B * steps / (time.perf_counter() - t), reset_s


def expert_generation_speed(world, B: int = 1024, reps: int = 3) -> float:
    env = BatchedGridPinpad(B, seed=0, world=world)
    t = time.perf_counter()
    for _ in range(reps):
        expert_episodes(env)
    return B * reps / (time.perf_counter() - t)


def rollout_speed(model, B: int = 1024) -> float:
    env = BatchedGridPinpad(B, seed=0, world=model.world)
    t = time.perf_counter()
    ep = run_episodes(env, model_policy(model, B, env.generator))
    dt = time.perf_counter() - t
    steps = int(ep["length"].max())  # lockstep steps actually run
    return B * steps / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="checkpoints/grid/base")
    ap.add_argument("--world", default="grid7", choices=("grid7", "grid5"), help="the world of the expert and speed rows")
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    world = get_world(args.world)
    out = [f"## Gridworld {world.name} (measured {datetime.date.today()} on {machine()})", "",
           f"Command: `python scripts/bench_grid.py --world {world.name} --checkpoint {args.checkpoint} "
           f"--episodes {args.episodes}`", "", "### DP expert", ""]
    out += expert_table(args.episodes, world)
    sps, reset_s = env_speed(world)
    eps = expert_generation_speed(world)
    tr = training_speed("cpu", world=world.name)
    tr_steps, tr_tokens = tr["steps_per_s"], tr["tokens_per_s"]
    out += ["", "### Speed", "", "| what | figure |", "|---|---|",
            f"| batched env `step`, B=4096, random actions, observations built | {sps:,.0f} steps/s |",
            f"| batched env `reset`, B=4096 (layouts, solvability check, distance maps) | {reset_s:.2f} s, i.e. {sps * 100 * 4096 / (100 * 4096 + sps * reset_s) / 1e3 * 1e3:,.0f} steps/s amortised over 100-step episodes |",
            f"| expert episodes generated (batched env + DP expert, B=1024) | {eps:,.0f} episodes/s |",
            f"| base-model training, `cpu` preset (d128 L6, batch 128 in 8 length-sorted micro-batches, data generated in the loop) | {tr_steps:.2f} steps/s, {tr_tokens:,.0f} tokens/s |"]
    ck = Path(args.checkpoint)
    if ck.with_suffix(".safetensors").exists():
        model = load_base_model(ck)
        out.append(f"| KV-cached rollouts of the shipped base model, B=1024 | {rollout_speed(model):,.0f} steps/s |")
        curve_path = ck.parent / "reports" / "pretrain_curve.json"
        if curve_path.exists():
            curve = json.loads(curve_path.read_text())
            meta = curve["meta"]
            out += ["", "### Shipped base model: training curve", "",
                    f"`{meta['command']}` on {meta['machine']} ({meta['device']}): {meta['steps']} steps, "
                    f"{meta['episodes']:,} episodes.", "",
                    "| step | episodes | held-out D* action accuracy | train action NLL |", "|---|---|---|---|"]
            out += [f"| {r['step']} | {r['charts/episodes']:,} | {r['eval/action_acc']:.3f} | {r['losses/action_nll']:.3f} |"
                    for r in curve["curve"] if "eval/action_acc" in r]
        probes = ck.parent / "reports" / "probes.json"
        if probes.exists():
            r = json.loads(probes.read_text())
            sp, lc = r["subgoal_probe"], r["last_colour_probe"]
            out += ["", "### Shipped base model", "", f"From `{probes}` (`python -m irl_core probes --checkpoint {args.checkpoint}`):", "",
                    "| layer | subgoal probe | shuffled control | last-colour probe | control |", "|---|---|---|---|---|"]
            out += [f"| {l} | {sp['accuracy'][l]:.3f} | {sp['control'][l]:.3f} | {lc['accuracy'][l]:.3f} | {lc['control'][l]:.3f} |"
                    for l in r["layers"]]
            aa, hu, sm = r["action_accuracy"], r["history_use"], r["sampled"]
            out += ["", "| measure | value |", "|---|---|",
                    f"| per-step action accuracy on held-out D* | {aa['model']:.3f} |",
                    f"| expert that knows the task (ceiling) | {aa['expert_knowing_task']:.3f} |",
                    f"| Bayes-optimal predictor that does not know the task | {aa['bayes_task_blind']:.3f} |",
                    f"| history use: 2nd-of-pair vs 1st-of-pair accuracy at segment start | {hu['determined_acc']:.3f} vs {hu['undetermined_acc']:.3f} (gap {hu['gap']:+.3f}) |",
                    f"| sampled success, pretraining tasks | {sm['success_pretraining_tasks']:.3f} |",
                    f"| sampled: reaches the correct first colour | {sm['reached_correct_first_colour']:.3f} |",
                    f"| sampled success, held-out task | {sm['success_heldout_task']:.4f} |",
                    f"| uncut rollouts: first 6 colours spell a pretraining task | {sm['uncut_follows_pretraining_task']:.3f} |",
                    f"| uncut rollouts: first 6 colours are a prefix of a pretraining task | {sm['uncut_prefix_of_pretraining_task']:.3f} |",
                    f"| uncut rollouts: first 12 colours spell the held-out task | {sm['uncut_follows_heldout_task']:.4f} |",
                    f"| episodes per diagnostic | {sm['episodes']} |"]
    print("\n".join(out))


if __name__ == "__main__":
    main()
