"""Would a subgoal code be the optimum of the paper's objective? Rate–distortion accounting on held-out D*.

    python scripts/discovery_accounting.py [--base checkpoints/grid5/base] \
        [--metacontroller checkpoints/grid5/metacontroller] [--controllers checkpoints/grid5/gt_controllers ...] \
        [--alpha 0.1] [--ties first] [--steps 1500] [--episodes 500] [--out FILE.json]

The metacontroller minimises Eq. 3, J = NLL + α·KL per step. A metacontroller that switches at every subgoal
change but whose codes do not name the subgoal has found *some* code; this script asks whether a code that
names the subgoal would have scored better on the same objective, by measuring on one fixed set of held-out
D* episodes (the expert's tie-breaking of ``--ties``):

* the base model's action NLL (no code: the collapse's distortion, rate 0);
* the NLL of each given ground-truth controller checkpoint (one-hot subgoal, no rate is charged);
* the given metacontroller's NLL, KL and J (deterministic pass, z̃ = μ);
* a **subgoal-code oracle** trained here with the paper's objective: a Gaussian code q(z | g) = N(μ_g, σ_g²)
  per ground-truth subgoal g (n_z as the metacontroller's), drawn once per segment (β = 1 exactly at each
  subgoal change, 0 elsewhere), decoded by the metacontroller's hypernetwork into U(z) at its layer, with
  KL(q ‖ N(0, I)) charged at segment starts only (elsewhere a metacontroller's encoder can output the prior at
  no cost). Its J is what the best subgoal code of this architecture reaches on this base model; if it is
  below the metacontroller's J, the objective prefers the subgoal code and the metacontroller sits in a local
  optimum (an optimisation matter); if above, no α makes the subgoal code the optimum of Eq. 3 under this base
  model.

Prints a Markdown table (and writes JSON with ``--out``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irl_core.controllers import (Hypernetwork, apply_control, freeze, load_gt_controllers, lower,  # noqa: E402
                                  sequence_nll, upper_logits)
from irl_core.data import expert_episodes, heldout_episodes, training_tensors, trim  # noqa: E402
from irl_core.discovery import infer, load_metacontroller  # noqa: E402
from irl_core.envs.grid import BatchedGridPinpad  # noqa: E402
from irl_core.machine import describe_machine  # noqa: E402
from irl_core.metacontroller import gaussian_kl  # noqa: E402
from irl_core.pretrain import load_base_model  # noqa: E402


class SubgoalCode(nn.Module):
    """q(z | g) = N(μ_g, σ_g²) per subgoal, held for the segment, decoded into U(z) by a hypernetwork."""

    def __init__(self, n_subgoals: int, n_z: int, d_model: int, rank: int, hidden: int, init_std: float = 0.1):
        super().__init__()
        self.mu = nn.Parameter(torch.randn(n_subgoals, n_z) * 0.1)
        self.logvar = nn.Parameter(torch.zeros(n_subgoals, n_z))
        self.decoder = Hypernetwork(n_z, d_model, rank, hidden, init_std)

    def forward(self, e, subgoal, valid, sample: bool):
        """e (B, T, d), subgoal (B, T), valid (B, T) → (ê, KL per step (B, T), charged at segment starts)."""
        g = subgoal.clamp_min(0).long()
        start = torch.cat([torch.ones_like(valid[:, :1]), g[:, 1:] != g[:, :-1]], 1) & valid
        mu, logvar = self.mu[g], self.logvar[g]  # (B, T, n_z), constant within a segment
        if sample:  # one draw per segment: segment k uses the noise drawn at position k
            seg = (start.long().cumsum(1) - 1).clamp_min(0).unsqueeze(-1).expand_as(mu)
            eps = torch.gather(torch.randn_like(mu), 1, seg)
            z = mu + (0.5 * logvar).exp() * eps
        else:
            z = mu
        kl = gaussian_kl(mu, logvar) * start
        return apply_control(e, self.decoder(z)), kl


def batch_of(model, episodes, layer):
    ep = trim(episodes)
    obs, actions = training_tensors(ep, model.world)
    with torch.no_grad():
        e = lower(model, obs[:, :-1], layer)
    return e, actions, ep["subgoal"][:, : actions.shape[1]], actions >= 0


def nll_of(model, layer, e_hat, actions) -> float:
    nll, mask = sequence_nll(upper_logits(model, e_hat, layer), actions)
    return float(nll.sum() / mask.sum())


def train_oracle(model, layer, n_z, rank, hidden, alpha, ties, steps, batch, lr, seed, progress=True):
    torch.manual_seed(seed)
    oracle = SubgoalCode(model.world.n_subgoals, n_z, model.cfg.d_model, rank, hidden)
    opt = torch.optim.AdamW(oracle.parameters(), lr=lr, weight_decay=0.03)
    env = BatchedGridPinpad(batch, "pretrain", "cpu", seed=seed, world=model.world)
    for _ in tqdm(range(steps), desc="subgoal-code oracle", unit="step", disable=not progress):
        with torch.no_grad():
            e, actions, subgoal, valid = batch_of(model, expert_episodes(env, 0.0, ties), layer)
        e_hat, kl = oracle(e, subgoal, valid, sample=True)
        nll, mask = sequence_nll(upper_logits(model, e_hat, layer), actions)
        n = mask.sum()
        loss = nll.sum() / n + alpha * kl.sum() / n
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(oracle.parameters(), 1.0)
        opt.step()
    return oracle.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="checkpoints/grid5/base")
    ap.add_argument("--metacontroller", default="checkpoints/grid5/metacontroller")
    ap.add_argument("--controllers", nargs="*", default=["checkpoints/grid5/gt_controllers"])
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--ties", choices=("random", "first"), default="first")
    ap.add_argument("--steps", type=int, default=1500, help="oracle training steps (0: skip the oracle)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()

    model = freeze(load_base_model(args.base))
    meta, meta_model, layer, _ = load_metacontroller(args.metacontroller, base=args.base)
    held = heldout_episodes(args.episodes, args.seed, model.world, "cpu", args.ties)
    e, actions, subgoal, valid = batch_of(model, held, layer)
    segments = float((torch.cat([torch.ones_like(valid[:, :1]), subgoal[:, 1:] != subgoal[:, :-1]], 1)
                      & valid).sum() / held["length"].shape[0])
    rows = [{"what": "base model, no code (collapse)", "nll": nll_of(model, layer, e, actions), "kl": 0.0}]
    for path in args.controllers:
        ctrl, _ = load_gt_controllers(path, base=model)
        e_c = lower(model, training_tensors(held, model.world)[0][:, :-1], ctrl.layer) if ctrl.layer != layer else e
        with torch.no_grad():
            rows.append({"what": f"GT controllers {path} (layer {ctrl.layer}; rate not charged)",
                         "nll": nll_of(model, ctrl.layer, ctrl(e_c, subgoal), actions), "kl": None})
    r = infer(meta_model, meta, layer, held)
    rows.append({"what": f"metacontroller {args.metacontroller}", "nll": r["action_nll"], "kl": r["kl"]})
    if args.steps > 0:
        oracle = train_oracle(model, layer, meta.cfg.n_z, meta.cfg.rank, meta.cfg.dec_hidden, args.alpha, args.ties,
                              args.steps, args.batch_size, args.lr, args.seed)
        with torch.no_grad():
            e_hat, kl = oracle(e, subgoal, valid, sample=False)
        rows.append({"what": f"subgoal-code oracle (α {args.alpha}, {args.steps} steps)",
                     "nll": nll_of(model, layer, e_hat, actions), "kl": float(kl.sum() / valid.sum())})
    for row in rows:
        row["J"] = None if row["kl"] is None else row["nll"] + args.alpha * row["kl"]

    print(f"## Rate–distortion accounting ({datetime.date.today()}, {describe_machine()})\n")
    print(f"{args.episodes} held-out D* episodes ({args.ties} ties), mean length {float(held['length'].float().mean()):.2f}, "
          f"{segments:.2f} segments per episode; layer {layer}; J = NLL + {args.alpha}·KL per step.\n")
    print("| code | action NLL | KL per step | J |\n|---|---|---|---|")
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    for row in rows:
        print(f"| {row['what']} | {fmt(row['nll'])} | {fmt(row['kl'])} | {fmt(row['J'])} |")
    print(f"\n({time.time() - t0:.0f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "segments_per_episode": segments, "rows": rows},
                                             indent=1))


if __name__ == "__main__":
    main()
