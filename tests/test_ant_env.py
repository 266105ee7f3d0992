"""Contract tests of ant-pinpad (irl_core/envs/ant.py), parameterised over all 16 pretraining tasks (dm_control
style): observation spec and finiteness, no task information, every termination rule, success, determinism,
rendering."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from irl_core.envs import ant as A
from irl_core.envs.registration import register_envs
from irl_core.envs.tasks import ANT_HELDOUT_TASK, ANT_PRETRAIN_TASKS, TaskError, format_task
from irl_core.palette import COLOURS, WALL, hex_to_rgb

TASKS = [format_task(t) for t in ANT_PRETRAIN_TASKS]
# A hand-made layout: colours 0..3, the wall at (1, 1), start (3, 3).
LAYOUT = np.array([[0, -1, -1, 1],
                   [-1, -2, -1, -1],
                   [-1, -1, -1, -1],
                   [2, -1, 3, -1]], dtype=np.int8)
START = (3, 3)
CENTRE = {c: (float(np.argwhere(LAYOUT == c)[0][1]) + 0.5, float(np.argwhere(LAYOUT == c)[0][0]) + 0.5)
          for c in range(4)}  # colour → (u, v) cell units


@pytest.fixture(scope="module")
def env():
    e = A.AntPinpadEnv()
    yield e
    e.close()


def test_registered_with_gymnasium():
    register_envs()
    e = gym.make("irl_core/AntPinpad-v0", task="0-3-2")
    obs, info = e.reset(seed=0)
    assert obs.shape == (A.OBS_DIM,) and info["task"] == (0, 3, 2)
    e.close()


@pytest.mark.parametrize("task", TASKS)
def test_observation_spec_and_finiteness(env, task):
    obs, info = env.reset(seed=7, options={"task": task})
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape == (A.OBS_DIM,)
    assert info["task"] == tuple(int(c) for c in task.split("-"))
    assert info["progress"] == 0 and info["layout"][info["cell"]] == A.EMPTY_CODE
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, reward, term, trunc, info = env.step(rng.uniform(-1, 1, 8))
        assert np.isfinite(obs).all() and obs.dtype == np.float32
        assert reward in (0.0, 1.0)
        if term or trunc:
            break
    # the global position and the local cell coordinate are normalised
    assert np.all(np.abs(obs[27:29]) <= 1.0 + 1e-6) and np.all(np.abs(obs[39:41]) <= 1.0 + 1e-6)


@pytest.mark.parametrize("task", TASKS + [format_task(ANT_HELDOUT_TASK)])
def test_no_task_information_in_observation(task):
    """Same seed, layout, start and actions under two different tasks: identical observations."""
    ref, other = A.AntPinpadEnv(task="0-3-2"), A.AntPinpadEnv(task=task)
    o1, _ = ref.reset(seed=3, options={"layout": LAYOUT, "start": START})
    o2, _ = other.reset(seed=3, options={"layout": LAYOUT, "start": START})
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(1)
    for _ in range(3):
        a = rng.uniform(-1, 1, 8)
        np.testing.assert_array_equal(ref.step(a)[0], other.step(a)[0])


def test_observation_layout_matches_state(env):
    obs, info = env.reset(seed=5, options={"layout": LAYOUT, "start": START, "task": "0-3-2"})
    b = env.batch
    half = A.G * b.cell_size / 2
    xy = b.qpos[0, :2]
    np.testing.assert_allclose(obs[:27], A.symlog(np.concatenate([b.qpos[0, 2:], b.qvel[0]])), rtol=1e-6)
    np.testing.assert_allclose(obs[27:29], xy / half, rtol=1e-5)
    for c in range(4):
        r, col = np.argwhere(LAYOUT == c)[0]
        np.testing.assert_allclose(obs[29 + 2 * c:31 + 2 * c], (b.cell_centre(r, col) - xy) / (2 * half), atol=1e-6)
    np.testing.assert_allclose(obs[37:39], (b.cell_centre(1, 1) - xy) / (2 * half), atol=1e-6)
    uv = info["uv"]
    assert tuple(np.floor(uv[::-1]).astype(int)) == START
    np.testing.assert_allclose(obs[39:41], 2 * (uv - np.floor(uv)) - 1, atol=1e-5)


@pytest.mark.parametrize("task", TASKS)
def test_success_path_by_teleporting(task):
    env = A.AntPinpadEnv(task=task)
    env.reset(seed=0, options={"layout": LAYOUT, "start": START})
    colours = [int(c) for c in task.split("-")]
    b = env.batch
    for k, c in enumerate(colours):
        reward, term, trunc, event = b.teleport_step(0, CENTRE[c])
        assert b.progress[0] == k + 1
        if k < len(colours) - 1:
            assert not term[0] and reward[0] == 0.0
            b.teleport_step(0, (2.5, 2.5))  # step out to an empty cell between visits
        else:
            assert term[0] and reward[0] == 1.0 and A.EVENTS[event[0]] == "success"


@pytest.mark.parametrize("task", TASKS)
def test_wrong_colour_terminates(task):
    env = A.AntPinpadEnv(task=task)
    env.reset(seed=0, options={"layout": LAYOUT, "start": START})
    first = int(task.split("-")[0])
    wrong = next(c for c in range(4) if c != first)
    reward, term, _, event = env.batch.teleport_step(0, CENTRE[wrong])
    assert term[0] and reward[0] == 0.0 and A.EVENTS[event[0]] == "wrong_colour"


def test_any_of_succeeds_on_completing_any_task_and_fails_off_all_of_them():
    b = A.AntPinpadBatch(1)
    b.seed(0, 0)

    def visit(colours):
        b.reset_one(0, task="0-3-2", layout=LAYOUT, start=START, any_of=ANT_PRETRAIN_TASKS)
        for c in colours:
            _, term, _, event = b.teleport_step(0, CENTRE[c])
            if term[0]:
                return A.EVENTS[event[0]]
            b.teleport_step(0, (2.5, 2.5))
        return ""
    assert visit([2, 1, 3]) == "success" and b.tasks[0] == (2, 1, 3)   # not the drawn task: another one
    assert visit([1, 3, 1]) == "success" and b.tasks[0] == (1, 3, 1)
    assert visit([0, 1]) == "wrong_colour"                              # no pretraining task starts 0-1
    assert visit([3, 2]) == "" and b.progress[0] == 2                   # 3-2-0 or 3-2-1 still possible
    b.reset_one(0, task="0-3-2", layout=LAYOUT, start=START)            # without any_of: the drawn task only
    assert A.EVENTS[b.teleport_step(0, CENTRE[2])[3][0]] == "wrong_colour"


def test_visit_counted_on_entry_only():
    env = A.AntPinpadEnv(task="0-3-2")
    env.reset(seed=0, options={"layout": LAYOUT, "start": START})
    b = env.batch
    b.teleport_step(0, CENTRE[0])
    assert b.progress[0] == 1
    _, term, _, _ = b.teleport_step(0, (CENTRE[0][0] + 0.3, CENTRE[0][1] + 0.3))  # moving inside the cell
    assert b.progress[0] == 1 and not term[0]
    b.teleport_step(0, (1.5, 0.5))  # leave to an empty cell
    _, term, _, event = b.teleport_step(0, CENTRE[0])  # re-entering colour 0 is a wrong visit (next is 3)
    assert term[0] and A.EVENTS[event[0]] == "wrong_colour"


@pytest.mark.parametrize("where", [(1.5, 1.5), (-0.2, 2.5), (4.3, 0.5), (2.5, 4.2)])
def test_wall_and_outside_terminate(where):
    env = A.AntPinpadEnv(task="0-3-2")
    env.reset(seed=0, options={"layout": LAYOUT, "start": START})
    _, term, _, event = env.batch.teleport_step(0, where)
    assert term[0] and A.EVENTS[event[0]] == "wall"


@pytest.mark.parametrize("z", [0.1, 1.6])
def test_height_terminates(z):
    env = A.AntPinpadEnv(task="0-3-2")
    env.reset(seed=0, options={"layout": LAYOUT, "start": START})
    uv = env.batch.uv()[0]
    reward, term, trunc, event = env.batch.teleport_step(0, uv, z=z)
    assert term[0] and not trunc[0] and A.EVENTS[event[0]] == "height" and reward[0] == 0.0


def test_height_terminates_through_physics():
    """Thrown upwards, the torso leaves [0.2, 1.0] during a real step."""
    env = A.AntPinpadEnv(task="0-3-2")
    env.reset(seed=0, options={"layout": LAYOUT, "start": START})
    env.data.qpos[2] = 1.5
    env.data.qvel[:] = 0
    _, reward, term, trunc, info = env.step(np.zeros(8))
    assert term and not trunc and info["event"] == "height" and reward == 0.0


def test_truncation_at_T(env):
    env.reset(seed=0, options={"layout": LAYOUT, "start": START, "task": "0-3-2"})
    env.batch.t[0] = A.T_MAX - 1
    _, _, term, trunc, info = env.step(np.zeros(8))
    assert trunc and not term and info["t"] == A.T_MAX
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(8))


def test_determinism_under_seed():
    def roll(seed):
        e = A.AntPinpadEnv()
        obs, info = e.reset(seed=seed)
        rng = np.random.default_rng(seed)
        out = [obs]
        for _ in range(10):
            obs, _, term, trunc, _ = e.step(rng.uniform(-1, 1, 8))
            out.append(obs)
            if term or trunc:
                break
        return np.stack(out), info["layout"], info["task"]
    a, b, c = roll(11), roll(11), roll(12)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert not np.array_equal(a[1], c[1]) or not np.array_equal(a[0][0], c[0][0])


def test_batch_matches_gym_env():
    e = A.AntPinpadEnv()
    obs, _ = e.reset(seed=21)
    batch = A.AntPinpadBatch(2)
    batch.seed(1, 21)
    batch.reset_one(1)
    np.testing.assert_array_equal(batch.observe()[1], obs)


def test_random_layouts_are_valid():
    rng = np.random.default_rng(0)
    for _ in range(200):
        layout, start = A.sample_layout(rng)
        A.validate_layout(layout)
        assert (layout == A.WALL_CODE).sum() == 1 and layout[start] == A.EMPTY_CODE


def test_random_start_is_inside_start_cell_with_joint_noise():
    e = A.AntPinpadEnv()
    for seed in range(10):
        _, info = e.reset(seed=seed)
        u, v = info["uv"]
        assert tuple(np.floor([v, u]).astype(int)) == info["cell"]
        assert np.all(np.abs(e.data.qpos[7:] - e.batch.init_qpos[7:]) <= A.INIT_NOISE + 1e-9)


def test_bad_inputs_raise_clear_errors(env):
    with pytest.raises(TaskError, match="out of range"):
        env.reset(seed=0, options={"task": "0-5-2"})
    with pytest.raises(TaskError):
        A.AntPinpadEnv(task="zero")
    bad = LAYOUT.copy()
    bad[0, 0] = 1
    with pytest.raises(ValueError, match="exactly once"):
        env.reset(seed=0, options={"layout": bad})
    with pytest.raises(ValueError, match="not an empty cell"):
        env.reset(seed=0, options={"layout": LAYOUT, "start": (0, 0)})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="8 entries"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="camera"):
        A.AntPinpadEnv(camera="side")


def test_rendered_frames_show_tiles_and_wall():
    env = A.AntPinpadEnv(task="0-3-2", render_mode="rgb_array", width=160, height=160)
    env.reset(seed=0, options={"layout": LAYOUT, "start": START})
    frame = env.render()
    assert frame.shape == (160, 160, 3) and frame.dtype == np.uint8
    for colour in list(COLOURS[:4]) + [WALL]:
        close = np.abs(frame.astype(int) - np.array(hex_to_rgb(colour))).max(-1) < 40
        assert close.sum() > 100, f"colour {colour} not visible in the top-down frame"
    chase = env.render(camera="chase")
    assert chase.shape == (160, 160, 3) and chase.std() > 10
    env.close()
    assert A.AntPinpadEnv().render() is None  # no render_mode: nothing rendered
