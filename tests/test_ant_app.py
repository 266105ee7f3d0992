"""The ant section of the app: its pages under AppTest (shipped set, missing artifacts, bad input, a background
render) and the library behind them (irl_core.ant_media: requests, rendering, the cache, the render queue, the
shipped gallery). The browser half (a playable <video>, the slider moving the marker) is test_browser_ant.py.
"""
import json
import os
import shutil
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from irl_core import ant_media as M
from irl_core import ant_media_store as S
from irl_core import app_state
from irl_core.envs import ant as A

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "ant"
OVERVIEW, ROLLOUTS = (str(ROOT / "app_pages" / "ant" / f"{n}.py") for n in ("overview", "rollouts"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A fresh render cache per test; Streamlit's data cache cleared."""
    monkeypatch.setenv("IRL_ANT_MEDIA_CACHE", str(tmp_path / "cache"))
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def _root(tmp_path: Path, monkeypatch, expert=True, report=True, media=True) -> Path:
    """A checkpoints root whose shipped ant set holds a copy of the chosen parts of checkpoints/ant."""
    ant = tmp_path / "root" / "ant"
    (ant / "reports").mkdir(parents=True)
    if expert:
        for s in (".json", ".safetensors"):
            shutil.copyfile(SHIPPED / f"expert{s}", ant / f"expert{s}")
    if report:
        shutil.copyfile(SHIPPED / "reports" / "expert.json", ant / "reports" / "expert.json")
    if media:
        shutil.copytree(SHIPPED / "media", ant / "media")
    monkeypatch.setenv("IRL_CHECKPOINTS_DIR", str(tmp_path / "root"))
    return ant


def _page(path: str, **state) -> AppTest:
    at = AppTest.from_file(path, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def _one_line(messages) -> str:
    assert len(messages) == 1, [m.value for m in messages]
    text = messages[0].value
    assert "\n" not in text and "Traceback" not in text
    return text


def _new_rollout(at: AppTest, size="160×160", steps=12) -> AppTest:
    at.radio(key="ant_mode").set_value("New rollout").run()
    at.selectbox(key="ant_size").set_value(size)
    return at.number_input(key="ant_steps").set_value(steps).run()


def _wait_for_videos(at: AppTest, n: int, timeout: float = 90) -> None:
    """Rerun the page until it shows ``n`` videos (the background renderer finished), failing on any error."""
    deadline = time.time() + timeout
    while len(at.get("video")) < n and time.time() < deadline:
        assert not at.error, at.error[0].value
        time.sleep(0.3)
        at.run()


# --- the menu ---------------------------------------------------------------------------------------------
def test_menu_follows_the_environment():
    ant = app_state.pages("ant")
    assert [p.url_path for p in ant] == ["", "ant-rollouts"] and all((ROOT / p.file).exists() for p in ant)
    assert app_state.pages("grid") == app_state.pages() and "probes" in [p.url_path for p in app_state.pages()]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception and "Ant-pinpad" not in [t.value for t in at.title]
    at.sidebar.selectbox(key=app_state.ENV_KEY).set_value("ant").run()
    assert not at.exception
    assert "Ant-pinpad" in [t.value for t in at.title], "the ant's overview replaces the grid's"


# --- Overview ---------------------------------------------------------------------------------------------
def test_overview_draws_the_world_tasks_and_the_measured_success():
    at = _page(OVERVIEW)
    assert not at.exception and not at.error and not at.warning
    (fig,) = at.get("plotly_chart")
    shapes = json.loads(fig.proto.spec)["layout"]["shapes"]
    assert len(shapes) == A.G * A.G
    df = at.dataframe[0].value
    report = json.loads((SHIPPED / "reports" / "expert.json").read_text())
    splits = [s for s in ("pretrain", "pretrain_any", "heldout") if s in report["sampled"]]
    assert len(df) == 2 * len(splits)
    assert df["success"].tolist() == [report[m][s]["success_rate"] for m in ("sampled", "mean") for s in splits]
    html = " ".join(m.value for m in at.markdown)
    assert html.count("border-radius:4px") >= 16 * 3 + 4, "16 pretraining tasks and the held-out one, as chips"
    seed = at.number_input(key="ant_overview_seed")
    seed.set_value(7).run()
    assert not at.exception and json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["shapes"] != shapes
    seed.set_value(-3).run()
    assert "Layout seed must be in" in _one_line(at.error)


def test_overview_shows_the_base_model_reports_or_the_command_that_makes_them(tmp_path, monkeypatch):
    ant = _root(tmp_path, monkeypatch)
    at = _page(OVERVIEW, **{app_state.ENV_KEY: "ant"})
    assert not at.exception and any("reproduce_ant_base.sh" in i.value for i in at.info)
    ev = lambda rate: {"episodes": 10, "success_rate": rate, "events": {"success": int(10 * rate), "wall": 10 - int(10 * rate)}}
    reports = {"base_eval": {"pretrain": ev(0.0), "pretrain_any": ev(0.4), "heldout": ev(0.0)},
               "base_probes": {"accuracy": [0.3, 0.6, 0.5], "control": [0.26, 0.27, 0.25], "mid_layer": 1,
                               "location": {"r2": [0.5, 0.7, 0.6]}},
               "gt_controllers": {"layer": 1, "controlled": ev(0.3), "base_alone": ev(0.0)},
               "inject_colour2": {"colour": 2, "t0": 30, "base_alone": {"episodes": 9, "reached_first": 0.2},
                                  "injected": {"episodes": 9, "reached_first": 0.5}}}
    part = lambda reached, plan: {"episodes": 5, "reached_target": reached, "follows_plan": plan, "keeps_going": 0.1}
    reports["handover"] = {"t0": 40, "handover": {"straight": part(0.8, 0.9), "turn": part(0.25, 0.2)},
                           "expert": {"straight": part(0.9, 0.95), "turn": part(0.85, 0.9)}}
    for name, rep in reports.items():
        (ant / "reports" / f"{name}.json").write_text(json.dumps(rep))
    at = _page(OVERVIEW, **{app_state.ENV_KEY: "ant"})
    assert not at.exception and not at.info
    frames = [d.value for d in at.dataframe]
    base = next(f for f in frames if "judged on" in f.columns)
    assert base["success"].tolist() == [0.4, 0.0, 0.0]
    expert = json.loads((ant / "reports" / "expert.json").read_text())["sampled"]  # the expert judged alike, every row
    assert base["expert"].tolist() == [expert[s]["success_rate"] for s in ("pretrain_any", "pretrain", "heldout")]
    probe_table = next(f for f in frames if "probe accuracy" in f.columns)
    assert probe_table["probe accuracy"].tolist() == [0.3, 0.6, 0.5]
    assert probe_table["where it lies (R²)"].tolist() == [0.5, 0.7, 0.6]
    assert next(f for f in frames if "injected" in f.columns)["injected"].tolist() == [0.5]
    hand = next(f for f in frames if "walks on" in f.columns)
    assert hand["reaches the target first"].tolist() == [0.8, 0.25, 0.9, 0.85]
    assert hand["target"].tolist() == ["ahead", "to a side"] * 2
    text = " ".join(m.value for m in at.markdown)
    assert "30.0%" in text and "0.600 against 0.270" in text and "first 40 steps" in text


def test_overview_names_the_commands_of_missing_artifacts(tmp_path, monkeypatch):
    _root(tmp_path, monkeypatch, expert=False, report=False, media=False)
    at = _page(OVERVIEW, **{app_state.ENV_KEY: "ant"})
    assert not at.exception
    text = " ".join(w.value for w in at.warning)
    assert "python -m irl_core ant-eval" in text and "python -m irl_core ant-expert" in text


# --- Rollouts: gallery, bad input, missing expert, background render -------------------------------------
def test_rollouts_page_plays_a_shipped_video_at_once():
    at = _page(ROLLOUTS)
    assert not at.exception and not at.error and not at.warning
    assert len(at.get("video")) == 1
    (fig,) = at.get("plotly_chart")
    names = [tr.get("name") for tr in json.loads(fig.proto.spec)["data"]]
    assert names[-1] == "ant" and "entered" in names
    assert any(m.value.startswith("**Outcome: success**") for m in at.markdown)
    assert len(at.selectbox(key="ant_gallery").options) == len(json.loads((SHIPPED / "media" / "gallery.json").read_text())["entries"])


def test_rollouts_page_without_a_gallery_names_its_command(tmp_path, monkeypatch):
    _root(tmp_path, monkeypatch, media=False)
    at = _page(ROLLOUTS, **{app_state.ENV_KEY: "ant"})
    assert not at.exception and S.GALLERY_COMMAND in _one_line(at.warning)


@pytest.mark.parametrize("task, seed, message", [
    ("0-4-1", 0, "colour 4 is out of range"),
    ("0-0-1", 0, "repeats colour 0"),
    ("2--1", 0, "empty or malformed"),
    ("0-1-2-3", -1, "layout seed must be a whole number in 0..2147483647"),
    ("0-1-2-3", 2**31, "layout seed must be a whole number"),
])
def test_rollouts_page_refuses_bad_input_in_one_line(task, seed, message):
    at = _new_rollout(_page(ROLLOUTS))
    at.selectbox(key="ant_task").set_value("Type a task…").run()
    at.text_input(key="ant_task_text").set_value(task)
    at.number_input(key="ant_seed").set_value(seed).run()
    assert not at.exception
    assert message in _one_line(at.error)
    assert not at.get("video") and not at.button


def test_rollouts_page_without_the_expert_names_its_command(tmp_path, monkeypatch):
    _root(tmp_path, monkeypatch, expert=False)
    at = _page(ROLLOUTS, **{app_state.ENV_KEY: "ant"})
    assert not at.exception and len(at.get("video")) == 1, "the shipped videos need no expert"
    at = _new_rollout(at)
    assert not at.exception
    assert "python -m irl_core ant-expert --preset cpu --export" in _one_line(at.error)


def test_rollouts_page_renders_in_the_background_and_caches(tmp_path, monkeypatch):
    at = _new_rollout(_page(ROLLOUTS), steps=12)
    assert any(i.value.startswith("Not rendered yet") for i in at.info)
    at.button(key="ant_render").click().run()
    assert not at.exception
    _wait_for_videos(at, 1)
    assert len(at.get("video")) == 1 and not at.exception
    assert any("stopped at the step limit" in m.value and "after 12 steps" in m.value for m in at.markdown)
    (entry,) = S.RolloutCache().entries()
    # another session asking for the same rollout gets it from the disk at once
    again = _new_rollout(_page(ROLLOUTS), steps=12)
    assert len(again.get("video")) == 1 and not again.info
    assert S.RolloutCache().entries()[0][2] == entry[2]


def test_a_render_survives_leaving_the_page():
    """Leave the Rollouts page while it renders: the worker finishes it, and coming back (the inputs remembered)
    shows the video."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state[app_state.ENV_KEY] = "ant"
    at.run()
    at.switch_page("app_pages/ant/rollouts.py").run()
    at = _new_rollout(at, size="160×160", steps=10)
    at.selectbox(key="ant_task").set_value("3-2-1 (pretraining)").run()
    at.button(key="ant_render").click().run()
    assert at.get("progress") or at.get("video")
    at.switch_page("app_pages/ant/overview.py").run()
    assert not at.exception and "Ant-pinpad" in [t.value for t in at.title]
    (job,) = S.render_queue().jobs()
    assert S.render_queue().wait(job.key, timeout=90).state == "done"
    at.switch_page("app_pages/ant/rollouts.py").run()
    assert not at.exception and len(at.get("video")) == 1
    assert any("task" in m.value and ">3<" in m.value and "after 10 steps" in m.value for m in at.markdown)


# --- the library ------------------------------------------------------------------------------------------
def test_make_request_validates_every_field():
    r = M.make_request("expert-mean", "3-0-1", 5, "chase", 320, 240, 100)
    assert (r.task, r.seed, r.mean_action, r.width, r.height) == ((3, 0, 1), 5, True, 320, 240)
    for kwargs, message in (({"policy": "base"}, "unknown policy"), ({"task": "0-1-7"}, "out of range"),
                            ({"seed": 1.5}, "layout seed"), ({"seed": "x"}, "layout seed"),
                            ({"camera": "side"}, "unknown camera"), ({"width": 100}, "multiple of 16"),
                            ({"max_steps": 0}, "step limit"), ({"max_steps": A.T_MAX + 1}, "step limit")):
        args = {"policy": "expert-mean", "task": "0-1", "seed": 0, **kwargs}
        with pytest.raises(M.MediaError, match=message):
            M.make_request(**args)


def test_render_rollout_writes_a_video_of_the_same_episode_as_the_video_command(tmp_path):
    """Same reset and noise seeding as ant_data.record_video (the ``video`` command): the gymnasium env driven by
    the same expert gives exactly the recorded path; the mp4 has one frame per step plus the reset's."""
    from irl_core.experts.ant_expert import AntExpert
    req = M.make_request("expert-sampled", "1-0-3", 4, "topdown", 96, 64, 15)
    rec = M.render_rollout(req, M.DEFAULT_EXPERT, tmp_path)
    env = A.AntPinpadEnv(task=req.task)
    expert = AntExpert.load(M.DEFAULT_EXPERT, deterministic=False, seed=req.seed)
    _, info = env.reset(seed=req.seed)
    uv = [info["uv"]]
    for _ in range(req.max_steps):
        uv.append(env.step(expert.act(env.batch)[0])[4]["uv"])
    np.testing.assert_allclose(rec["uv"], np.round(uv, 4), atol=1e-9)
    assert rec["length"] == 15 and rec["frames"] == 16 and rec["outcome"] == "stopped" and len(rec["sought"]) == 15
    frames = [f for f in imageio.get_reader(tmp_path / "video.mp4")]
    assert len(frames) == 16 and frames[0].shape == (64, 96, 3)
    assert M.read_record(tmp_path / "rollout.json")["uv"] == rec["uv"]
    assert set(rec["seconds"]) == {"setup", "render", "policy", "physics", "encode"}


def test_shipped_gallery_is_small_consistent_and_decodes():
    items = S.load_gallery(SHIPPED / "media")
    total = sum(f.stat().st_size for f in (SHIPPED / "media").iterdir())
    assert 4 <= len(items) and total <= 10_000_000
    tasks = {it["task"] for it in items}
    shipped_base = (SHIPPED / "base.safetensors").exists()
    assert {it["policy"] for it in items} == set(M.POLICIES) - (set() if shipped_base else set(M.BASE_POLICIES))
    assert "0-1-2-3" in tasks and len(tasks) >= 3
    for it in items:
        assert it["command"].startswith(S.GALLERY_COMMAND)
        reader = imageio.get_reader(S.video_path(it))
        n = reader.count_frames()
        assert n == it["frames"] == it["length"] + 1
        judged = it["followed"] if it.get("any_task") else it["task"]  # the base model: any pretraining task
        task = [int(c) for c in judged.split("-")]
        right = [e["colour"] for e in it["entries"] if e["correct"]]
        assert right == task[:len(right)], "the colours entered follow the task"
        for e in it["entries"]:  # the colour sought changes right after a correct entry
            if e["correct"] and e["t"] < it["length"]:
                assert it["sought"][e["t"] - 1] == e["colour"] != it["sought"][e["t"]]
        assert (it["outcome"] == "success") == (right == task)


def _fake_entry(cache: S.RolloutCache, key: str, nbytes: int, used: float) -> None:
    folder = cache.entry(key)
    folder.mkdir(parents=True)
    (folder / "video.mp4").write_bytes(b"\0" * nbytes)
    rec = folder / "rollout.json"
    rec.write_text("{}")
    os.utime(rec, (used, used))


def test_cache_evicts_the_least_recently_used_entries(tmp_path):
    cache = S.RolloutCache(tmp_path / "c", max_bytes=2_500)
    now = time.time()
    for i, key in enumerate(("a", "b", "c", "d")):
        _fake_entry(cache, key, 1_000, now - 100 + i)
    os.utime(cache.entry("a") / "rollout.json", (now, now))  # "a" was just used
    stale, fresh = cache.root / ".tmp-x-1", cache.root / ".tmp-y-2"  # renders of a process that died / running
    stale.mkdir(), fresh.mkdir()
    os.utime(stale, (now - 7200, now - 7200))
    removed = cache.evict(keep="d")
    assert [p.name for p in removed] == ["b", "c"]
    assert not stale.exists() and fresh.exists()
    assert sorted(p.name for _, _, p in cache.entries()) == ["a", "d"] and cache.size() <= 2_500 + 2 * 2


def test_cache_renders_once_then_hits_and_keeps_within_its_limit(tmp_path):
    cache = S.RolloutCache(tmp_path / "c", max_bytes=1)  # every new entry evicts all older ones
    small = dict(policy="expert-mean", seed=0, camera="topdown", width=64, height=64, max_steps=5)
    first = cache.render(M.make_request(task="0-3-2", **small), M.DEFAULT_EXPERT)
    video = S.video_path(first)
    stamp = video.stat().st_mtime_ns
    assert cache.render(M.make_request(task="0-3-2", **small), M.DEFAULT_EXPERT)["path"] == first["path"]
    assert video.stat().st_mtime_ns == stamp, "a hit does not render again"
    cache.render(M.make_request(task="1-0-3", **small), M.DEFAULT_EXPERT)
    assert len(cache.entries()) == 1 and not video.exists(), "the older entry was evicted"
    keys = {S.RolloutCache.key(M.make_request(task="0-3-2", **{**small, k: v}), "sha") for k, v in
            (("seed", 1), ("camera", "chase"), ("width", 80), ("max_steps", 6), ("policy", "expert-sampled"))}
    keys |= {S.RolloutCache.key(M.make_request(task="0-3-2", **small), d) for d in ("sha", "other")}
    assert len(keys) == 7, "every field and the expert's weights are part of the key"


def test_render_queue_runs_jobs_in_the_background_and_reports_failures(tmp_path):
    q = S.RenderQueue(S.RolloutCache(tmp_path / "c"))
    req = M.make_request("expert-sampled", "2-1-3", 3, "chase", 64, 64, 8)
    job = q.submit(req, M.DEFAULT_EXPERT)
    assert q.submit(req, M.DEFAULT_EXPERT) is job, "a queued or running request is not queued twice"
    done = q.wait(job.key, timeout=60)
    assert done.state == "done" and done.progress == 1.0 and done.step == 8
    assert q.cache.get(job.key)["length"] == 8
    with pytest.raises(M.MediaError, match="ant-expert"):
        q.submit(req, tmp_path / "nowhere" / "expert")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "expert.json").write_text("{}")
    (bad / "expert.safetensors").write_bytes(b"not a checkpoint")
    failed = q.wait(q.submit(req, bad / "expert").key, timeout=60)
    assert failed.state == "failed" and failed.error and "\n" not in failed.error


def _tiny_base(path: Path) -> None:
    import torch
    from irl_core.checkpoints import save_checkpoint
    from irl_core.models.ant_ssm import KIND, AntSSM, AntSSMConfig
    torch.manual_seed(0)
    model = AntSSM(AntSSMConfig(d_model=16, n_layers=2, lru_width=16, n_heads=2, d_mlp=32))
    save_checkpoint(path, model.state_dict(), KIND, model.config_dict(), {"steps": 0})


def test_rollouts_page_offers_the_base_model_once_the_set_has_one(tmp_path, monkeypatch):
    ant = _root(tmp_path, monkeypatch)
    at = _new_rollout(_page(ROLLOUTS, **{app_state.ENV_KEY: "ant"}))
    assert not at.exception and set(at.radio(key="ant_policy").options) == {M.POLICIES[p] for p in
                                                                           ("expert-sampled", "expert-mean")}
    assert any("ant-pretrain" in c.value for c in at.caption)
    _tiny_base(ant / "base")
    at = _new_rollout(_page(ROLLOUTS, **{app_state.ENV_KEY: "ant"}), steps=8)
    assert M.POLICIES["base-mean"] in at.radio(key="ant_policy").options
    at.radio(key="ant_policy").set_value("base-mean").run()
    at.button(key="ant_render").click().run()
    _wait_for_videos(at, 1)
    assert len(at.get("video")) == 1 and not at.exception
    ((_, _, folder),) = S.RolloutCache().entries()
    rec = M.read_record(folder / "rollout.json")
    assert rec["policy"] == "base-mean" and rec["checkpoint"].endswith("base") and rec["length"] <= 8
    assert rec["any_task"] is True  # the base model is judged on any pretraining task by default


def test_base_policy_rollouts_repeat_and_name_a_missing_model(tmp_path):
    _tiny_base(tmp_path / "base")
    request = M.make_request("base-sampled", "0-3-2", 5, width=160, height=160, max_steps=15)
    assert M.simulate(request, tmp_path / "base") == M.simulate(request, tmp_path / "base")
    with pytest.raises(M.MediaError, match="ant-pretrain"):
        M.simulate(request, tmp_path / "nope")
    anyt = M.make_request("base-sampled", "0-3-2", 5, width=160, height=160, max_steps=15, any_task=True)
    assert "any_task" not in request.fields() and anyt.fields()["any_task"] is True
    assert anyt.describe().startswith("any pretraining task") and M.simulate(anyt, tmp_path / "base")["length"] >= 1
    with pytest.raises(M.MediaError, match="any_task"):
        M.make_request("base-sampled", "0-3-2", 5, any_task="yes")


def test_injection_renders_the_same_episode_with_and_without_the_controller(tmp_path, monkeypatch):
    from irl_core.ant_controllers import AntGTControllers, save_ant_gt_controllers
    ant = _root(tmp_path, monkeypatch)
    _tiny_base(ant / "base")
    at = _new_rollout(_page(ROLLOUTS, **{app_state.ENV_KEY: "ant"}), steps=8)
    at.radio(key="ant_policy").set_value("base-mean").run()
    at.selectbox(key="ant_inject").set_value(1).run()
    at.number_input(key="ant_inject_t0").set_value(3).run()
    assert "ant-gt-controllers" in _one_line(at.error)  # the set has no controllers yet: the command is named
    ctrl = AntGTControllers(16, 1)
    with __import__("torch").no_grad():
        ctrl.U[1].normal_(0, 0.5)
    save_ant_gt_controllers(ant / "gt_controllers", ctrl, {})
    at.run()
    at.button(key="ant_render").click().run()
    _wait_for_videos(at, 3, timeout=120)
    assert len(at.get("video")) == 3 and not at.exception  # side by side, then the steered one in the viewer
    recs = sorted((M.read_record(f / "rollout.json") for _, _, f in S.RolloutCache().entries()),
                  key=lambda r: "inject" in r)
    assert "inject" not in recs[0] and recs[1]["inject"] == [1, 3]
    assert recs[0]["uv"][:4] == recs[1]["uv"][:4]  # the same episode until the controller is switched on
    with pytest.raises(M.MediaError, match="only be injected into the ant base model"):
        M.make_request("expert-mean", "0-3-2", 0, inject=(1, 3))
