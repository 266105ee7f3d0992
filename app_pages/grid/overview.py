"""Overview: the paper's three phases and the gridworld-pinpad world of the selected checkpoint set."""
from pathlib import Path

import streamlit as st

from irl_core import app_state
from irl_core.envs.grid import GridPinpadEnv
from irl_core.plots import grid_figure, task_html
from irl_core.scorecard import scorecard

st.title("Emergent temporal abstractions enable hierarchical RL")
st.markdown(
    """
An autoregressive model is **pretrained** to imitate an expert that visits coloured cells in order.
Inside its residual stream, a **metacontroller** then discovers *abstract actions* (subgoals) and when
to switch between them, with no labels. Finally, **internal RL** acts in the space of those abstract
actions and solves a longer task with unseen subgoal transitions, where RL on raw actions fails.
"""
)
c1, c2, c3 = st.columns(3)
c1.markdown("**1 · Pretrain**  \nA causal Transformer predicts the expert's next action from observations only.")
c2.markdown("**2 · Discover**  \nA metacontroller writes ê = e + U(z) e at mid-depth; a gate β decides when z changes.")
c3.markdown("**3 · Internal RL**  \nA policy picks a new code z only when β switches; the rest is frozen.")

sel = app_state.current()
world = sel.world if sel.grid else None  # the ant has its own overview (app_pages/ant/overview.py)
st.header("Gridworld-pinpad" + (f": {world.name}, {world.title}" if world else ""))
left, right = st.columns([1, 2])
with left:
    seed = st.number_input("Layout seed", min_value=0, max_value=2**31 - 1, value=0, step=1)
    env = GridPinpadEnv("pretrain", world=world or "grid7")
    _, info = env.reset(seed=int(seed))
    st.plotly_chart(grid_figure(env.layout, env.agent), width="content")
    st.markdown("Task of this episode: " + task_html(info["task"]), unsafe_allow_html=True)
with right:
    w = env.world
    walls = f"{w.n_walls} wall" + ("s" if w.n_walls > 1 else "")
    subgoals = ("Subgoals are colour pairs: A = 0-1, B = 2-3, C = 4-5, D = 6-7." if w.subgoal == "pair" else
                "Each colour is its own subgoal, as in the paper's ant-pinpad (its tasks are Table A2's).")
    st.markdown(
        f"A {w.size}×{w.size} grid with {w.n_colours} coloured cells, {walls} and the agent (black), at most "
        f"{w.t_max} steps. The agent must visit the colours of its task in order; entering any other colour ends the "
        "episode. The observation shows the grid and the agent, **never the task**: the model must infer it from "
        f"what it has done so far. {subgoals}")
    if w.name == "grid5":
        st.caption("The laptop world: the same model becomes steerable here in under an hour of one CPU core, where "
                   "the paper's 7×7 world needs GPU-scale pretraining (choose the `grid` set for it).")
    st.markdown(f"**The {len(w.pretrain_tasks)} pretraining tasks**")
    st.markdown("<br>".join(task_html(t) for t in w.pretrain_tasks), unsafe_allow_html=True)
    longer = "twice as long" if len(w.heldout_task) == 2 * len(w.pretrain_tasks[0]) else "longer than any of them"
    st.markdown(f"**The held-out task** ({longer}, every subgoal transition unseen in pretraining)")
    st.markdown(task_html(w.heldout_task), unsafe_allow_html=True)


@st.cache_data(show_spinner=False, max_entries=8)
def _scorecard(set_dir: str, stamps: tuple) -> list:
    """The set's scorecard; ``stamps`` (its reports' names and mtimes) makes a rewritten report be read again."""
    return scorecard(set_dir)


if sel.grid:
    st.header("What this set shows of the paper")
    st.caption("Each row is measured from this checkpoint set's own reports, against the yardstick this project "
               "holds the effect to. BENCHMARKS.md diagnoses every row that is not shown.")
    MARK = {True: ":green[✓ shown]", False: ":red[✗ not shown]", None: ":gray[– not measured]"}

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    reports = Path(sel.set_dir) / "reports"
    stamps = tuple(sorted((p.name, p.stat().st_mtime) for p in reports.glob("*.*"))) if reports.is_dir() else ()
    lines = ["| | the paper | yardstick | this set | report |", "|---|---|---|---|---|"]
    for f in _scorecard(str(sel.set_dir), stamps):
        source = f"make it with `{f.source}`" if f.missing else f"`{f.source}`"
        lines.append(f"| **{f.figure}** {MARK[f.shown]} | {cell(f.effect)} | {cell(f.yardstick)} | {cell(f.measured)} | "
                     f"{cell(source)} |")
    st.markdown("\n".join(lines))
