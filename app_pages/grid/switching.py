"""Switching (Fig. 6 / A3): does the metacontroller's gate β_t switch when the ground-truth subgoal changes?

Reads ``<set>/reports/switching.npz`` (``python -m irl_core switching``) through irl_core.reports.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from irl_core import app_state
from irl_core.checkpoints import CheckpointError
from irl_core.envs.tasks import format_task
from irl_core.palette import subgoal_palette
from irl_core.plots import grid_figure, subgoal_legend_html, switching_timeline, task_html
from irl_core.reports import load_sweep, load_switching, report_path, switching_null_note

sel = app_state.current_grid()
st.title("Switching: when does the metacontroller change its abstract action?")
st.markdown(
    "The metacontroller's gate **βₜ** decides at every step whether to draw a new latent code (β ≈ 1) or to "
    "keep the previous one (β ≈ 0). Nothing in training asks it to, yet in the paper it switches *exactly* "
    "when the expert moves on to the next **subgoal** (the colour pair sought in the paper's 7×7 world, the "
    "colour itself in the 5×5 one; shaded in the background). "
    "The numbers below measure that on held-out expert episodes: a switch is a step with β > 0.5, matched "
    "one-to-one to a subgoal change within ±1 step.")

SUBGOALS = sel.world.subgoal
SUBGOAL_NAMES, _ = subgoal_palette(SUBGOALS)
SOURCE_KEY = app_state.SWITCHING_SOURCE_KEY


@st.cache_data(show_spinner=False)
def switching(set_dir: str, path: str, mtime: float) -> dict:
    """An export of a set (``path``: the shipped one when empty); ``mtime`` makes a re-exported file be read
    again."""
    return load_switching(set_dir, path=path or None)


@st.cache_data(show_spinner=False)
def sweep_exports(set_dir: str, mtime: float) -> dict[str, str]:
    """Label of every sweep point of the set that has a switching export, by the export's path."""
    try:
        rows = load_sweep(set_dir)["rows"]
    except CheckpointError:
        return {}
    return {r["switching"]: f"α sweep point: {r['variant']} · α={r['alpha']:g} · seed {r['seed']}"
                            f"{' ★' if r['aligned'] else ''}" for r in rows if r["switching"]}


shipped = report_path("switching", sel.set_dir, suffix=".npz")
table = report_path("discovery", sel.set_dir)
sources = {"": "the shipped metacontroller (reports/switching.npz)",
           **sweep_exports(str(sel.set_dir), table.stat().st_mtime if table.exists() else 0.0)}
if st.session_state.get(SOURCE_KEY) not in sources:  # another set, or a point no longer in the table
    st.session_state[SOURCE_KEY] = ""
if len(sources) > 1:
    st.selectbox("Metacontroller", list(sources), format_func=sources.get, key=SOURCE_KEY,
                 help="The shipped metacontroller, or any point of the α sweep (the Rate–distortion page): "
                      "each has its own export of held-out episodes.")
path = Path(st.session_state[SOURCE_KEY]) if st.session_state[SOURCE_KEY] else shipped
try:
    data = switching(str(sel.set_dir), st.session_state[SOURCE_KEY], path.stat().st_mtime if path.exists() else 0.0)
except CheckpointError as e:
    st.warning(str(e))
    st.stop()

m = data["metrics"]
null = switching_null_note(m, sel.set_dir)
if null:
    st.info(null)
TIES_NOTE = {"random": "the paper's D* (random tie-break)", "first": "D* with the fixed tie-break"}
st.caption(f"{len(data['length'])} held-out episodes from `{Path(data['path']).name}`"
           + (f" ({TIES_NOTE[data['dstar_ties']]})" if data["dstar_ties"] in TIES_NOTE else "")
           + (f", metacontroller `{data['checkpoint']}`" if data["checkpoint"] else ""))
cols = st.columns(6)
cols[0].metric("Precision", f"{m['precision']:.2f}", help="matched switches / switches (steps t ≥ 1)")
cols[1].metric("Recall", f"{m['recall']:.2f}", help="matched subgoal changes / subgoal changes")
cols[2].metric("F1 (±1 step)", f"{m['f1']:.2f}")
cols[3].metric("Quasi-binary", f"{m['binary_fraction']:.0%}", help="fraction of steps with β < 0.1 or β > 0.9")
cols[4].metric("Switches / episode", f"{m['switches']:.2f}", help="steps with β > 0.5, the first step included")
cols[5].metric("Changes / episode", f"{m['true_changes']:.2f}",
               help="true subgoal changes at t ≥ 1 (an ideal gate switches once more: at t = 0)")

# --- one episode, step by step ------------------------------------------------------------------------
beta, subgoal, length = data["beta"], data["subgoal"], data["length"]
n_eps = len(length)


def counted(n: int, noun: str, plural: str) -> str:
    return f"{n} {noun if n == 1 else plural}"


def episode_label(i: int) -> str:
    task = f"task {format_task(t for t in data['task'][i] if t >= 0)} · " if data["has_grid"] else ""
    return (f"#{i} · {task}{length[i]} steps · {counted(int(data['switches'][i]), 'switch', 'switches')} / "
            f"{counted(int(data['changes'][i]), 'subgoal change', 'subgoal changes')}")


st.subheader("One episode")
# One episode widget per export: with one key for all, the browser kept showing the label an episode had in the
# export chosen before ("3 switches" of an aligned point on a point that switches once).
episode_key = f"switching_episode:{sel.set_dir}:{st.session_state[SOURCE_KEY]}"
if st.session_state.get(episode_key) not in range(n_eps):
    st.session_state[episode_key] = 0
i = st.selectbox("Episode", range(n_eps), format_func=episode_label, key=episode_key)
n = int(length[i])
t_key = f"switching_t_{i}"
if st.session_state.get(t_key, 0) > n:
    st.session_state[t_key] = 0
t = st.slider("Step t", 0, n, key=t_key,
              help="t = the number of actions taken; the last value shows where the episode ended")
left, right = st.columns([3, 2]) if data["has_grid"] else (st.container(), None)
with left:
    st.plotly_chart(switching_timeline(beta[i], subgoal[i], n, t=t, height=300, subgoals=SUBGOALS), width="stretch",
                    key="switching_timeline")
    if t < n:
        g = int(subgoal[i, t])
        st.markdown(f"**Step {t}**: βₜ = **{beta[i, t]:.3f}** "
                    f"({'switch' if beta[i, t] > 0.5 else 'keep'}); subgoal {SUBGOAL_NAMES[g]}"
                    + (" — it changes here" if t > 0 and subgoal[i, t] != subgoal[i, t - 1] else ""))
    else:
        st.markdown(f"**Step {t}**: the episode is over ({n} actions).")
if right is not None:
    with right:
        pos = data["pos"][i]
        cells = [int(c) for c in pos[: t + 1] if c >= 0]
        st.plotly_chart(grid_figure(data["layout"][i], cells[-1] if cells else None, cells, size=320),
                        width="content", key="switching_grid")
        st.markdown("Task: " + task_html(int(c) for c in data["task"][i] if c >= 0), unsafe_allow_html=True)
else:
    st.info("This export has no layouts or agent positions (it was made by an older version); rerun "
            "`python -m irl_core switching …` to see the agent on the grid.")

# --- examples as in the paper's Fig. A3 -----------------------------------------------------------------
st.subheader("Three example episodes (as in Fig. A3)")
st.markdown(subgoal_legend_html(SUBGOALS), unsafe_allow_html=True)
cols = st.columns(3)
for col, j in zip(cols, range(min(3, n_eps))):
    col.plotly_chart(switching_timeline(beta[j], subgoal[j], int(length[j]), height=230, legend=False,
                                        title=f"episode #{j}", subgoals=SUBGOALS), width="stretch", key=f"switching_example_{j}")

with st.expander("Switches against subgoal changes, per episode"):
    counts = pd.DataFrame({"switches (β > 0.5)": data["switches"], "subgoal changes": data["changes"]})
    table = counts.value_counts().rename("episodes").reset_index().sort_values(list(counts.columns))
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(f"{int(np.sum(data['switches'] == data['changes'] + 1))} of {n_eps} episodes have exactly one switch "
               "more than subgoal changes, as an ideal gate would: one at the first step, one at each change.")
