"""Per-layer linear probes of the residual stream (docs/paper.md §3) and the base model's diagnostics.

Probes: for every layer l = 0..L (0 = the embedding, l = after block l−1) a multinomial logistic regression
(scikit-learn) decodes the ground-truth subgoal g_t from the instantaneous residual e_{t,l} of held-out
D* episodes. Train and test sets are split **by episode**. A control probe is trained on labels shuffled
across the training steps and scored on the true test labels (chance level for this label distribution).
The same is done for the last colour visited (−1 = none yet, an (O+1)-way label). Everything runs in
the base model's world (``model.world``).

Diagnostics reported with the probes:
* action accuracy of the model, of the expert that knows the task, and of the Bayes-optimal predictor
  that does not know the task (a uniform prior over the 16 pretraining tasks, updated by the colours
  visited and by how well each task explains every past move of the expert) — the ceiling for a model
  that sees only observations;
* the history-use test: accuracy in the first two steps of a segment when the target is determined by
  the colours visited (every pretraining task that begins with them seeks the same colour next: in
  ``grid7`` the 2nd colour of a pair; in ``grid5`` never, so only the undetermined half exists there) vs
  when it is not.

Choice: scikit-learn's L-BFGS logistic regression on standardised features replaces the paper's AdamW probe
training (Table A6); both fit the same convex objective.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from irl_core.data import heldout_episodes, training_tensors
from irl_core.device import resolve_device
from irl_core.envs.grid import INF, WALL, distance_maps
from irl_core.envs.worlds import GridWorld
from irl_core.models.transformer import GridTransformer, resid_hook_name


@torch.no_grad()
def residual_stream(model: GridTransformer, episodes: dict[str, torch.Tensor], batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual stream at every layer: ``(resid (N, T, L+1, d), action logits (N, T, 4))`` (zeros at padding)."""
    names = [resid_hook_name(l) for l in range(model.n_layers + 1)]
    resid_parts, logit_parts = [], []
    T = int(episodes["length"].max())
    for i in range(0, episodes["length"].shape[0], batch):
        part = {k: v[i:i + batch] for k, v in episodes.items()}
        obs, _ = training_tensors(part, model.world, T)
        (logits, _), cache = model.run_with_cache(obs[:, :-1], names_filter=names)
        resid_parts.append(torch.stack([cache[n] for n in names], 2).float().cpu())
        logit_parts.append(logits.float().cpu())
    return torch.cat(resid_parts), torch.cat(logit_parts)


def last_visited_colour(episodes: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, T) the colour of the task visited most recently before each step (−1: none yet)."""
    prog = episodes["progress"].long()
    prev = episodes["task"].long().gather(1, (prog - 1).clamp_min(0))
    return torch.where(prog > 0, prev, -1)


def fit_probe(x_train, y_train, x_test, y_test, seed: int) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=1.0, random_state=seed))
    with warnings.catch_warnings():  # the shuffled-label control cannot converge to anything useful, by design
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    return float((clf.predict(x_test) == y_test).mean())


def probe_layers(resid: np.ndarray, labels: np.ndarray, episode: np.ndarray, seed: int = 0,
                 test_fraction: float = 0.25, max_train: int = 40_000) -> dict[str, list[float]]:
    """Accuracy per layer of a probe and of a shuffled-label control; steps are split by episode.

    ``resid`` (n_steps, L+1, d), ``labels`` (n_steps,), ``episode`` (n_steps,) episode index of each step.
    """
    rng = np.random.default_rng(seed)
    episodes = np.unique(episode)
    test_eps = rng.choice(episodes, max(1, int(len(episodes) * test_fraction)), replace=False)
    test = np.isin(episode, test_eps)
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    if len(train_idx) > max_train:
        train_idx = rng.choice(train_idx, max_train, replace=False)
    y_train, y_test = labels[train_idx], labels[test_idx]
    if len(np.unique(y_train)) < 2:
        raise ValueError("probe training labels have a single class; use more episodes")
    shuffled = rng.permutation(y_train)
    acc, control = [], []
    for layer in range(resid.shape[1]):
        x_train, x_test = resid[train_idx, layer], resid[test_idx, layer]
        acc.append(fit_probe(x_train, y_train, x_test, y_test, seed))
        control.append(fit_probe(x_train, shuffled, x_test, y_test, seed))
    majority = float((y_test == np.bincount(y_train - y_train.min()).argmax() + y_train.min()).mean())
    return {"accuracy": acc, "control": control, "majority": majority,
            "n_train_steps": int(len(train_idx)), "n_test_steps": int(len(test_idx))}


# ---------------------------------------------------------------------------------------------------
# Reference predictors
# ---------------------------------------------------------------------------------------------------
def _optimal_moves(episodes: dict[str, torch.Tensor], world: GridWorld) -> torch.Tensor:
    """(N, T, 8, 4) bool: is each action on a shortest path to each colour, from the cell at each step."""
    layout = episodes["layout"].long()
    dist = distance_maps(layout, world)  # (N, 8, 49)
    N, T = episodes["actions"].shape
    O, C = world.n_colours, world.n_cells
    pos = episodes["pos"][:, :T].long().clamp_min(0)  # (N, T)
    nxt = torch.as_tensor(world.next_cell)[pos]  # (N, T, 4)
    wall = layout.gather(1, nxt.view(N, -1)).view(N, T, 4) == WALL
    nxt = torch.where(wall, pos.unsqueeze(-1), nxt)
    nd = dist.unsqueeze(1).expand(N, T, O, C).gather(3, nxt.unsqueeze(2).expand(N, T, O, 4))  # (N, T, 8, 4)
    nd = torch.where((nxt != pos.unsqueeze(-1)).unsqueeze(2), nd, INF)
    best = nd.amin(-1, keepdim=True)
    return (nd == best) & (best < INF)


def reference_accuracies(episodes: dict[str, torch.Tensor], world: GridWorld) -> dict[str, float]:
    """Expected per-step accuracy of the task-knowing expert and of the Bayes-optimal task-blind predictor."""
    expert, bayes, mask = reference_predictions(episodes, world)
    return {"expert_knowing_task": float(expert[mask].mean()), "bayes_task_blind": float(bayes[mask].mean())}


def reference_predictions(episodes: dict[str, torch.Tensor], world: GridWorld
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per step (N, T): the expected accuracy of the task-knowing expert and of the Bayes-optimal task-blind
    predictor (uniform prior over the 16 pretraining tasks, updated by the colours visited and by how well
    each task explains every past move), and the validity mask."""
    opt = _optimal_moves(episodes, world).float()  # (N, T, 8, 4)
    pi = opt / opt.sum(-1, keepdim=True).clamp_min(1)  # expert's action distribution per target colour
    actions = episodes["actions"].long()
    mask = actions >= 0
    a = actions.clamp_min(0)
    prog = episodes["progress"].long().clamp_min(0)
    tasks = torch.tensor(world.pretrain_tasks)  # (16, n): every pretraining task of a world has n colours
    n_task = tasks.shape[1]
    H = tasks.shape[0]
    true_task = episodes["task"].long()[:, :n_task]
    # hypothesis h is consistent at step t if its first k_t colours equal the ones visited
    k = prog.unsqueeze(-1)  # (N, T, 1)
    agree = (tasks.unsqueeze(0) == true_task.unsqueeze(1)).long()  # (N, 16, n)
    prefix_len = agree.cumprod(-1).sum(-1)  # (N, 16)
    consistent = prefix_len.unsqueeze(1) >= k  # (N, T, 16)
    target_h = tasks.T[k.squeeze(-1).clamp_max(n_task - 1)]  # (N, T, 16): the colour each task seeks after k visits
    pi_h = pi.gather(2, target_h.unsqueeze(-1).expand(*target_h.shape, 4))  # (N, T, 16, 4)
    lik = pi_h.gather(3, a.view(*a.shape, 1, 1).expand(*a.shape, H, 1)).squeeze(-1)  # (N, T, 16)
    logl = torch.where(mask.unsqueeze(-1), torch.log(lik.clamp_min(1e-30)), 0.0)
    past = torch.cumsum(logl, 1) - logl  # exclusive: moves before step t
    logw = torch.where(consistent, past, float("-inf"))
    w = torch.softmax(logw, -1)  # (N, T, 16)
    pred = (w.unsqueeze(-1) * pi_h).sum(2)  # (N, T, 4)
    top = pred >= pred.amax(-1, keepdim=True) - 1e-9
    bayes = top.gather(2, a.unsqueeze(-1)).squeeze(-1).float() / top.sum(-1).float()
    true_target = episodes["task"].long().gather(1, prog)
    expert = pi.gather(2, true_target.view(*a.shape, 1, 1).expand(*a.shape, 1, 4)).squeeze(2).gather(2, a.unsqueeze(-1)).squeeze(-1)
    return expert, bayes, mask


def determined_targets(episodes: dict[str, torch.Tensor], world: GridWorld) -> torch.Tensor:
    """(N, T) bool: is the colour sought at each step fixed by the colours visited so far (every pretraining
    task that begins with them seeks the same colour next)?"""
    nexts: dict[tuple[int, ...], set[int]] = {}
    for t in world.pretrain_tasks:
        for k in range(len(t)):
            nexts.setdefault(tuple(t[:k]), set()).add(t[k])
    prog = episodes["progress"].long()
    out = torch.zeros_like(prog, dtype=torch.bool)
    for i, task in enumerate(episodes["task"].tolist()):
        task = [c for c in task if c >= 0]
        fixed = torch.tensor([len(nexts.get(tuple(task[:k]), ())) == 1 for k in range(len(task) + 1)])
        out[i] = fixed[prog[i].clamp(0, len(task))] & (prog[i] >= 0)
    return out


def history_use(correct: torch.Tensor, episodes: dict[str, torch.Tensor], world: GridWorld,
                first_steps: int = 2) -> dict[str, float]:
    """Accuracy in the first ``first_steps`` steps of each segment, split by whether the target is determined.

    ``correct`` (N, T): whether the model's most likely action equals the expert's (bool), or a reference
    predictor's probability of being right (float, e.g. from :func:`reference_predictions`).
    """
    prog = episodes["progress"].long()
    mask = episodes["actions"] >= 0
    change = torch.ones_like(prog, dtype=torch.bool)
    change[:, 1:] = prog[:, 1:] != prog[:, :-1]
    seg_start = torch.cummax(torch.where(change, torch.arange(prog.shape[1]).expand_as(prog), 0), 1).values
    early = mask & (torch.arange(prog.shape[1]).expand_as(prog) - seg_start < first_steps)
    fixed = determined_targets(episodes, world)
    determined = early & fixed
    open_ = early & ~fixed
    acc_d = float(correct[determined].float().mean()) if determined.any() else float("nan")
    acc_o = float(correct[open_].float().mean()) if open_.any() else float("nan")
    return {"determined_acc": acc_d, "undetermined_acc": acc_o, "gap": acc_d - acc_o}


def sampled_failures(visited: list[list[int]], tasks: torch.Tensor, success: torch.Tensor,
                     world: GridWorld) -> dict[str, float]:
    """How sampled episodes on the pretraining tasks end (fractions of all episodes), from the colours entered.

    In a world whose subgoals are colours (``grid5``) an optimal task-blind agent fails only by entering a
    colour that another pretraining task with the same beginning seeks (``first``/``next_colour_of_another_task``);
    a colour that no such task seeks next (``next_colour_no_task_allows``) or running out of time is the
    model's own mistake. In the paper's grid (pair subgoals) the ends are finer:

    An optimal task-blind agent also fails, at two kinds of step only: the first pair (3 in 4 choices are
    another task's) and each later pair (1 in 2 of the pairs that may follow the last one belong to another
    task). The other ends are its own mistakes: a pair left unfinished (a colour other than the partner of
    the one just entered), a first colour that starts no pair, a next pair that no task allows, or running
    out of time.
    """
    if world.subgoal == "colour":
        return _colour_task_ends(visited, tasks, success, world)
    follows: dict[int, set[int]] = {}
    for t in world.pretrain_tasks:
        for a, b in zip(t[1::2], t[2::2]):
            follows.setdefault(a // 2, set()).add(b // 2)
    keys = ("success", "first_pair_of_another_task", "next_pair_of_another_task", "partner_missed",
            "first_colour_starts_no_pair", "next_pair_no_task_allows", "timeout")

    def end_of(v: list[int], t: list[int], wrong: int) -> str:
        if wrong % 2 == 1:
            return "partner_missed"
        if v[wrong] % 2 == 1:
            return "first_colour_starts_no_pair" if wrong == 0 else "next_pair_no_task_allows"
        if wrong == 0:
            return "first_pair_of_another_task"
        return "next_pair_of_another_task" if v[wrong] // 2 in follows[t[wrong - 1] // 2] else "next_pair_no_task_allows"

    return _tally_ends(visited, tasks, success, keys, end_of)


def _tally_ends(visited: list[list[int]], tasks: torch.Tensor, success: torch.Tensor, keys: tuple[str, ...],
                end_of) -> dict[str, float]:
    """Fractions of episodes per end: success, timeout (no wrong colour), else ``end_of(visited, task, k)`` with k
    the index of the first colour that differs from the task."""
    counts = dict.fromkeys(keys, 0)
    for v, t, ok in zip(visited, tasks.tolist(), success.tolist()):
        wrong = next((k for k, c in enumerate(v) if c != t[k]), None)
        key = "success" if ok else "timeout" if wrong is None else end_of(v, t, wrong)
        counts[key] += 1
    n = max(1, len(visited))
    return {k: c / n for k, c in counts.items()}


def _colour_task_ends(visited: list[list[int]], tasks: torch.Tensor, success: torch.Tensor,
                      world: GridWorld) -> dict[str, float]:
    prefixes = {tuple(t[:k]) for t in world.pretrain_tasks for k in range(len(t) + 1)}
    keys = ("success", "first_colour_of_another_task", "next_colour_of_another_task", "next_colour_no_task_allows",
            "timeout")

    def end_of(v: list[int], t: list[int], wrong: int) -> str:
        if tuple(v[:wrong + 1]) in prefixes:
            return "first_colour_of_another_task" if wrong == 0 else "next_colour_of_another_task"
        return "next_colour_no_task_allows"

    return _tally_ends(visited, tasks, success, keys, end_of)


# ---------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------
def probe_report(model: GridTransformer, n_episodes: int = 2000, seed: int = 0, device="cpu",
                 sample_episodes: int = 1000) -> dict:
    """Probes per layer (subgoal and last colour, with controls) and the diagnostics, as a JSON-able dict."""
    from irl_core.rollouts import rollout, sequence_statistics, visited_colours
    dev = resolve_device(device)
    model = model.to(dev).eval()
    t0 = time.time()
    world = model.world
    eps = {k: v.cpu() for k, v in heldout_episodes(n_episodes, seed, world, dev).items()}
    resid, logits = residual_stream(model, eps)
    mask = eps["actions"] >= 0
    episode_ids = torch.arange(mask.shape[0]).unsqueeze(1).expand_as(mask)
    x = resid[mask].numpy()
    ep = episode_ids[mask].numpy()
    subgoal = probe_layers(x, eps["subgoal"][mask].numpy(), ep, seed)
    last_colour = probe_layers(x, last_visited_colour(eps)[mask].numpy(), ep, seed)
    correct = logits.argmax(-1) == eps["actions"]
    expert, bayes, _ = reference_predictions(eps, world)
    sampled = rollout("base", "pretrain", sample_episodes, seed, dev, model)
    sampled_free = rollout("base", "pretrain", sample_episodes, seed + 1, dev, model, end_on_wrong=False)
    heldout = rollout("base", "heldout", sample_episodes, seed + 2, dev, model)
    first_colour_ok = [len(v) > 0 and v[0] == int(t[0]) for v, t in zip(visited_colours(sampled), sampled["task"])]
    return {
        "layers": list(range(model.n_layers + 1)),
        "subgoal_probe": subgoal,
        "last_colour_probe": last_colour,
        "action_accuracy": {"model": float(correct[mask].float().mean()),
                            "expert_knowing_task": float(expert[mask].mean()), "bayes_task_blind": float(bayes[mask].mean())},
        "history_use": history_use(correct, eps, world),
        "history_use_bayes": history_use(bayes * mask, eps, world),  # the same split for the best task-blind predictor
        "sampled": {
            "success_pretraining_tasks": float(sampled["success"].float().mean()),
            "reached_correct_first_colour": float(np.mean(first_colour_ok)),
            "success_heldout_task": float(heldout["success"].float().mean()),
            "ends": sampled_failures(visited_colours(sampled), sampled["task"], sampled["success"], world),
            "episodes": sample_episodes,
            **{f"uncut_{k}": v for k, v in sequence_statistics(visited_colours(sampled_free), world).items()},
        },
        "world": world.name,
        "n_episodes": n_episodes,
        "seed": seed,
        "seconds": time.time() - t0,
    }


def probe_curve(checkpoints: list[Path], n_episodes: int = 1000, seed: int = 0, device="cpu",
                sample_episodes: int = 500, progress: bool = True, previous: dict | None = None) -> dict:
    """The probes report of every checkpoint in ``checkpoints`` (e.g. a run's snapshots), ordered by the
    training episodes each has seen: the data of the paper's Fig. A1 and of the diagnostics over training.

    Points of ``previous`` (an earlier result with the same settings) are kept and their checkpoints are
    not probed again, so the command can be re-run as a run writes new snapshots."""
    from irl_core.checkpoints import load_checkpoint
    from irl_core.pretrain import load_base_model
    same = previous and all(previous.get(k) == v for k, v in
                            (("n_episodes", n_episodes), ("sample_episodes", sample_episodes), ("seed", seed)))
    points = list(previous["points"]) if same else []
    done = {p["checkpoint"] for p in points}
    for path in checkpoints:
        if str(path) in done:
            continue
        _, _, meta = load_checkpoint(path)
        report = probe_report(load_base_model(path, device), n_episodes, seed, device, sample_episodes)
        points.append({"checkpoint": str(path), "steps": meta.get("steps"), "episodes": meta.get("episodes"),
                       **{k: report[k] for k in ("subgoal_probe", "last_colour_probe", "action_accuracy",
                                                 "history_use", "history_use_bayes", "sampled")}})
        if progress:
            h, sm = report["history_use"], report["sampled"]
            print(f"{path}: {meta.get('episodes')} episodes; history gap {h['gap']:+.3f}, subgoal probe at L/2 "
                  f"{report['subgoal_probe']['accuracy'][len(report['layers']) // 2]:.3f}, sampled success "
                  f"{sm['success_pretraining_tasks']:.3f}", flush=True)
    points.sort(key=lambda p: (p["episodes"] is None, p["episodes"]))
    return {"layers": list(range(len(points[0]["subgoal_probe"]["accuracy"]))) if points else [],
            "n_episodes": n_episodes, "sample_episodes": sample_episodes, "seed": seed, "points": points}


