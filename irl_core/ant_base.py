"""The ant base model acting alone in MuJoCo: closed-loop rollouts of the Hawk SSM (its step form) in the
batched ant env, and their success on the pretraining tasks and on the held-out task; and the *handover* test, which
asks whether the model steers toward a target once the expert has shown it (or only keeps going as it was going).

The model reads each slot's observation, its recurrent state is reset when the slot starts an episode, and the
action is a draw from its Gaussian (``sample=True``, as in D) or its mean, clipped to [−1, 1]. Slots are stepped
one at a time, so that an episode does not depend on which other episodes ran beside it (batched kernels differ in
the last bits with the batch, and the ant's dynamics amplify them). Episodes are
seeded exactly as the expert's (``irl_core.experts.ant_episodes.run_episodes``), so the base model and the
expert are compared on the same layouts, starts and tasks.
"""
from __future__ import annotations

import numpy as np
import torch

from irl_core.device import one_torch_thread
from irl_core.envs import ant as A
from irl_core.envs.tasks import ANT_HELDOUT_TASK, ANT_PRETRAIN_TASKS
from irl_core.experts.ant_episodes import ExpertActor, evaluate, run_episodes
from irl_core.experts.ant_planner import distance_map, next_cell
from irl_core.models.ant_ssm import AntSSM, AntSSMState

__all__ = ["BaseModelActor", "HandoverActor", "ant_target_probe", "evaluate_base_model", "first_colour_after",
           "handover", "run_base_episodes"]


class BaseModelActor:
    """The ant base model as an actor of ``run_episodes`` (``start`` / ``act``), one recurrent state per slot."""

    def __init__(self, model: AntSSM, sample: bool = True):
        self.model, self.sample = model.eval(), sample
        self.state = None
        self.gens: dict[int, torch.Generator] = {}

    def start(self, i: int, gen: torch.Generator) -> None:
        self.gens[i] = gen
        if self.state is not None:
            self.state.h[:, i] = 0
            self.state.conv[:, i] = 0

    def _step(self, batch, i: int, obs: torch.Tensor, state: AntSSMState):
        """One slot's model step (subclasses steer it: ``irl_core.ant_controllers.ControlledActor``)."""
        return self.model.step(obs, state)

    @torch.no_grad()
    def act(self, batch, active: np.ndarray) -> np.ndarray:
        with one_torch_thread():  # one-row steps (the app renders these beside training jobs)
            return self._act(batch, active)

    def _act(self, batch, active: np.ndarray) -> np.ndarray:
        dev = self.model.obs_mean.device
        if self.state is None:
            self.state = self.model.initial_state(batch.n, dev)
        obs = torch.as_tensor(np.asarray(batch.observe()), dtype=torch.float32, device=dev)
        actions = np.zeros((batch.n, self.model.cfg.act_dim))
        for i in np.flatnonzero(active):  # one slot at a time: a batched kernel's last bits would depend on the batch
            (mean, log_std, _), st = self._step(batch, i, obs[i:i + 1], AntSSMState(self.state.h[:, i:i + 1],
                                                                                      self.state.conv[:, i:i + 1]))
            self.state.h[:, i:i + 1], self.state.conv[:, i:i + 1] = st.h, st.conv
            actions[i] = mean[0].double().cpu().numpy()
            if self.sample:
                noise = torch.randn(actions.shape[1], generator=self.gens[i], dtype=torch.float64).numpy()
                actions[i] += noise * log_std[0].double().exp().cpu().numpy()
        return np.clip(actions, -1, 1)


class HandoverActor:
    """The expert acts for the first ``t0`` steps of every episode while the base model reads the same observations
    (its recurrent state follows the expert's episode); from step ``t0`` on the base model acts (``t0=None``: the
    expert walks the whole episode and the model is not run). The expert's noise comes from its own generator, drawn
    from the episode's, so two actors with different ``t0`` play the same first ``min(t0)`` steps."""

    def __init__(self, model: AntSSM, expert, t0: int | None, sample: bool = True):
        self.base, self.expert, self.t0 = BaseModelActor(model, sample), ExpertActor(expert), t0

    def start(self, i: int, gen: torch.Generator) -> None:
        self.expert.start(i, torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen))))
        self.base.start(i, gen)

    def act(self, batch, active: np.ndarray) -> np.ndarray:
        if self.t0 is None:  # the expert walks on: the model's reading along would change nothing
            return self.expert.act(batch, active)
        actions = self.base.act(batch, active)  # every step, so that the model's state reads the whole episode
        early = active & (batch.t < self.t0)
        if early.any():
            actions[early] = self.expert.act(batch, active)[early]
        return actions


def first_colour_after(uv: np.ndarray, layout: np.ndarray, t0: int) -> int:
    """The first colour tile the torso enters at or after step ``t0`` (−1: none), from recorded cell positions."""
    row, col, inside = A.cell_of(uv[:, 0], uv[:, 1])
    prev = (int(row[max(0, t0)]), int(col[max(0, t0)])) if len(uv) > t0 else None
    for t in range(max(1, t0 + 1), len(uv)):
        here = (int(row[t]), int(col[t]))
        if inside[t] and here != prev and layout[here] >= 0:
            return int(layout[here])
        prev = here
    return -1


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def planner_direction(layout: np.ndarray, uv: np.ndarray, target: int) -> np.ndarray | None:
    """The expert planner's unit direction (cell units) from torso position ``uv`` toward ``target``: to the centre
    of the next cell of the shortest path (without the acting-time safety push), None if unreachable."""
    row, col, _ = (int(x) for x in A.cell_of(uv[0], uv[1]))
    dist = distance_map(layout, target)
    nxt = (row, col) if dist[row, col] == 0 else next_cell(dist, (row, col))
    if nxt is None:
        return None
    return _unit(np.array([nxt[1] + 0.5, nxt[0] + 0.5]) - uv)


def handover_episodes(res: dict, t0: int, before: int = 10, after: int = 20) -> list[dict]:
    """Per episode of ``run_episodes(..., record=True)`` that lasts past ``t0``: the colour the drawn task asks for
    at ``t0`` (``target``), the first colour entered from ``t0`` (``reached``), the angle between the ant's motion
    over the ``before`` steps up to ``t0`` and the planner's direction to the target (``turn``, degrees), and the
    cosines of its motion over the ``after`` steps from ``t0`` (fewer if the episode ends sooner) with that
    direction (``follows_plan``) and with its earlier motion (``keeps_going``). Which episodes count depends on
    the first ``t0`` steps only, so two actors that share them are judged on the same episodes."""
    rows = []
    for j, uv in enumerate(res["uv"]):
        if res["length"][j] <= t0 or t0 < before:
            continue
        task, k = res["task"][j], int(res["progress"][j][t0])
        if k >= len(task):
            continue
        plan = planner_direction(res["layout"][j], uv[t0], int(task[k]))
        if plan is None:
            continue
        prev, nxt = _unit(uv[t0] - uv[t0 - before]), _unit(uv[min(t0 + after, len(uv) - 1)] - uv[t0])
        rows.append({"target": int(task[k]), "reached": first_colour_after(uv, res["layout"][j], t0),
                     "turn": float(np.degrees(np.arccos(np.clip(prev @ plan, -1, 1)))),
                     "follows_plan": float(nxt @ plan), "keeps_going": float(nxt @ prev)})
    return rows


def summarise_handover(rows: list[dict], straight: float = 30.0, turn: float = 60.0) -> dict:
    """Rates over all episodes and split by whether the target lay straight ahead at the handover (``turn`` below
    ``straight`` degrees) or off to a side (above ``turn`` degrees). ``reached_other`` is the rate of entering one
    given other colour first (the share of episodes that enter a colour other than the target, over the three of
    them): what reaching the target is compared with when nothing steers toward it."""
    def part(sel):
        return {"episodes": len(sel),
                "reached_target": float(np.mean([r["reached"] == r["target"] for r in sel])) if sel else None,
                "reached_other": float(np.mean([r["reached"] not in (-1, r["target"]) for r in sel]))
                / (A.N_COLOURS - 1) if sel else None,
                "follows_plan": float(np.mean([r["follows_plan"] for r in sel])) if sel else None,
                "keeps_going": float(np.mean([r["keeps_going"] for r in sel])) if sel else None}
    return {"all": part(rows), "straight": part([r for r in rows if r["turn"] < straight]),
            "turn": part([r for r in rows if r["turn"] > turn])}


def handover(model: AntSSM, expert, t0: int = 40, episodes: int = 200, seed: int = 0, sample: bool = True,
             tasks=ANT_PRETRAIN_TASKS) -> dict:
    """The expert walks the first ``t0`` steps of each episode (so the task's current colour is shown in the model's
    context), then either the base model (``handover``) or the expert (``expert``, the yardstick) walks on, on the
    same episodes: how often each enters the expert's target colour first, and whether it turns toward the
    target or keeps going, split by whether the target lay ahead or to a side (``summarise_handover``). A model
    that imitates by continuing its own motion (the copycat failure of behaviour cloning with history) does as
    well as the expert on targets ahead and much worse on targets to a side."""
    out = {"t0": t0, "episodes": episodes, "seed": seed, "sample": sample}
    for name, start in (("handover", t0), ("expert", None)):
        res = run_episodes(HandoverActor(model, expert, start, sample), tasks, episodes, seed, record=True)
        out[name] = summarise_handover(handover_episodes(res, t0))
    return out


def run_base_episodes(model: AntSSM, tasks, episodes: int, seed: int = 0, sample: bool = True, record: bool = False,
                      n_parallel: int = 32) -> dict:
    """``run_episodes`` with the base model acting (see the module docstring)."""
    return run_episodes(BaseModelActor(model, sample), tasks, episodes, seed, n_parallel=n_parallel, record=record)


def evaluate_base_model(model: AntSSM, episodes: int = 200, seed: int = 0, sample: bool = True,
                        heldout_episodes: int | None = None) -> dict:
    """Success of the base model alone on the 16 pretraining tasks and on the held-out task.

    The base model is not told its task (the observation has none), so ``pretrain`` (success on the episode's
    drawn task) is bounded by about a sixteenth of its skill; ``pretrain_any`` counts an episode a success
    when it completes *any* pretraining task (what an imitator of the expert on all of them can do, and what
    the expert's 0.71 on its own task is compared with); ``heldout`` is success on 0-1-2-3, which no
    pretraining task starts like."""
    return {"policy": "base model", "sample": sample, "seed": seed,
            "pretrain": evaluate(BaseModelActor(model, sample), ANT_PRETRAIN_TASKS, episodes, seed),
            "pretrain_any": evaluate(BaseModelActor(model, sample), ANT_PRETRAIN_TASKS, episodes, seed, any_task=True),
            "heldout": evaluate(BaseModelActor(model, sample), [ANT_HELDOUT_TASK], heldout_episodes or episodes, seed)}


@torch.no_grad()
def ant_residual_stream(model: AntSSM, bank, ids, batch: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The residual stream after every layer (layer 0: the embedding) at every valid step of episodes ``ids`` of an
    ``EpisodeBank``: ``resid`` (n_steps, L+1, d) float32, ``subgoal`` (n_steps,) and ``episode`` (n_steps,)."""
    names = ["hook_embed"] + [f"blocks.{l}.hook_resid_post" for l in range(model.n_layers)]
    dev = model.obs_mean.device
    resid, subgoal, episode = [], [], []
    for k in range(0, len(ids), batch):
        part = list(ids[k:k + batch])
        b = bank.batch(part, dev)
        _, cache = model.run_with_cache(b["obs"], names_filter=names)
        valid = b["subgoal"] >= 0
        resid.append(torch.stack([cache[n].float() for n in names], 2)[valid].cpu().numpy())
        subgoal.append(b["subgoal"][valid].cpu().numpy())
        episode.append(torch.as_tensor(part, device=dev)[:, None].expand_as(valid)[valid].cpu().numpy())
    return np.concatenate(resid), np.concatenate(subgoal), np.concatenate(episode)


def ant_probe_report(model: AntSSM, data, episodes: int = 500, seed: int = 0) -> dict:
    """Per-layer linear probes of the subgoal (the colour sought) with shuffled-label controls, and (``location``)
    the read-out of where it lies (``ant_target_probe``) from the same residual stream, on up to
    ``episodes`` episodes of dataset file ``data`` (D* for the paper's probes), split by episode
    (``irl_core.probing.probe_layers``)."""
    from irl_core.ant_pretrain import EpisodeBank
    from irl_core.probing import probe_layers
    bank = EpisodeBank(data, 0.5)
    ids = list(range(min(episodes, len(bank.obs))))
    resid, subgoal, episode = ant_residual_stream(model, bank, ids)
    out = probe_layers(resid, subgoal, episode, seed)
    mid = model.n_layers // 2
    return {"data": str(data), "episodes": len(ids), "n_layers": model.n_layers, "mid_layer": mid,
            "mid_margin": out["accuracy"][mid] - out["control"][mid], **out,
            "location": _location_r2(bank, ids, resid, subgoal, episode, mid, seed)}  # where the colour lies


def ant_target_probe(model: AntSSM, data, episodes: int = 500, seed: int = 0, test_fraction: float = 0.25) -> dict:
    """Per layer, the held-out R² of a linear (ridge) read-out of *where* the colour sought lies: its offset from the
    torso, (Δx, Δy) as the observation gives it for every colour (``irl_core.envs.ant.COLOUR_OFFSETS``), on up to
    ``episodes`` episodes of dataset file ``data``, split by episode.

    The embedding (layer 0) is linear in the observation, so it holds all four colours' offsets but not which one
    is sought: its R² is what a read-out gets without knowing the target. A layer that does better has computed where
    the ant is going. The colour probe (``ant_probe_report``) asks for the colour's *name*, which a model that
    steers by location need not keep."""
    from irl_core.ant_pretrain import EpisodeBank
    bank = EpisodeBank(data, 0.5)
    ids = list(range(min(episodes, len(bank.obs))))
    resid, subgoal, episode = ant_residual_stream(model, bank, ids)
    return _location_r2(bank, ids, resid, subgoal, episode, model.n_layers // 2, seed, test_fraction) | {
        "data": str(data), "episodes": len(ids), "n_layers": model.n_layers}


def _location_r2(bank, ids, resid, subgoal, episode, mid: int, seed: int, test_fraction: float = 0.25) -> dict:
    """``ant_target_probe``'s read-out on a residual stream already computed (``ant_residual_stream``)."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    obs = np.concatenate([bank.obs[i][(bank.subgoal[i] >= 0).numpy()].numpy() for i in ids])
    offsets = obs[:, A.COLOUR_OFFSETS].reshape(-1, A.N_COLOURS, 2)
    target = offsets[np.arange(len(subgoal)), subgoal]
    rng = np.random.default_rng(seed)
    test_eps = rng.choice(ids, max(1, int(len(ids) * test_fraction)), replace=False)
    test = np.isin(episode, test_eps)
    r2 = []
    for layer in range(resid.shape[1]):
        reg = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(resid[~test, layer], target[~test])
        r2.append(float(r2_score(target[test], reg.predict(resid[test, layer]))))
    return {"mid_layer": mid, "r2": r2, "mid_gain": r2[mid] - r2[0], "n_test_steps": int(test.sum()),
            "n_train_steps": int((~test).sum())}
