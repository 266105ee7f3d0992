"""Overview: the paper's three phases and the gridworld-pinpad environment."""
import streamlit as st

from irl_core import app_state
from irl_core.envs.grid import GridPinpadEnv
from irl_core.envs.tasks import GRID_HELDOUT_TASK, GRID_PRETRAIN_TASKS
from irl_core.plots import grid_figure, task_html

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

st.header("Gridworld-pinpad")
if not app_state.current().grid:
    st.info("Ant-pinpad: grid only for now. The pages show the gridworld; the ant environment, its expert and "
            "datasets are available from the command line (`python -m irl_core ant-expert`, `ant-data`, `video`).")
left, right = st.columns([1, 2])
with left:
    seed = st.number_input("Layout seed", min_value=0, max_value=2**31 - 1, value=0, step=1)
    env = GridPinpadEnv("pretrain")
    _, info = env.reset(seed=int(seed))
    st.plotly_chart(grid_figure(env.layout, env.agent), width="content")
    st.markdown("Task of this episode: " + task_html(info["task"]), unsafe_allow_html=True)
with right:
    st.markdown(
        "A 7×7 grid with 8 coloured cells, 4 walls and the agent (black). The agent must visit the colours of "
        "its task in order; entering any other colour ends the episode. The observation shows the grid and the "
        "agent, **never the task**: the model must infer it from what it has done so far. Subgoals are colour "
        "pairs: A = 0-1, B = 2-3, C = 4-5, D = 6-7.")
    st.markdown("**The 16 pretraining tasks**")
    st.markdown("<br>".join(task_html(t) for t in GRID_PRETRAIN_TASKS), unsafe_allow_html=True)
    st.markdown("**The held-out task** (twice as long, every subgoal transition unseen in pretraining)")
    st.markdown(task_html(GRID_HELDOUT_TASK), unsafe_allow_html=True)
