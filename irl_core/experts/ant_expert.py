"""The ant-pinpad expert (docs/paper.md §1.3): a grid-level shortest-path planner plus a PPO-trained locomotion
policy that walks in the direction the planner gives.

Planner (:mod:`irl_core.experts.ant_planner`): breadth-first distances to the target colour through allowed
cells give the next cell and the direction to walk in. Episodes of any actor: :mod:`irl_core.experts.ant_episodes`.

Locomotion policy (smaller than the paper's SSM of width 256 and depth 6, which is a sequence model over
the whole observation; here the planner does the sequencing, so a memory-less MLP suffices):

* input (``FEATURE_DIM = 28``, yaw-invariant so that one gait serves every heading): torso height, gravity
  direction in the body frame (3), 8 joint angles, torso linear and angular velocity in the yaw-aligned
  frame (3 + 3), 8 joint velocities, and the planner's direction in the yaw-aligned frame (2); normalised
  by running mean/std statistics stored with the weights;
* actor: MLP 28→128→128→8 (tanh), Gaussian with a state-independent log-std; critic: a separate MLP
  28→128→128→1;
* reward: ``v·d`` (torso velocity along the planner direction, m/s, averaged over the control step) + 0.05
  alive bonus − 0.05‖a‖² control cost + 10 on task success (the paper's task reward, scaled so that it
  matters next to the dense term);
* PPO (CleanRL's continuous-action PPO): 32 environments × 128 steps a rollout, 6 epochs of 8 minibatches,
  Adam lr 3e-4 (linearly annealed), γ 0.99, λ 0.95, clip 0.2, no entropy bonus, gradient norm ≤ 0.5,
  rewards scaled by a running standard deviation of the discounted return. Training episodes are real
  ant-pinpad episodes on the 16 pretraining tasks with random layouts, so the policy meets turns and walls.

At data-generation time the expert samples from its Gaussian (dataset D) or takes its mean (D*). When
acting (not in training) the planner adds a safety push away from forbidden neighbouring cells
(``ACT_MARGIN = 0.3`` cells, ``ACT_PUSH = 1``, see :class:`Planner`); on 128 pretraining episodes of a
half-trained policy it raised success from 0.58 to 0.64 (sampled) and from 0.73 to 0.80 (mean action),
mostly by removing "wall" endings.

One module (about 460 lines) for one algorithm read top to bottom, as CleanRL's ``ppo.py``: features,
policy, acting, and its PPO training (the planner and the episodes of any actor are modules of their own).
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from irl_core.checkpoints import CheckpointError, load_checkpoint, load_state_into, save_checkpoint
from irl_core.envs import ant as A
from irl_core.experts.ant_planner import ACT_MARGIN, ACT_PUSH, Planner

KIND = "ant-expert"
FEATURE_DIM = 28
ACT_DIM = 8
DEFAULT_CHECKPOINT = "checkpoints/ant/expert"


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------
def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """(n, 4) unit quaternions (w, x, y, z) → (n, 3, 3) rotation matrices (body → world)."""
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


def features(qpos: np.ndarray, qvel: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Yaw-invariant policy input (n, 28) from ``qpos`` (n, 15), ``qvel`` (n, 14), world ``direction`` (n, 2)."""
    R = quat_to_mat(qpos[:, 3:7])                               # (n, 3, 3)
    yaw = np.arctan2(R[:, 1, 0], R[:, 0, 0])
    cy, sy = np.cos(yaw), np.sin(yaw)

    def to_heading(v):  # world (n, 2) → yaw-aligned frame
        return np.stack([cy * v[:, 0] + sy * v[:, 1], -sy * v[:, 0] + cy * v[:, 1]], -1)

    gravity = -R[:, 2, :]                                       # world −z in the body frame (n, 3)
    lin = np.concatenate([to_heading(qvel[:, :2]), qvel[:, 2:3]], 1)  # (n, 3)
    ang_world = np.einsum("nij,nj->ni", R, qvel[:, 3:6])        # body angular velocity → world
    ang = np.concatenate([to_heading(ang_world[:, :2]), ang_world[:, 2:3]], 1)
    feats = np.concatenate([qpos[:, 2:3], gravity, qpos[:, 7:], lin, ang, qvel[:, 6:], to_heading(direction)], 1)
    return feats.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------------
def _layer(i: int, o: int, std: float = math.sqrt(2)) -> nn.Linear:
    lin = nn.Linear(i, o)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.zeros_(lin.bias)
    return lin


class AntPolicy(nn.Module):
    """Gaussian actor and critic MLPs with running input normalisation (all state in ``state_dict``)."""

    def __init__(self, hidden: int = 128, init_log_std: float = -0.5):
        super().__init__()
        self.config = {"hidden": hidden, "init_log_std": init_log_std}
        self.register_buffer("obs_mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("obs_var", torch.ones(FEATURE_DIM))
        self.register_buffer("obs_count", torch.tensor(1e-4))
        self.actor = nn.Sequential(_layer(FEATURE_DIM, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(),
                                   _layer(hidden, ACT_DIM, 0.01))
        self.critic = nn.Sequential(_layer(FEATURE_DIM, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(),
                                    _layer(hidden, 1, 1.0))
        self.log_std = nn.Parameter(torch.full((ACT_DIM,), float(init_log_std)))

    @torch.no_grad()
    def update_stats(self, x: torch.Tensor) -> None:
        """Welford-style merge of a batch (B, 28) into the running mean/variance."""
        bm, bv, bn = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, tot = bm - self.obs_mean, self.obs_count + bn
        self.obs_mean += delta * bn / tot
        self.obs_var.copy_((self.obs_var * self.obs_count + bv * bn + delta**2 * self.obs_count * bn / tot) / tot)
        self.obs_count.copy_(tot)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.obs_mean) / torch.sqrt(self.obs_var + 1e-8)).clamp(-10, 10)

    def dist(self, x: torch.Tensor) -> torch.distributions.Normal:
        mean = self.actor(self.norm(x))
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.norm(x)).squeeze(-1)

    @torch.no_grad()
    def act(self, x: np.ndarray, deterministic: bool = False, generator: torch.Generator | None = None) -> np.ndarray:
        """(n, 28) features → (n, 8) actions (mean, or a Gaussian sample), not clipped."""
        xt = torch.as_tensor(x, dtype=torch.float32)
        mean = self.actor(self.norm(xt))
        if deterministic:
            return mean.numpy()
        noise = torch.randn(mean.shape, generator=generator)
        return (mean + noise * self.log_std.exp()).numpy()


def save_policy(policy: AntPolicy, path: str | Path, meta: dict | None = None) -> Path:
    return save_checkpoint(path, policy.state_dict(), KIND, policy.config, meta)


def load_policy(path: str | Path = DEFAULT_CHECKPOINT) -> AntPolicy:
    """Load a saved expert; missing, corrupted or mismatched files raise CheckpointError naming the file."""
    state, config, _ = load_checkpoint(path, kind=KIND)
    try:
        policy = AntPolicy(**config)
    except TypeError as e:
        raise CheckpointError(f"{path}: bad expert config {config} ({e})") from None
    load_state_into(policy, state, path)
    policy.eval()
    return policy


class AntExpert:
    """Planner + locomotion policy acting on a batch: ``actions = expert.act(batch)`` (n, 8) in [−1, 1]."""

    def __init__(self, policy: AntPolicy, deterministic: bool = False, seed: int = 0,
                 margin: float = ACT_MARGIN, push: float = ACT_PUSH):
        self.policy = policy
        self.planner = Planner(margin, push)
        self.deterministic = deterministic
        self.generator = torch.Generator().manual_seed(int(seed))
        sd = {k: v.detach().double().numpy() for k, v in policy.state_dict().items()}
        self._mean_np, self._std_np = sd["obs_mean"], np.sqrt(sd["obs_var"] + 1e-8)
        self._layers = [(sd[f"actor.{j}.weight"], sd[f"actor.{j}.bias"]) for j in (0, 2, 4)]
        self.action_std = np.exp(sd["log_std"])

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CHECKPOINT, **kw) -> "AntExpert":
        return cls(load_policy(path), **kw)

    def mean_action(self, x: np.ndarray) -> np.ndarray:
        """The Gaussian's mean (n, 8) for features (n, 28), computed row by row in float64 so that a row's
        result never depends on the other rows (batched BLAS kernels may differ in the last bits, which
        the chaotic ant dynamics amplify): rollouts are the same whatever the number of parallel episodes."""
        out = np.empty((len(x), ACT_DIM))
        for i, row in enumerate(np.asarray(x, dtype=np.float64)):
            h = np.clip((row - self._mean_np) / self._std_np, -10, 10)
            for j, (w, b) in enumerate(self._layers):
                h = w @ h + b
                if j < 2:
                    h = np.tanh(h)
            out[i] = h
        return out

    def act(self, batch: A.AntPinpadBatch) -> np.ndarray:
        x = features(batch.qpos, batch.qvel, self.planner.directions(batch))
        a = self.mean_action(x)
        if not self.deterministic:
            a = a + torch.randn(a.shape, generator=self.generator, dtype=torch.float64).numpy() * self.action_std
        return np.clip(a, -1.0, 1.0)


# --------------------------------------------------------------------------------------------------
# PPO training
# --------------------------------------------------------------------------------------------------
@dataclass
class ExpertConfig:
    """PPO settings of the locomotion expert (see the module docstring)."""
    total_steps: int = 16_000_000  # environment steps (all environments together)
    num_envs: int = 32             # ant-pinpad episodes stepped together in one process
    num_steps: int = 128           # steps per environment per rollout
    epochs: int = 6                # PPO epochs per rollout
    minibatches: int = 8           # minibatches per epoch
    lr: float = 3e-4               # Adam learning rate (linearly annealed to 0)
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 128
    init_log_std: float = -0.5
    alive_bonus: float = 0.05
    ctrl_cost: float = 0.05
    success_bonus: float = 10.0
    checkpoint_every: int = 20     # updates between checkpoints
    seed: int = 0
    threads: int = 1               # torch CPU threads


PRESETS = {
    "tiny": dict(total_steps=512, num_envs=4, num_steps=64, epochs=1, minibatches=2, checkpoint_every=1),
    "cpu": dict(),
}


def make_config(preset: str = "cpu", **overrides) -> ExpertConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    kw = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return ExpertConfig(**kw)


class _RewardScaler:
    """Divides rewards by the running std of the discounted return (as gymnasium's NormalizeReward)."""

    def __init__(self, n: int, gamma: float):
        self.ret = np.zeros(n)
        self.gamma = gamma
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, r: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + r
        bm, bv, bn = self.ret.mean(), self.ret.var(), len(r)
        delta, tot = bm - self.mean, self.count + bn
        self.mean += delta * bn / tot
        self.var = (self.var * self.count + bv * bn + delta**2 * self.count * bn / tot) / tot
        self.count = tot
        self.ret[done] = 0.0
        return r / math.sqrt(self.var + 1e-8)

    def state(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}


def collect_rollout(policy: "AntPolicy", batch, planner: "Planner", cfg: "ExpertConfig", scaler, bufs, ep_ret, ep_len,
                    recent) -> torch.Tensor:
    """``cfg.num_steps`` steps of every env into ``bufs`` (features, actions, log-probs, scaled rewards, dones,
    values), resetting finished episodes and recording them in ``recent``; returns the features after the last
    step. The shaped reward is the torso's velocity along the planner's direction, an alive bonus, a control
    cost and the success bonus."""
    obs_buf, act_buf, logp_buf, rew_buf, done_buf, val_buf = bufs
    direction = planner.directions(batch)
    x = torch.as_tensor(features(batch.qpos, batch.qvel, direction))
    for step in range(cfg.num_steps):
        policy.update_stats(x)
        with torch.no_grad():
            d = policy.dist(x)
            a = d.sample()
            logp = d.log_prob(a).sum(-1)
            v = policy.value(x)
        xy0 = batch.qpos[:, :2].copy()
        task_r, term, trunc, event = batch.step(a.numpy())
        vel = (batch.qpos[:, :2] - xy0) / A.CONTROL_DT
        a_c = np.clip(a.numpy(), -1, 1)
        r = (vel * direction).sum(1) + cfg.alive_bonus - cfg.ctrl_cost * (a_c**2).sum(1) + cfg.success_bonus * task_r
        done = term | trunc
        obs_buf[step], act_buf[step], logp_buf[step], val_buf[step] = x, a, logp, v
        rew_buf[step] = torch.as_tensor(scaler(r, done), dtype=torch.float32)
        done_buf[step] = torch.as_tensor(done, dtype=torch.float32)
        ep_ret += r
        ep_len += 1
        for i in np.flatnonzero(done):
            recent.append((ep_ret[i], ep_len[i], float(event[i] == A.EVENTS.index("success")), A.EVENTS[event[i]]))
            ep_ret[i], ep_len[i] = 0.0, 0
            batch.reset_one(i)
        direction = planner.directions(batch)
        x = torch.as_tensor(features(batch.qpos, batch.qvel, direction))
    return x


def gae(rew: torch.Tensor, val: torch.Tensor, done: torch.Tensor, next_v: torch.Tensor, gamma: float,
        lam: float) -> torch.Tensor:
    """Generalised advantage estimates (T, N) of a rollout of T steps in N envs (``done`` ends an episode)."""
    adv = torch.zeros_like(rew)
    last = torch.zeros(rew.shape[1])
    for s in reversed(range(rew.shape[0])):
        nv = next_v if s == rew.shape[0] - 1 else val[s + 1]
        nonterm = 1.0 - done[s]
        delta = rew[s] + gamma * nv * nonterm - val[s]
        last = delta + gamma * lam * nonterm * last
        adv[s] = last
    return adv


def ppo_update(policy: "AntPolicy", opt: torch.optim.Optimizer, cfg: "ExpertConfig", obs, act, logp, adv, ret) -> dict:
    """``cfg.epochs`` passes of clipped PPO over the flattened rollout in ``cfg.minibatches`` minibatches
    (advantages normalised per minibatch); returns the last minibatch's losses and the mean clip fraction."""
    n = len(obs)
    mb = n // cfg.minibatches
    clipfracs, stats = [], {}
    for _ in range(cfg.epochs):
        perm = torch.randperm(n)
        for k in range(cfg.minibatches):
            idx = perm[k * mb:(k + 1) * mb]
            d = policy.dist(obs[idx])
            new_logp = d.log_prob(act[idx]).sum(-1)
            ratio = (new_logp - logp[idx]).exp()
            a_ = adv[idx]
            a_ = (a_ - a_.mean()) / (a_.std() + 1e-8)
            pg_loss = torch.max(-a_ * ratio, -a_ * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
            v_loss = 0.5 * ((policy.value(obs[idx]) - ret[idx]) ** 2).mean()
            entropy = d.entropy().sum(-1).mean()
            loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()
            with torch.no_grad():
                clipfracs.append(((ratio - 1).abs() > cfg.clip).float().mean().item())
                approx_kl = ((ratio - 1) - (new_logp - logp[idx])).mean().item()
            stats = {"losses/policy_loss": pg_loss.item(), "losses/value_loss": v_loss.item(),
                     "losses/entropy": entropy.item(), "losses/approx_kl": approx_kl}
    return {**stats, "losses/clipfrac": float(np.mean(clipfracs))}


def episode_summary(recent) -> dict:
    """Mean return, length, success and termination rates of the recent (return, length, success, event) records."""
    if not recent:
        return {}
    arr = np.array([r[:3] for r in recent], dtype=np.float64)
    out = {"charts/episodic_return": float(arr[:, 0].mean()), "charts/episodic_length": float(arr[:, 1].mean()),
           "charts/success_rate": float(arr[:, 2].mean())}
    for ev in ("wrong_colour", "wall", "height"):
        out[f"charts/{ev}_rate"] = float(np.mean([r[3] == ev for r in recent]))
    return out


def train_expert(cfg: ExpertConfig, run, export: str | Path | None = None, progress: bool = True) -> AntPolicy:
    """Train (or resume from ``run``'s last checkpoint) and return the policy; writes metrics and checkpoints."""
    from tqdm import tqdm

    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    policy = AntPolicy(cfg.hidden, cfg.init_log_std)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    batch_size = cfg.num_envs * cfg.num_steps
    n_updates = max(1, cfg.total_steps // batch_size)
    start_update, wall_before = 0, 0.0
    scaler = _RewardScaler(cfg.num_envs, cfg.gamma)

    ckpt = run.checkpoint_dir / "last"
    if ckpt.with_suffix(".json").exists():
        state, _, meta = load_checkpoint(ckpt, kind=KIND)
        opt_state, _, _ = load_checkpoint(run.checkpoint_dir / "last_opt", kind=KIND + "-optimizer")
        load_state_into(policy, state, ckpt)
        opt.load_state_dict(_unflatten_opt(opt_state, opt))
        start_update = int(meta["update"])
        wall_before = float(meta.get("wall_s", 0.0))
        scaler.mean, scaler.var, scaler.count = meta["scaler"]["mean"], meta["scaler"]["var"], meta["scaler"]["count"]
        rng = np.random.default_rng([cfg.seed, start_update])
        torch.manual_seed(cfg.seed + start_update)
        run.truncate_metrics(start_update * batch_size)
    run.write_config(cfg)
    run.set_status("running")

    batch = A.AntPinpadBatch(cfg.num_envs)
    planner = Planner()
    for i in range(cfg.num_envs):
        batch.seed(i, int(rng.integers(2**31)))
        batch.reset_one(i)
    ep_ret = np.zeros(cfg.num_envs)
    ep_len = np.zeros(cfg.num_envs, dtype=np.int64)
    recent = deque(maxlen=200)  # (return, length, success)

    T, N = cfg.num_steps, cfg.num_envs
    bufs = (torch.zeros(T, N, FEATURE_DIM), torch.zeros(T, N, ACT_DIM), *(torch.zeros(T, N) for _ in range(4)))

    t0 = time.time()
    bar = tqdm(total=n_updates * batch_size, initial=start_update * batch_size, unit="step", disable=not progress,
               desc="ant expert")
    global_step = start_update * batch_size
    try:
        for update in range(start_update, n_updates):
            lr = cfg.lr * (1.0 - update / n_updates)
            for g in opt.param_groups:
                g["lr"] = lr
            x = collect_rollout(policy, batch, planner, cfg, scaler, bufs, ep_ret, ep_len, recent)
            obs_buf, act_buf, logp_buf, rew_buf, done_buf, val_buf = bufs
            global_step += batch_size
            with torch.no_grad():
                next_v = policy.value(x)
            adv = gae(rew_buf, val_buf, done_buf, next_v, cfg.gamma, cfg.gae_lambda)
            stats = ppo_update(policy, opt, cfg, obs_buf.reshape(-1, FEATURE_DIM), act_buf.reshape(-1, ACT_DIM),
                               logp_buf.reshape(-1), adv.reshape(-1), (adv + val_buf).reshape(-1))
            elapsed = wall_before + time.time() - t0
            metrics = {**stats, "charts/learning_rate": lr,
                       "charts/SPS": (global_step - start_update * batch_size) / max(time.time() - t0, 1e-6),
                       "charts/action_std": float(policy.log_std.detach().exp().mean()), "charts/wall_s": elapsed,
                       **episode_summary(recent)}
            run.log(global_step, **metrics)
            bar.update(batch_size)
            bar.set_postfix(succ=f"{metrics.get('charts/success_rate', 0):.2f}",
                            ret=f"{metrics.get('charts/episodic_return', 0):.1f}", sps=f"{metrics['charts/SPS']:.0f}")
            if (update + 1) % cfg.checkpoint_every == 0 or update + 1 == n_updates:
                meta = {"update": update + 1, "global_step": global_step, "wall_s": elapsed,
                        "scaler": scaler.state(), "config": asdict(cfg)}
                save_policy(policy, ckpt, meta)
                save_checkpoint(run.checkpoint_dir / "last_opt", _flatten_opt(opt), KIND + "-optimizer", {}, {})
        bar.close()
        run.set_status("done", wall_s=wall_before + time.time() - t0)
    except BaseException as e:
        bar.close()
        if isinstance(e, KeyboardInterrupt):
            run.set_status("cancelled")
        else:
            run.fail(e)
        raise
    if export:
        save_policy(policy, export, {"trained_steps": global_step, "wall_s": wall_before + time.time() - t0,
                                     "config": asdict(cfg), "run": str(run.path)})
    return policy


def _flatten_opt(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def _unflatten_opt(flat: dict[str, torch.Tensor], opt: torch.optim.Optimizer) -> dict:
    sd = opt.state_dict()
    state: dict = {}
    for key, v in flat.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    sd["state"] = state
    return sd
