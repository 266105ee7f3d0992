"""What do a metacontroller's segment codes carry, and how does its control act? Diagnostics on held-out D*.

    python scripts/what_codes_carry.py [CHECKPOINT ...] [--episodes 500] [--ties first|random]

For each metacontroller checkpoint (default: checkpoints/grid5/metacontroller), on one fixed set of held-out D*
episodes of its world (the expert's tie-breaking of ``--ties``), deterministic pass (z̃ = μ):

* **what the codes carry**: the segment codes (integrated z at each segment's last step,
  :func:`irl_core.latent_map.segment_codes`) against (a) the segment's subgoal, nearest-mean accuracy with its
  chance rate, and (b) the offset (rows, columns) from the agent to the colour the segment heads for,
  cross-validated R² of a linear read-out (:func:`irl_core.latent_map.code_displacement`); the share of the codes'
  variance in their first principal component;
* **how the control acts**: ê = e + U(z) e splits into U(z) ē (ē: the residual's mean over every valid step, the
  part of the push that is the same whatever the step shows) and U(z)(e − ē) (the part that reads what varies
  between steps: position, layout, history). The action NLL with each part alone, beside the base model's and
  the full control's, says which one carries the steering;
* **whether the code space holds a solution**: a policy that reads the true layout (no learning) picks, at each
  decision of Algorithm 1, the mean segment code of the held-out D* segments with the same offset (rows, columns)
  to their target (the offset's column alone where the pair was never seen), on the held-out task and on the
  pretraining tasks, beside codes drawn from the prior N(0, I); success, mean colours completed and decisions per
  episode over ``--rl-episodes`` episodes, and how the switching unit behaves in that closed loop (the share of
  steps right after a task colour is entered where β > 0.5, and of other steps). If the codes named a target's
  place reliably, this policy would solve the held-out task as the ground-truth controllers do.

Prints one Markdown table per reading.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irl_core.controllers import apply_control, lower, sequence_nll, upper_logits  # noqa: E402
from irl_core.data import heldout_episodes, training_tensors  # noqa: E402
from irl_core.discovery import centroid_accuracy, load_metacontroller  # noqa: E402
from irl_core.envs.grid import colour_cells  # noqa: E402
from irl_core.latent_map import code_displacement, segment_codes, segment_displacement  # noqa: E402
from irl_core.rl.internal import InternalEnv  # noqa: E402


@torch.no_grad()
def control_paths(model, meta, layer: int, episodes: dict) -> dict[str, float]:
    """Action NLL per step: base model, full control, the mean-residual part alone, the varying part alone."""
    T = int(episodes["length"].max())
    obs, actions = training_tensors(episodes, model.world, T)
    mask = actions >= 0
    e = lower(model, obs[:, :-1], layer)
    U = meta.decode(meta(e, mask, sample=False).z)
    e_bar = (e * mask.unsqueeze(-1)).sum((0, 1)) / mask.sum()
    push = apply_control(e, U) - e
    mean_part = apply_control(e_bar.expand_as(e), U) - e_bar

    def nll(e_hat):
        n, m = sequence_nll(upper_logits(model, e_hat, layer), actions)
        return float(n.sum() / m.sum())

    return {"base": nll(e), "full": nll(e + push), "mean_part": nll(e + mean_part),
            "varying_part": nll(e + push - mean_part)}


def offset_codes(codes: np.ndarray, displacement: np.ndarray) -> tuple[dict, dict]:
    """Mean segment code per (row, column) offset to the target, and per column offset alone."""
    by_pair, by_col = {}, {}
    for (dr, dc), c in zip(displacement.astype(int).tolist(), codes):
        by_pair.setdefault((dr, dc), []).append(c)
        by_col.setdefault(dc, []).append(c)
    return ({k: np.mean(v, 0) for k, v in by_pair.items()}, {k: np.mean(v, 0) for k, v in by_col.items()})


@torch.no_grad()
def layout_reading_policy(model, meta, layer: int, tables: tuple[dict, dict] | None, task: str, episodes: int,
                          seed: int = 0) -> dict[str, float]:
    """Algorithm 1 with codes chosen, at each decision, from ``tables`` by the true offset to the task's next
    colour (None: codes from the prior); raw actions sampled."""
    ienv = InternalEnv(model, meta, layer, episodes, task, "cpu", seed)
    _, need = ienv.reset()
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(episodes, meta.cfg.n_z)
    decisions = torch.zeros(episodes)
    counts = torch.zeros(4, dtype=torch.long)  # colours entered, switches right after; other steps, switches there
    size = model.world.size
    for _ in range(ienv.t_max):
        s = ienv.env.state
        for b in need.nonzero().squeeze(1).tolist():
            if tables is None:
                z[b] = torch.randn(meta.cfg.n_z, generator=g)
            else:
                colour = int(s.task[b, int(s.progress[b])])
                cell, agent = int(colour_cells(s.layout[b:b + 1], model.world)[0, colour]), int(s.agent[b])
                key = (cell // size - agent // size, cell % size - agent % size)
                z[b] = torch.as_tensor(tables[0].get(key, tables[1].get(key[1])), dtype=z.dtype)
            decisions[b] += 1
        progress, live = s.progress.clone(), ~s.done
        _, need, _, done = ienv.step(z, torch.rand(episodes, generator=g))
        entered = live & ~done & (ienv.env.state.progress > progress)  # a task colour entered, the episode goes on
        other = live & ~done & ~entered
        counts += torch.tensor([entered.sum(), (entered & need).sum(), other.sum(), (other & need).sum()])
        if bool(done.all()):
            break
    s = ienv.env.state
    return {"success": float(s.success.float().mean()), "colours": float(s.progress.float().mean()),
            "decisions": float(decisions.mean()), "switch_after_colour": float(counts[1] / counts[0].clamp_min(1)),
            "switch_elsewhere": float(counts[3] / counts[2].clamp_min(1))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="*", default=["checkpoints/grid5/metacontroller"])
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--ties", choices=("first", "random"), default="first")
    ap.add_argument("--rl-episodes", type=int, default=512)
    ap.add_argument("--amplify", default="1", help="comma-separated factors k: the policy also plays the codes "
                    "mean + k·(code − mean), pushed further along their own directions (default 1: as they are)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"held-out D* episodes: {args.episodes}, ties {args.ties}\n")
    print("| metacontroller | segments | subgoal from code (chance) | offset R² rows / columns | PC1 share | "
          "NLL base | full control | mean part only | varying part only |")
    print("|---|---|---|---|---|---|---|---|---|")
    policy_rows = []
    for ck in args.checkpoints:
        meta, model, layer, _ = load_metacontroller(ck)
        ep = heldout_episodes(args.episodes, 0, model.world, ties=args.ties)
        seg = segment_codes(model, meta, layer, ep)
        known = seg["labels"] >= 0
        codes, labels = seg["codes"][known].astype(np.float64), seg["labels"][known]
        r2 = code_displacement(codes, segment_displacement(ep, seg["episode"][known], seg["first"][known], model.world))
        centred = codes - codes.mean(0)
        sv = np.linalg.svd(centred, compute_uv=False) ** 2
        chance = np.bincount(labels).max() / len(labels)
        paths = control_paths(model, meta, layer, ep)
        print(f"| {ck} | {len(codes)} | {centroid_accuracy(codes, labels):.3f} ({chance:.3f}) | "
              f"{r2['rows']:.2f} / {r2['columns']:.2f} | {sv[0] / sv.sum():.3f} | {paths['base']:.3f} | "
              f"{paths['full']:.3f} | {paths['mean_part']:.3f} | {paths['varying_part']:.3f} |")
        tables = offset_codes(codes, segment_displacement(ep, seg["episode"][known], seg["first"][known], model.world))
        mean = codes.mean(0)
        choices = [(f"codes by the true offset{f' ×{k:g}' if k != 1 else ''}",
                    tuple({a: mean + k * (c - mean) for a, c in t.items()} for t in tables))
                   for k in map(float, args.amplify.split(","))] + [("codes from the prior", None)]
        for task in ("heldout", "pretrain"):
            for name, tab in choices:
                r = layout_reading_policy(model, meta, layer, tab, task, args.rl_episodes)
                policy_rows.append(f"| {ck} | {task} | {name} | {r['success']:.3f} | {r['colours']:.2f} | "
                                   f"{r['decisions']:.2f} | {r['switch_after_colour']:.3f} | {r['switch_elsewhere']:.3f} |")
    print(f"\nAlgorithm 1 with a policy that reads the layout ({args.rl_episodes} episodes each, raw actions sampled):\n")
    print("| metacontroller | task | codes | success | colours completed | decisions / episode | "
          "switch after a task colour | switch elsewhere |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(policy_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
