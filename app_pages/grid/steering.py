"""Steering: inject a controller into the frozen base model from a chosen time step (Fig. A4 of the paper).

One page (about 400 lines): its inputs, the two ways to set a code and the rollouts it redraws are one screen.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from irl_core import app_state
from irl_core.checkpoints import CheckpointError, read_json
from irl_core.envs.tasks import TaskError, format_task, parse_task
from irl_core.latent_map import Projection, file_digest, validate_latent_map
from irl_core.palette import COLOURS, subgoal_palette
from irl_core.paths import REPO_ROOT
from irl_core.plots import ratio_figure, rollout_figure, task_html, text_colour
from irl_core.reports import axis_line, command_for, displacement_line
from irl_core.steering import LAYOUT_SEED_MAX, steer

ARROWS = "↑→↓←"
MAX_MAP_POINTS = 4000  # segment codes drawn on the map (an evenly spaced subset beyond this)

st.title("Steering: inject an abstract action")
st.markdown(
    "The base model acts on a layout step by step. From time step **t₀** on, its residual stream at mid-depth "
    "is rewritten as **ê = e + U e**, with U from a ground-truth subgoal controller or decoded from a latent "
    "code z by the metacontroller's hypernetwork, held fixed — an abstract action. Compare the steered "
    "agent with the base model alone on the same layout (the paper's Fig. A4 does this on the ant with a "
    "\"go to blue\" code).")


# --- models and reports (loaded once per checkpoint set; ``stamp`` reloads a file that was replaced) -----
def stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def need(set_dir: str, name: str) -> Path:
    """``<set>/<name>``, or a CheckpointError saying which command makes it."""
    path = Path(set_dir) / name
    if not path.with_suffix(".safetensors").exists():
        raise CheckpointError(f"{path}.safetensors is missing; make it with `{command_for(name, set_dir)}`")
    return path


@st.cache_resource(show_spinner="Loading the base model…", max_entries=4)
def load_base(set_dir: str, device: str, stamp_: float = 0.0):
    from irl_core.pretrain import load_base_model
    return load_base_model(need(set_dir, "base"), device)


@st.cache_resource(show_spinner="Loading the ground-truth controllers…", max_entries=4)
def load_gt(set_dir: str, device: str, stamp_: float = 0.0):
    from irl_core.controllers import load_gt_controllers
    return load_gt_controllers(need(set_dir, "gt_controllers"), device)[0]


@st.cache_resource(show_spinner="Loading the metacontroller…", max_entries=4)
def load_meta(set_dir: str, device: str, stamp_: float = 0.0):
    """(metacontroller, the base model it steers, layer, sha256 of its weights)."""
    from irl_core.discovery import load_metacontroller
    path = need(set_dir, "metacontroller")
    meta, model, layer, _ = load_metacontroller(path, device, base=Path(set_dir) / "base")
    return meta, model, layer, file_digest(path.with_suffix(".safetensors"))


@st.cache_data(show_spinner=False, max_entries=8)
def load_map(set_dir: str, stamp_: float = 0.0) -> dict:
    path = Path(set_dir) / "reports" / "latent_map.json"
    if not path.exists():
        raise CheckpointError(f"{path} is missing; make it with `{command_for('latent_map', set_dir)}`")
    report = read_json(path)
    try:
        validate_latent_map(report)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return report


def models(set_dir: str, device: str, which: str):
    """The loaded artifact ``which`` ("base", "gt_controllers" or "metacontroller") of a set."""
    stamp_ = stamp(Path(set_dir) / f"{which}.safetensors")
    if which == "base":
        return load_base(set_dir, device, stamp_=stamp_)
    if which == "gt_controllers":
        return load_gt(set_dir, device, stamp_=stamp_)
    return load_meta(set_dir, device, stamp_=stamp_ + stamp(Path(set_dir) / "base.safetensors"))


@st.cache_data(show_spinner=False, max_entries=256)
def run(set_dir: str, device: str, mode: str, spec, layout_seed: int, task: str, t0: int, greedy: bool, seed: int,
        diag: int) -> dict:
    """One steered rollout as a dict; ``mode`` is "none", "gt" or "latent" and ``spec`` the subgoal or the code;
    ``diag`` = 0: the paper's rules, > 0: keep going that many steps after the paper's end (and after t₀)."""
    if mode == "latent":
        meta, model, layer, _ = models(set_dir, device, "metacontroller")
        control, kw = list(spec), {"meta": meta}
    elif mode == "gt":
        model, gt = models(set_dir, device, "base"), models(set_dir, device, "gt_controllers")
        layer, control, kw = gt.layer, spec, {"gt": gt}
    else:
        model = models(set_dir, device, "base")
        layer, control, kw = model.n_layers // 2, None, {}
    r = steer(model, layer, control, layout_seed=layout_seed, t0=t0, task=task, greedy=greedy, seed=seed,
              end_on_wrong=diag == 0, diagnostic_steps=diag or None, **kw)
    return {**r.to_dict(), "layer": layer}


def ok(fn, *args):
    """(value, None) or (None, error message) for a loader that may raise on a missing or corrupt file."""
    try:
        return fn(*args), None
    except (CheckpointError, ValueError, OSError, KeyError, TypeError) as e:
        return None, str(e)


# --- figures --------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=64)
def rollout_chart(set_dir: str, device: str, mode: str, spec, layout_seed: int, task: str, t0: int, greedy: bool,
                  seed: int, diag: int) -> go.Figure:
    """The figure of :func:`run`'s rollout (cached: the base-model panel is not redrawn when only the code changes)."""
    r = run(set_dir, device, mode, spec, layout_seed, task, t0, greedy, seed, diag)
    if mode == "none":  # nothing injected: the whole path is drawn as uncontrolled
        r = dict(r, t0=len(r["path"]))
    return rollout_figure(r)


def outcome_text(r: dict) -> str:
    cols = r["paper_colours"]
    if r["outcome"] == "success":
        head = f"**success** in {r['end_step']} steps"
    elif r["outcome"] == "wrong colour":
        head = f"**failed** at step {r['end_step']}: entered colour {cols[-1]} instead of {r['task'][r['completed']]}"
    else:
        head = f"**time limit** ({r['end_step']} steps)"
    return f"{head}; {r['completed']} of {len(r['task'])} task colours completed"


def chips_html(colours: list[int], limit: int = 24) -> str:
    """Colour chips that wrap, with runs of one colour (an agent stepping on and off it) shown once as ×n."""
    runs: list[list[int]] = []
    for c in colours:
        if runs and runs[-1][0] == c:
            runs[-1][1] += 1
        else:
            runs.append([c, 1])
    out = []
    for c, k in runs[:limit]:
        chip = (f"<span style='display:inline-block;min-width:1.7em;height:1.7em;line-height:1.7em;margin:1px;"
                f"border-radius:4px;text-align:center;color:{text_colour(COLOURS[c])};font-weight:600;"
                f"background:{COLOURS[c]}'>{c}</span>")
        out.append(chip + (f"<small>×{k}</small>" if k > 1 else ""))
    more = f" <small>… {len(runs) - limit} more</small>" if len(runs) > limit else ""
    return "<span style='white-space:normal'>" + "".join(out) + more + "</span>"


def visits_html(r: dict) -> str:
    if not r["colours"]:
        return "<i>none</i>"
    paper = len(r["paper_colours"])
    main = chips_html(r["colours"][:paper]) if paper else "<i>none</i>"
    rest = r["colours"][paper:]
    more = (f"<br><span style='opacity:.5'>then, after the paper's end (diagnostic): {chips_html(rest)}</span>"
            if rest else "")
    return main + more


# --- the latent map component (assets/latent_map: inline SVG + plain JS; nothing from a CDN) ---------------
MAP_ASSETS = REPO_ROOT / "assets" / "latent_map"  # map.html, map.css, map.js
latent_map_component = st.components.v2.component(
    "irl_core_latent_map", html=(MAP_ASSETS / "map.html").read_text(), css=(MAP_ASSETS / "map.css").read_text(),
    js=(MAP_ASSETS / "map.js").read_text())


# --- inputs ---------------------------------------------------------------------------------------------
sel = app_state.current_grid()
set_dir, device = str(sel.set_dir), sel.device
base, base_err = ok(models, set_dir, device, "base")
if base is None:
    st.warning(f"No base model to steer in this checkpoint set: {base_err}")
    st.stop()

world = base.world
T_MAX = world.t_max
SUBGOAL_NAMES, SUBGOAL_COLOURS = subgoal_palette(world.subgoal)
TASK_OPTIONS = ["heldout", "pretrain", *[format_task(t) for t in world.pretrain_tasks], "custom"]
TASK_LABELS = {"heldout": f"held-out task {format_task(world.heldout_task)}",
               "pretrain": "a pretraining task (drawn with the layout)", "custom": "custom task…"}

c1, c2, c3, c4 = st.columns([1, 1.6, 1.4, 1])
layout_seed = c1.number_input("Layout seed", value=0, step=1, key="steer_seed",
                              help=f"0 … {LAYOUT_SEED_MAX}. With the task 'a pretraining task' a seed gives "
                                   "the same layout and task as on the Overview page.")
task_choice = c2.selectbox("Task", TASK_OPTIONS, format_func=lambda o: TASK_LABELS.get(o, o), key="steer_task")
task = task_choice
if task_choice == "custom":
    text = c2.text_input("Colours, e.g. " + ("0-1-6-7" if world.n_colours > 4 else "0-3-1"), value="0-1-2-3",
                         key="steer_custom")
    try:
        task = format_task(parse_task(text, world))
    except TaskError as e:
        c2.error(str(e))
        st.stop()
t0 = c3.slider("Inject from time step t₀", 0, T_MAX - 1, 0, key="steer_t0")
greedy = c4.toggle("Greedy actions", value=True, key="steer_greedy", help="off: sample actions with the seed below")
sample_seed = 0 if greedy else int(c4.number_input("Sampling seed", value=0, min_value=0, step=1, key="steer_sseed"))
diagnostic = c4.toggle("Keep going after a wrong colour", value=True, key="steer_diag",
                       help="a diagnostic (not the paper's rules): shows where the agent would go. The outcome "
                            "reported is always the paper's.")
diag_steps = c3.slider("…for this many steps after the paper's end", 5, T_MAX, 30, 5, key="steer_diag_steps",
                       help="counted from the later of the step where the paper's rules end the episode and t₀",
                       disabled=not diagnostic)
diag = int(diag_steps) if diagnostic else 0
if not 0 <= int(layout_seed) <= LAYOUT_SEED_MAX:
    st.error(f"The layout seed must lie between 0 and {LAYOUT_SEED_MAX:,}; got {int(layout_seed):,}.")
    st.stop()
layout_seed = int(layout_seed)

MODES = {"gt": "Ground-truth subgoal controller", "latent": "Latent code z (metacontroller)", "none": "No control"}


def gt_spec():
    """The ground-truth controller chosen (a subgoal, or the task's sequence): (spec, available)."""
    gt, gt_err = ok(models, set_dir, device, "gt_controllers")
    if gt is None:
        st.warning(f"The ground-truth controllers are not available: {gt_err}")
        return None, False
    choices = [*range(world.n_subgoals), "gt-sequence"]
    spec = st.radio("Subgoal held fixed", choices, horizontal=True, key="steer_gt",
                    format_func=lambda g: "follow the task (ground-truth progress)" if g == "gt-sequence"
                    else f"{SUBGOAL_NAMES[g]}")
    try:
        rep = json.loads((Path(set_dir) / "reports" / "controllers.json").read_text())
        st.caption(f"These controllers (trained on this base model) succeed on "
                   f"{rep['success_rate']:.1%} of {rep['episodes']} held-out episodes when activated in the task's "
                   f"order (mean {rep['mean_colours_completed']:.2f} of {len(world.heldout_task)} colours)"
                   + (": this base model has not learned to be steered by them, an honest negative result."
                      if rep["success_rate"] < 0.05 else "."))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return spec, True


def map_spec(report, map_err, digest, n_z: int):
    """The code picked on the latent map (a click, a drag or a subgoal's mean): (spec, available)."""
    spec, mode_ok = None, True
    if report is None:
        st.warning(f"No latent map: {map_err}")
        mode_ok = False
    else:
        proj = Projection.from_dict(report["projection"])
        if report.get("metacontroller_sha256") not in (None, digest):
            st.info("This latent map was made from another metacontroller than the one loaded; remake it with "
                    f"`{command_for('latent_map', set_dir)}`.")
        left, right = st.columns([3, 2])
        cents = report.get("centroids", {})
        if "map_xy" not in st.session_state:
            st.session_state.map_xy = {"x": 0.0, "y": 0.0}
        with right:
            st.markdown("**Codes of discovered segments** on held-out pretraining episodes, projected to the "
                        "plane of their two principal components and coloured by the subgoal each segment "
                        "pursued. **Click or drag** on the map to pick a code; letters mark each subgoal's "
                        "mean code.")
            ev = report["explained_variance_ratio"]
            st.caption(f"{report['n_segments']:,} segments from {report['episodes']} episodes "
                       f"({report['segments_per_episode']:.2f} per episode; majority-label purity "
                       f"{report['mean_purity']:.2f}); the plane holds {ev[0] + ev[1]:.0%} of the codes' "
                       f"variance; nearest-mean subgoal accuracy in R^{n_z}: {report['centroid_accuracy']:.2f}.")
            if "displacement_r2" in report:
                st.caption(displacement_line(report["displacement_r2"], report["centroid_accuracy"]))
            if "axis_steering" in report:
                st.caption(axis_line(report["axis_steering"]))
            bcols = st.columns(max(1, len(cents)) + 1)

            def _pick(xy):
                st.session_state.map_xy = {"x": float(xy[0]), "y": float(xy[1])}

            def _on_map_change():
                """The component sent a new point (a click, or the end of a drag): runs before the script,
                so that this run already draws and steers with it."""
                state = st.session_state.get("steer_map") or {}
                got = state.get("xy") if hasattr(state, "get") else None
                if isinstance(got, dict) and "x" in got and "y" in got:
                    st.session_state.map_xy = {"x": float(got["x"]), "y": float(got["y"])}

            for i, (g, c) in enumerate(sorted(cents.items())):
                bcols[i].button(SUBGOAL_NAMES[int(g)][0], key=f"steer_cent{g}", on_click=_pick, args=(c["xy"],),
                                help=f"the mean code of the {c['count']} segments that pursued {SUBGOAL_NAMES[int(g)]}")
            bcols[-1].button("mean", key="steer_cent_mean", on_click=_pick, args=((0.0, 0.0),),
                             help="the mean of all codes")
        with left:
            shown = np.unique(np.linspace(0, len(report["points"]) - 1, MAX_MAP_POINTS).astype(int)) \
                if len(report["points"]) > MAX_MAP_POINTS else np.arange(len(report["points"]))
            data = {"points": [[round(report["points"][i][0], 3), round(report["points"][i][1], 3)] for i in shown],
                    "labels": [report["labels"][i] for i in shown],
                    "palette": list(SUBGOAL_COLOURS), "names": list(SUBGOAL_NAMES),
                    "bounds": report["bounds"], "selected": st.session_state.map_xy,
                    "centroids": [{"name": SUBGOAL_NAMES[int(g)][0], "xy": c["xy"]} for g, c in cents.items()],
                    "mean": proj.mean.tolist(), "components": proj.components.tolist(),
                    "xlabel": f"PC 1 ({ev[0]:.0%})", "ylabel": f"PC 2 ({ev[1]:.0%})"}
            latent_map_component(key="steer_map", data=data, on_xy_change=_on_map_change)
        xy = st.session_state.map_xy
        spec = tuple(round(float(v), 5) for v in proj.to_code([xy["x"], xy["y"]]))
    return spec, mode_ok


def slider_spec(report, n_z):
    """The code set with one slider per dimension (optionally started from the map's point)."""
    try:
        limit = float(np.ceil(np.abs(np.asarray(report["codes"], dtype=float)).max())) if report else 3.0
    except (KeyError, ValueError, TypeError):
        limit = 3.0
    limit = max(limit, 1.0)
    if report is not None and st.button("Start from the map's selected code"):
        code = Projection.from_dict(report["projection"]).to_code(
            [st.session_state.get("map_xy", {"x": 0})["x"], st.session_state.get("map_xy", {"y": 0})["y"]])
        for i in range(n_z):
            st.session_state[f"steer_z{i}"] = float(np.clip(code[i], -limit, limit))
    for i in range(n_z):  # keep values from another checkpoint set inside this one's range
        st.session_state[f"steer_z{i}"] = float(np.clip(st.session_state.get(f"steer_z{i}", 0.0), -limit, limit))
    cols = st.columns(4)
    spec = tuple(float(cols[i % 4].slider(f"z{i + 1}", -limit, limit, step=0.05, key=f"steer_z{i}"))
                 for i in range(n_z))
    return spec


def latent_spec():
    """The metacontroller's code, set on the latent map or with sliders: (spec, available)."""
    loaded, meta_err = ok(models, set_dir, device, "metacontroller")
    if loaded is None:
        st.warning(f"No metacontroller to decode codes: {meta_err}. The ground-truth controllers still work.")
        return None, False
    meta, _, meta_layer, digest = loaded
    n_z = meta.cfg.n_z
    report, map_err = ok(load_map, set_dir, stamp(Path(set_dir) / "reports" / "latent_map.json"))
    if report is not None and len(report["projection"]["mean"]) != n_z:
        report, map_err = None, f"the latent map has codes of size {len(report['projection']['mean'])}, the metacontroller {n_z}"
    how = st.radio("Set the code", ["map", "sliders"], horizontal=True, key="steer_how",
                   format_func={"map": "on the latent map", "sliders": f"with {n_z} sliders"}.get)
    if how == "map":
        spec, mode_ok = map_spec(report, map_err, digest, n_z)
    else:
        spec, mode_ok = slider_spec(report, n_z), True
    if spec is not None:
        st.caption("z = [" + ", ".join(f"{v:.2f}" for v in spec) + f"] — decoded at layer {meta_layer}")
    return spec, mode_ok


def show_rollouts(mode: str, mode_ok: bool, spec) -> None:
    """The steered rollout beside the base model alone, their outcomes, and the size of the intervention."""
    spec_mode = mode if mode_ok else "none"
    try:
        steered = run(set_dir, device, spec_mode, spec, layout_seed, task, t0, greedy, sample_seed, diag)
        baseline = run(set_dir, device, "none", None, layout_seed, task, t0, greedy, sample_seed, diag)
    except (CheckpointError, ValueError) as e:
        st.error(f"Could not run the rollout: {e}")
        st.stop()

    with st.container(key="steer_result"):
        st.markdown(f"Task of this episode: {task_html(steered['task'])}", unsafe_allow_html=True)
        title = {"gt": "Steered by the ground-truth controller", "latent": "Steered by the latent code"}.get(spec_mode)
        args = (layout_seed, task, t0, greedy, sample_seed, diag)
        panels = [(steered, title, (spec_mode, spec)), (baseline, "Base model alone (no control)", ("none", None))]
        if not title:
            panels = [(baseline, "Base model alone", ("none", None))]
        for col, (r, name, ms) in zip(st.columns(2), panels):
            with col:
                st.markdown(f"**{name}**")
                st.plotly_chart(rollout_chart(set_dir, device, *ms, *args), width="content", key=f"fig_{ms[0]}")
                st.markdown(outcome_text(r), unsafe_allow_html=True)
                st.markdown("Colours entered: " + visits_html(r), unsafe_allow_html=True)
                st.caption("Actions: " + "".join(ARROWS[x] for x in r["actions"]) +
                           f" · computed in {r['seconds'] * 1000:.0f} ms")
        st.caption("Paths: grey before t₀ (nothing injected), orange from t₀ on (steered); dashed and faint after ✕, "
                   "the step where the paper's rules end the episode. ▶ replays the episode; the slider scrubs through it.")
        sa, ba = steered["actions"], baseline["actions"]
        first_diff = next((t for t, (x, y) in enumerate(zip(sa, ba)) if x != y), min(len(sa), len(ba)))
        if spec_mode != "none":
            if sa == ba:
                st.info("The injected controller did not change a single action on this layout.")
            else:
                st.markdown(f"The steered agent first acts differently at **step {first_diff}** (control from t₀ = {t0}).")
        if spec_mode != "none":
            st.plotly_chart(ratio_figure(steered["delta_ratio"], t0), width="stretch", key="fig_ratio")
            st.caption("Relative size of the intervention at the controlled layer, ‖Δresid‖/‖resid‖ with Δresid = U e "
                       "(zero before t₀).")




@st.fragment
def controller_and_rollouts() -> None:
    """The controller, its code and the two rollouts: a fragment, so that a new code (a click on the latent map,
    a slider, a subgoal) reruns only this part of the page, not the layout and task inputs above it."""
    mode = st.radio("Controller", list(MODES), format_func=MODES.get, horizontal=True, key="steer_mode")
    spec, mode_ok = gt_spec() if mode == "gt" else latent_spec() if mode == "latent" else (None, True)
    show_rollouts(mode, mode_ok, spec)


controller_and_rollouts()
