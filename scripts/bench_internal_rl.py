"""Measure the speed of internal RL and of raw-action RL and print it as a Markdown section for BENCHMARKS.md.

    python scripts/bench_internal_rl.py [--batch 1024] [--reps 3] [--threads 2] [--device cpu]
                                        [--metacontroller checkpoints/grid/metacontroller]

For each method: episodes/s and decisions/s of collecting one batch of held-out-task episodes (the step
loop of Algorithm 1), and seconds per PPO update (2 epochs over the batch). Internal RL runs with the shipped
metacontroller when present, and with a fresh one of Table A9's sizes, whose gate starts near 0.5 and so
asks for many more decisions (the cost of a decision, whatever the weights).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irl_core.rl.baselines.raw_action import RawActionLearner  # noqa: E402
from irl_core.controllers import freeze  # noqa: E402
from irl_core.rl.internal import InternalLearner  # noqa: E402
from irl_core.rl.ppo import normalised_advantages, rl_preset  # noqa: E402
from irl_core.machine import describe_machine  # noqa: E402
from irl_core.metacontroller import MetaController, MetaControllerConfig  # noqa: E402
from irl_core.pretrain import load_base_model  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(learner, reps: int) -> dict[str, float]:
    g = torch.Generator(device=learner.device)
    g.manual_seed(0)
    learner.collect(g)  # warm-up
    collect, update, episodes, decisions, steps = 0.0, 0.0, 0, 0, 0
    for _ in range(reps):
        sync(learner.device)
        t = time.perf_counter()
        ro = learner.collect(g)
        sync(learner.device)
        collect += time.perf_counter() - t
        episodes += len(ro.success)
        decisions += int(ro.decisions.sum())
        steps += int(ro.length.sum())
        adv = normalised_advantages(torch.randn(len(ro.success), device=learner.device))  # a non-zero signal
        t = time.perf_counter()
        for _ in range(learner.cfg.epochs):
            loss, _ = learner.loss(ro, adv)
            loss.backward()
        sync(learner.device)
        update += time.perf_counter() - t
    return {"episodes_s": episodes / collect, "decisions_s": decisions / collect, "steps_s": steps / collect,
            "update_s": update / reps, "decisions_per_episode": decisions / episodes, "steps_per_episode": steps / episodes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--base", default="checkpoints/grid/base")
    ap.add_argument("--metacontroller", default="checkpoints/grid/metacontroller")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cfg = rl_preset("paper", batch_size=args.batch)
    model = freeze(load_base_model(args.base, dev))
    torch.manual_seed(0)
    fresh = MetaController(MetaControllerConfig(d_model=model.cfg.d_model)).to(dev)
    rows = [("internal RL, fresh metacontroller", InternalLearner(model, freeze(fresh), model.n_layers // 2, cfg, dev, 0))]
    which = "a fresh one (Table A9 sizes)"
    if Path(args.metacontroller).with_suffix(".json").exists():
        from irl_core.discovery import load_metacontroller
        meta, shipped_model, layer, _ = load_metacontroller(args.metacontroller, dev, args.base)
        rows.insert(0, (f"internal RL, `{args.metacontroller}`", InternalLearner(shipped_model, freeze(meta), layer, cfg, dev, 0)))
        which = f"`{args.metacontroller}` and a fresh one (Table A9 sizes)"
    rows += [("raw-action RL", RawActionLearner(load_base_model(args.base, dev), rl_preset("paper", method="raw-action",
                                                                                        batch_size=args.batch), dev, 0))]
    print(f"## Internal RL speed (measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)\n")
    print(f"Machine: {describe_machine()}; device {dev}.  ")
    print(f"Command: `python scripts/bench_internal_rl.py --batch {args.batch} --reps {args.reps}"
          f"{f' --threads {args.threads}' if args.threads else ''} --device {args.device}`; held-out task, "
          f"base `{args.base}`, metacontrollers: {which}.\n")
    print("| method | episodes/s | decisions/s | primitive steps/s | decisions/episode | steps/episode | "
          f"PPO update of {args.batch} episodes (2 epochs), s |")
    print("|---|---|---|---|---|---|---|")
    for name, learner in rows:
        m = measure(learner, args.reps)
        print(f"| {name} | {m['episodes_s']:.0f} | {m['decisions_s']:.0f} | {m['steps_s']:.0f} | "
              f"{m['decisions_per_episode']:.2f} | {m['steps_per_episode']:.1f} | {m['update_s']:.2f} |")


if __name__ == "__main__":
    main()
