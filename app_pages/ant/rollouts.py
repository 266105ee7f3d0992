"""Ant rollouts: watch the expert walk a task. Shipped videos play at once; a new rollout is rendered with MuJoCo in
the background (``irl_core.ant_media``: a worker thread, an on-disk cache) and shown as an H.264 video beside the
torso's path, with a time slider that moves the path's marker in step with the video's frames.

The slider is a small custom component (inline HTML and JS, nothing from a CDN): it seeks the video to the frame
of the chosen step and, while the video plays, follows its frames (``requestVideoFrameCallback``), moving the
marker with ``Plotly.restyle`` on the chart drawn by ``st.plotly_chart`` (Streamlit's Plotly bundle defines
``window.Plotly``). No rerun is needed, so scrubbing costs nothing on the server.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import streamlit as st

from irl_core import app_state
from irl_core import ant_media as M
from irl_core import ant_media_store as S
from irl_core.ant_plots import colour_chip, marker_trace, path_figure, task_chips
from irl_core.envs import ant as A
from irl_core.palette import COLOUR_NAMES

TYPED = "Type a task…"
VIDEO_KEY, PLOT_KEY = "ant_video", "ant_path"

st.title("Ant-pinpad rollouts")
st.markdown("The expert walks its task on a layout; the video is MuJoCo's rendering (top-down or a chase camera), "
            "the plot the torso's path over the cells, coloured by the colour it is heading for, with the colours "
            "entered numbered in order. Drag the time slider, or play the video: the marker follows its frames. "
            "With a trained ant base model in the set (`base`), it can walk the task alone too.")

sel = app_state.current()
set_dir = Path(sel.set_dir if sel.env == "ant" else app_state.catalogue("ant")[0].path)
set_dir = M.short_path(set_dir)  # relative to the working directory when inside it: commands to copy
expert_path = set_dir / "expert"
HAS_BASE = (set_dir / "base.json").exists() and (set_dir / "base.safetensors").exists()
POLICIES = [p for p in M.POLICIES if HAS_BASE or p not in M.BASE_POLICIES]


def remember(key: str, default):
    """Give widget ``key`` its last value (Streamlit forgets a widget's state when its page is left)."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get("_keep_" + key, default)
    return key


def keep(*keys: str) -> None:
    for k in keys:
        if k in st.session_state:
            st.session_state["_keep_" + k] = st.session_state[k]


# --- the viewer: video, path plot, time slider, outcome --------------------------------------------------
SLIDER_HTML = """<div class="ts"><div class="ts-head"><span class="ts-label">Time step</span>
<span class="ts-read"></span></div>
<input class="ts-range" type="range" min="0" max="0" step="1" value="0" aria-label="time step"></div>"""
SLIDER_CSS = """
.ts { font: 13px sans-serif; color: var(--st-text-color, #222); }
.ts-head { display: flex; gap: 1em; align-items: baseline; }
.ts-label { font-weight: 600; }
.ts-read { font-family: monospace; font-size: 12px; }
.ts-range { width: 100%; accent-color: var(--st-primary-color, #ff4b4b); }
"""
SLIDER_JS = r"""
export default function (component) {
  const { data, parentElement } = component;
  const range = parentElement.querySelector('.ts-range');
  const read = parentElement.querySelector('.ts-read');
  if (!range || !data) return;
  const L = data.length, fps = data.fps;
  range.max = String(L);
  const findVideo = () => document.querySelector(`.st-key-${data.video_key} video`);
  const findPlot = () => document.querySelector(`.st-key-${data.plot_key} .js-plotly-plot`);
  const entered = (k) => data.entries.filter((e) => e.t <= k).map((e) => e.colour + (e.correct ? '' : '✗')).join(' ');
  let shown = -1;
  const moveMarker = () => {
    const gd = findPlot(), P = window.Plotly;
    if (shown < 0 || !gd || !P || !gd.data || !gd.data[data.marker]) return;
    const tr = gd.data[data.marker];
    if (tr.x && tr.x[0] === data.u[shown] && tr.y[0] === data.v[shown]) return;
    P.restyle(gd, { x: [[data.u[shown]]], y: [[data.v[shown]]] }, [data.marker]);
  };
  const show = (k) => {
    k = Math.max(0, Math.min(L, Math.floor(k)));
    if (k === shown) return;
    shown = k;
    range.value = String(k);
    const doing = k < L ? `seeking ${data.sought[k]}` : data.outcome;
    read.textContent = `t = ${k} / ${L} (${(k / fps).toFixed(2)} s), ${doing}; entered: ${entered(k) || 'none'}`;
    moveMarker();
  };
  // the video: follow its frames while it plays, and its seeks
  let video = null, pending = null;
  const frameAt = (seconds) => Math.floor(seconds * fps + 1e-3);
  const onFrame = (now, meta) => { pending = null; if (!video) return; show(frameAt(meta ? meta.mediaTime : video.currentTime)); follow(); };
  const follow = () => {
    if (!video || video.paused || video.ended || pending !== null) return;
    pending = video.requestVideoFrameCallback ? video.requestVideoFrameCallback(onFrame)
                                              : requestAnimationFrame(() => onFrame(0, null));
  };
  const onSeek = () => { if (video) show(frameAt(video.currentTime)); };
  const onEnd = () => show(L);
  const detach = () => {
    if (!video) return;
    video.removeEventListener('play', follow);
    video.removeEventListener('seeked', onSeek);
    video.removeEventListener('ended', onEnd);
    video = null; pending = null;
  };
  const attach = () => {
    const v = findVideo();
    if (v === video) return;
    detach();
    if (!v) return;
    video = v;
    video.addEventListener('play', follow);
    video.addEventListener('seeked', onSeek);
    video.addEventListener('ended', onEnd);
    follow();
  };
  range.oninput = () => {
    const k = Number(range.value);
    const v = findVideo();
    if (v) { v.pause(); v.currentTime = (k + 0.5) / fps; }
    show(k);
  };
  show(data.t || 0);
  attach();
  // the video and the chart may mount after this component, and Streamlit may replace them on a rerun
  const poll = setInterval(() => { attach(); moveMarker(); }, 250);
  return () => { clearInterval(poll); detach(); range.oninput = null; };
}
"""
time_slider = st.components.v2.component("irl_core_ant_time_slider", html=SLIDER_HTML, css=SLIDER_CSS, js=SLIDER_JS)


def entries_html(rec: dict) -> str:
    if not rec["entries"]:
        return "<i>none</i>"
    return " ".join(colour_chip(e["colour"], f"<small>t = {e['t']}{'' if e['correct'] else ' ✗ wrong'}</small>&nbsp;")
                    for e in rec["entries"])


def show_rollout(rec: dict) -> None:
    """The video beside the path plot, the time slider under them, then the outcome and the colours entered."""
    video, fig = S.video_path(rec), path_figure(rec)
    left, right = st.columns([1, 1])
    with left:
        with st.container(key=VIDEO_KEY):
            st.video(str(video), muted=True)
        st.caption(f"{rec['width']}×{rec['height']}, {rec['frames']} frames at {rec['fps']} per second "
                   f"(one per control step; frame k is the state after k steps).")
    with right:
        with st.container(key=PLOT_KEY):
            st.plotly_chart(fig, width="content", config={"displayModeBar": False}, key="ant_path_chart")
    uv = rec["uv"]
    time_slider(key="ant_time", data={
        "length": rec["length"], "fps": rec["fps"], "u": [p[0] for p in uv], "v": [p[1] for p in uv],
        "sought": rec.get("sought", []), "entries": rec["entries"], "outcome": M.OUTCOMES[rec["outcome"]],
        "marker": marker_trace(fig), "video_key": VIDEO_KEY, "plot_key": PLOT_KEY, "t": 0})
    seconds = rec["length"] * A.CONTROL_DT
    judged = (f"any pretraining task (followed {task_chips([int(c) for c in rec['followed'].split('-')])})"
              if rec.get("any_task") and rec.get("followed") else
              f"task {task_chips([int(c) for c in rec['task'].split('-')])}")
    st.markdown(f"**Outcome: {M.OUTCOMES[rec['outcome']]}** after {rec['length']} steps ({seconds:.2f} s) on "
                f"{judged} &nbsp; · layout seed {rec['seed']} · "
                f"{M.POLICIES[rec['policy']]}", unsafe_allow_html=True)
    st.markdown("**Colours entered:** " + entries_html(rec), unsafe_allow_html=True)


# --- shipped videos ---------------------------------------------------------------------------------------
def gallery() -> None:
    try:
        items = S.load_gallery(set_dir / "media")
    except M.MediaError as e:
        st.warning(str(e))
        return
    if not items:
        st.warning(f"{set_dir / 'media' / S.GALLERY_FILE} lists no videos; make them with `{S.GALLERY_COMMAND}`")
        return
    remember("ant_gallery", 0)
    i = st.selectbox("Shipped video", range(len(items)), format_func=lambda j: items[j]["title"], key="ant_gallery")
    keep("ant_gallery")
    i = i if i is not None and 0 <= i < len(items) else 0
    show_rollout(items[i])
    st.caption(f"Shipped in `{set_dir / 'media'}`; remake it with `{items[i]['command']}`.")


# --- a new rollout ----------------------------------------------------------------------------------------
def request_from_inputs() -> M.RolloutRequest:
    choices = M.task_choices()
    labels = [label for label, _ in choices] + [TYPED]
    c1, c2, c3 = st.columns([1.3, 1, 1])
    with c1:
        label = st.selectbox("Task", labels, key=remember("ant_task", labels[-2]))
        task = dict(choices).get(label) if label != TYPED else st.text_input(
            "Task string", key=remember("ant_task_text", "0-1-2-3"),
            help="Colours 0..3 joined by '-', none repeated back to back, e.g. 3-0-1.")
        seed = st.number_input("Layout seed", step=1, key=remember("ant_seed", 0),
                               help=f"Seeds the reset (layout, start, pose) and the expert's noise: 0..{M.SEED_MAX}.")
    with c2:
        if st.session_state.get("_keep_ant_policy") not in POLICIES:
            st.session_state.pop("_keep_ant_policy", None)
        policy = st.radio("Policy", POLICIES, format_func=M.POLICIES.get, key=remember("ant_policy", "expert-mean"))
        if not HAS_BASE:
            st.caption(f"The ant base model joins the policies once `{set_dir / 'base'}` exists: "
                       f"`{M.base_command(set_dir / 'base')}`.")
        camera = st.radio("Camera", list(M.CAMERA_LABELS), format_func=M.CAMERA_LABELS.get, horizontal=True,
                          key=remember("ant_camera", "topdown"))
        inject, any_task = None, False
        if policy in M.BASE_POLICIES:
            any_task = st.checkbox("Succeed on any pretraining task", key=remember("ant_any_task", True),
                                   help="The base model is not told its task: count the episode a success when the "
                                        "colours it enters complete any of the 16 pretraining tasks, instead of ending "
                                        "it at the first colour off the task chosen above.")
            colour = st.selectbox("Inject a controller", ["none", 0, 1, 2, 3], key=remember("ant_inject", "none"),
                                  format_func=lambda c: "none" if c == "none" else f"go to colour {c} ({COLOUR_NAMES[c]})",
                                  help="Switch on the ground-truth controller of a colour from a chosen step (Fig. A4); "
                                       "the base model alone plays the same episode beside it.")
            if colour != "none":
                t0 = st.number_input("from step", min_value=0, max_value=A.T_MAX - 1, step=5,
                                     key=remember("ant_inject_t0", 30))
                inject = (int(colour), int(t0))
    with c3:
        sizes = [f"{w}×{h}" for w, h in M.RESOLUTIONS]
        size = st.selectbox("Resolution", sizes, key=remember("ant_size", "480×480"))
        steps = st.number_input("Step limit", min_value=1, max_value=A.T_MAX, step=10,
                                key=remember("ant_steps", A.T_MAX),
                                help=f"Stop after this many steps (the episode's own limit is T = {A.T_MAX}).")
    keep("ant_task", "ant_task_text", "ant_seed", "ant_policy", "ant_camera", "ant_size", "ant_steps", "ant_inject",
         "ant_inject_t0", "ant_any_task")
    w, h = M.RESOLUTIONS[sizes.index(size)] if size in sizes else M.RESOLUTIONS[2]
    return M.make_request(policy, task if task is not None else "", seed, camera, w, h, int(steps), inject,
                          bool(any_task))


@st.fragment(run_every=0.5)
def progress(key: str) -> None:
    job = S.render_queue().job(key)
    if job is None or not job.active:
        st.rerun(scope="app")
    if job.state == "queued":
        st.progress(0.0, text="Waiting for the renderer (one video at a time)…")
    else:
        st.progress(job.progress, text=f"Rendering: step {job.step} of at most {job.request.max_steps}…")


def first_entered_after(rec: dict, t0: int) -> str:
    colour = next((e["colour"] for e in rec["entries"] if e["t"] > t0), None)
    return "none" if colour is None else f"{colour} ({COLOUR_NAMES[colour]})"


def side_by_side(plain: dict, steered: dict) -> None:
    """The base model alone and steered on the same episode (same layout, start and draws until the injection)."""
    colour, t0 = steered["inject"]
    st.markdown(f"**The same episode, without and with the controller for colour {colour} "
                f"({COLOUR_NAMES[colour]}) from step {t0}**")
    for col, rec, title in zip(st.columns(2), (plain, steered), ("base model alone", "with the controller")):
        with col:
            st.video(str(S.video_path(rec)), muted=True)
            st.caption(f"{title}: {M.OUTCOMES[rec['outcome']]} after {rec['length']} steps; first colour entered "
                       f"after step {t0}: {first_entered_after(rec, t0)}.")
    st.markdown("The steered rollout, frame by frame:")


def new_rollout() -> None:
    try:
        request = request_from_inputs()
    except M.MediaError as e:
        st.error(str(e))
        return
    render = st.button("Render", type="primary", key="ant_render")
    requests = [replace(request, inject=None), request] if request.inject else [request]
    try:
        checkpoint = M.check_checkpoint(request, set_dir / request.checkpoint_name)
        renderer = S.render_queue()
        keys = [renderer.key(r, checkpoint) for r in requests]
    except M.MediaError as e:
        st.error(str(e))
        return
    recs = [renderer.cache.get(k) for k in keys]
    jobs = [renderer.job(k) for k in keys]
    if render:
        for i, (r, rec, job) in enumerate(zip(requests, recs, jobs)):
            if rec is None and (job is None or not job.active):
                jobs[i] = renderer.submit(r, checkpoint)
                recs[i] = jobs[i].record
    failed = next((j for j in jobs if j is not None and j.state == "failed"), None)
    active = next((k for k, j in zip(keys, jobs) if j is not None and j.active), None)
    if all(rec is not None for rec in recs):
        if request.inject:
            side_by_side(*recs)
        rec = recs[-1]
        show_rollout(rec)
        cache = renderer.cache
        st.caption(f"Rendered in {rec['wall_s']:.1f} s; cached in `{cache.root}` ({cache.size() / 1e6:.1f} MB of "
                   f"{cache.max_bytes / 1e6:.0f} MB; the least recently used videos go first).")
    elif active is not None:
        progress(active)
    elif failed is not None:
        st.error(failed.error)
    else:
        st.info(f"Not rendered yet: press **Render** ({request.describe()}).")


mode = st.radio("Show", ["Shipped videos", "New rollout"], horizontal=True, key=remember("ant_mode", "Shipped videos"),
                label_visibility="collapsed")
keep("ant_mode")
if mode == "New rollout":
    new_rollout()
else:
    gallery()
