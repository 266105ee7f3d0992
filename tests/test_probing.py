import pytest
import numpy as np
import torch

from irl_core.data import heldout_episodes
from irl_core.envs.worlds import GRID5, GRID7
from irl_core.probing import (history_use, last_visited_colour, probe_layers,
                              reference_accuracies, reference_predictions)


def test_probe_finds_a_planted_feature_and_control_does_not():
    rng = np.random.default_rng(0)
    n_eps, T, d = 120, 20, 16
    labels = rng.integers(4, size=(n_eps, T))
    resid = rng.normal(size=(n_eps, T, 3, d))
    resid[:, :, 2, :4] += 3 * np.eye(4)[labels]  # layer 2 encodes the label linearly
    ep = np.repeat(np.arange(n_eps), T)
    out = probe_layers(resid.reshape(-1, 3, d), labels.reshape(-1), ep, seed=0)
    assert out["accuracy"][2] > 0.9 and out["accuracy"][0] < 0.4
    assert max(out["control"]) < 0.4


def test_reference_accuracies_are_ordered():
    eps = {k: v for k, v in heldout_episodes(200, 0, GRID7).items()}
    ref = reference_accuracies(eps, GRID7)
    assert 0.5 < ref["bayes_task_blind"] <= ref["expert_knowing_task"] <= 1.0
    # the task-blind predictor gains from history only where the colours visited fix the target: a positive gap;
    # the expert knows its target everywhere: no gap
    expert, bayes, mask = reference_predictions(eps, GRID7)
    assert history_use(bayes * mask, eps, GRID7)["gap"] > 0.05 and abs(history_use(expert * mask, eps, GRID7)["gap"]) < 0.05


def test_history_use_detects_a_model_that_uses_history():
    eps = heldout_episodes(100, 1, GRID7)
    prog = eps["progress"]
    mask = eps["actions"] >= 0
    # a fake model that is always right when heading to the 2nd colour of a pair, and right 1/4 of the time otherwise
    gen = torch.Generator().manual_seed(0)
    correct = torch.where(prog % 2 == 1, True, torch.rand(prog.shape, generator=gen) < 0.25) & mask
    out = history_use(correct, eps, GRID7)
    assert out["determined_acc"] == 1.0 and 0.15 < out["undetermined_acc"] < 0.35 and out["gap"] > 0.6
    blind = history_use(torch.rand(prog.shape, generator=gen) < 0.5, eps, GRID7)
    assert abs(blind["gap"]) < 0.15


def test_last_visited_colour():
    eps = heldout_episodes(20, 2, GRID7)
    last = last_visited_colour(eps)
    for i in range(20):
        L = int(eps["length"][i])
        assert int(last[i, 0]) == -1
        # after the first colour is visited the label is the task's first colour
        k = int((eps["progress"][i, :L] == 1).nonzero()[0])
        assert int(last[i, k]) == int(eps["task"][i, 0])


def test_sampled_failures_classifies_every_end():
    from irl_core.probing import sampled_failures
    task = [0, 1, 4, 5, 0, 1]  # A C A; after A the allowed pairs are C and D, after C: A and B
    cases = {
        "success": [0, 1, 4, 5, 0, 1],
        "first_pair_of_another_task": [2],
        "first_colour_starts_no_pair": [3],
        "partner_missed": [0, 4],
        "next_pair_of_another_task": [0, 1, 6],        # D may follow A, but this task goes to C
        "next_pair_no_task_allows": [0, 1, 2],         # B never follows A
        "timeout": [0, 1, 4],
    }
    visited = list(cases.values())
    success = torch.tensor([k == "success" for k in cases])
    out = sampled_failures(visited, torch.tensor([task] * len(cases)), success, GRID7)
    assert all(out[k] == 1 / len(cases) for k in cases) and sum(out.values()) == pytest.approx(1)


def test_grid5_sampled_failures_and_references():
    """In the 5×5 world the ends are read from task prefixes, and the task-blind predictor sits between
    chance and the expert; no target is ever fixed by history there (every prefix has two continuations)."""
    from irl_core.probing import determined_targets, sampled_failures
    task = [0, 3, 2]  # tasks starting 0: 0-3-2, 0-2-0, 0-2-1, 0-3-1
    cases = {"success": [0, 3, 2], "first_colour_of_another_task": [1], "next_colour_of_another_task": [0, 2],
             "next_colour_no_task_allows": [0, 1], "timeout": [0, 3]}
    success = torch.tensor([k == "success" for k in cases])
    out = sampled_failures(list(cases.values()), torch.tensor([task] * len(cases)), success, GRID5)
    assert all(out[k] == 1 / len(cases) for k in cases)
    eps = heldout_episodes(200, 0, GRID5)
    ref = reference_accuracies(eps, GRID5)
    assert 0.5 < ref["bayes_task_blind"] < ref["expert_knowing_task"] <= 1.0
    assert not determined_targets(eps, GRID5).any() and determined_targets(heldout_episodes(50, 0, GRID7), GRID7).any()
