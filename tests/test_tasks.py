import numpy as np
import pytest

from irl_core.envs.tasks import (ANT_HELDOUT_TASK, ANT_PRETRAIN_TASKS, GRID_HELDOUT_TASK, GRID_PRETRAIN_TASKS,
                                 TaskError, parse_task, pretraining_transitions, subgoal_labels, subgoal_sequence)


def test_grid_tables_exact():
    assert len(GRID_PRETRAIN_TASKS) == 16 and len(set(GRID_PRETRAIN_TASKS)) == 16
    assert all(len(t) == 6 for t in GRID_PRETRAIN_TASKS)
    assert GRID_PRETRAIN_TASKS[0] == (0, 1, 4, 5, 0, 1) and GRID_PRETRAIN_TASKS[-1] == (6, 7, 4, 5, 2, 3)
    assert GRID_HELDOUT_TASK == (0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3)
    # every grid task is made of whole pairs (A=0-1, B=2-3, C=4-5, D=6-7)
    for t in GRID_PRETRAIN_TASKS + (GRID_HELDOUT_TASK,):
        assert all(t[i] % 2 == 0 and t[i + 1] == t[i] + 1 for i in range(0, len(t), 2))


def test_grid_transitions_heldout_unseen():
    seen = pretraining_transitions("grid")
    assert seen == {(0, 2), (0, 3), (1, 0), (1, 3), (2, 0), (2, 1), (3, 1), (3, 2)}
    held = subgoal_sequence(GRID_HELDOUT_TASK)
    held_transitions = {(a, b) for a, b in zip(held, held[1:]) if a != b}
    assert held_transitions == {(0, 1), (1, 2), (2, 3), (3, 0)}
    assert not held_transitions & seen


def test_ant_tables_exact():
    assert len(set(ANT_PRETRAIN_TASKS)) == 16 and all(len(t) == 3 for t in ANT_PRETRAIN_TASKS)
    assert ANT_HELDOUT_TASK == (0, 1, 2, 3)
    assert pretraining_transitions("ant") == {(0, 2), (0, 3), (1, 0), (1, 3), (2, 0), (2, 1), (3, 1), (3, 2)}


def test_subgoal_labels_are_colour_pairs_not_task_index():
    task = (6, 7, 2, 3, 0, 1)
    progress = np.array([0, 0, 1, 2, 2, 3, 4, 5, 6, -1])
    assert subgoal_labels(task, progress).tolist() == [3, 3, 3, 1, 1, 1, 0, 0, -1, -1]
    assert subgoal_labels((0, 3, 2), np.array([0, 1, 2]), env="ant").tolist() == [0, 3, 2]


@pytest.mark.parametrize("bad, message", [
    ("0-1-9", "out of range"), ("", "empty"), ("0-x-1", "not an integer"), ("0-0-1", "back to back"),
    ("-".join(["0", "1"] * 7), "at most"), ("0--1", "malformed"),
])
def test_parse_task_errors(bad, message):
    with pytest.raises(TaskError, match=message):
        parse_task(bad)


def test_parse_task_ant_range():
    assert parse_task("0-3-2", "ant") == (0, 3, 2)
    with pytest.raises(TaskError, match="out of range"):
        parse_task("0-4", "ant")
