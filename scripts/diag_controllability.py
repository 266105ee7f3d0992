"""How much can the ground-truth subgoal, written into the residual stream at one layer, lower the base model's
action NLL? A diagnostic for the controllers and the metacontroller, printed as Markdown.

    python scripts/diag_controllability.py [--checkpoint checkpoints/grid/base] [--layer 3] [--steps 300]

It trains the simplest controller there is, an additive vector per ground-truth subgoal (ê = e + b_g, with
the base model frozen), on fresh D* batches, and reports the action NLL and accuracy on a fixed set of
held-out D* episodes without and with it, over all steps and over the first two steps of each segment
(where knowing the subgoal matters most). If even this does not lower the NLL, no code z can: the
metacontroller then has nothing to encode, and its KL term pulls the code to the prior.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irl_core.controllers import freeze, lower, sequence_nll, upper_logits  # noqa: E402
from irl_core.data import expert_episodes, training_tensors, trim  # noqa: E402
from irl_core.envs.grid import BatchedGridPinpad  # noqa: E402
from irl_core.machine import describe_machine  # noqa: E402
from irl_core.pretrain import load_base_model  # noqa: E402


def batch(model, env, layer):
    ep = trim(expert_episodes(env, 0.0))
    obs, actions = training_tensors(ep, model.world)
    with torch.no_grad():
        e = lower(model, obs[:, :-1], layer)
    subgoal = ep["subgoal"][:, : actions.shape[1]].long()
    valid = actions >= 0
    first = torch.cat([torch.ones_like(valid[:, :1]), subgoal[:, 1:] != subgoal[:, :-1]], 1) & valid
    start = first.clone()  # the first two steps of every segment
    start[:, 1:] |= first[:, :-1]
    return e, actions, subgoal, start & valid


@torch.no_grad()
def measure(model, layer, e, actions, subgoal, start, bias=None) -> dict[str, float]:
    x = e if bias is None else e + bias[subgoal.clamp_min(0)]
    logits = upper_logits(model, x, layer)
    nll, mask = sequence_nll(logits, actions)
    correct = (logits.argmax(-1) == actions) & mask
    out = {}
    for name, m in (("all steps", mask), ("segment starts", start & mask)):
        out[name] = (float(nll[m].mean()), float(correct[m].float().mean()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="checkpoints/grid/base")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-episodes", type=int, default=1024)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = freeze(load_base_model(args.checkpoint))
    held = batch(model, BatchedGridPinpad(args.eval_episodes, "pretrain", seed=10_000_019, world=model.world), args.layer)
    env = BatchedGridPinpad(args.batch, "pretrain", seed=5, world=model.world)
    bias = torch.nn.Parameter(torch.zeros(4, model.cfg.d_model))
    opt = torch.optim.Adam([bias], lr=args.lr)
    t0 = time.time()
    for _ in range(args.steps):
        e, actions, subgoal, _ = batch(model, env, args.layer)
        nll, mask = sequence_nll(upper_logits(model, e + bias[subgoal.clamp_min(0)], args.layer), actions)
        loss = nll.sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    before, after = measure(model, args.layer, *held), measure(model, args.layer, *held, bias=bias.detach())
    print(f"## Controllability of the residual stream at layer {args.layer} "
          f"(measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)\n")
    print(f"Machine: {describe_machine()}.  ")
    print(f"Command: `python scripts/diag_controllability.py --checkpoint {args.checkpoint} --layer {args.layer} "
          f"--steps {args.steps}` ({args.steps} steps × {args.batch} D* episodes, Adam {args.lr}, "
          f"{time.time() - t0:.0f} s); evaluation on {args.eval_episodes} held-out D* episodes.\n")
    print("| steps | NLL, base model | NLL, + ground-truth subgoal bias | accuracy, base | accuracy, + bias |")
    print("|---|---|---|---|---|")
    for k in before:
        print(f"| {k} | {before[k][0]:.4f} | {after[k][0]:.4f} | {before[k][1]:.3f} | {after[k][1]:.3f} |")
    print(f"\nNorm of the learned biases {bias.detach().norm(dim=1).numpy().round(3).tolist()} vs mean ‖e‖ "
          f"{float(held[0].norm(dim=-1).mean()):.2f}.")


if __name__ == "__main__":
    main()
