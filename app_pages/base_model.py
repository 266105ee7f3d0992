"""What the pretrained base model knows: its training curve, per-layer linear probes and diagnostics."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from irl_core import app_state
from irl_core.checkpoints import CheckpointError
from irl_core.reports import load_report, report_path

sel = app_state.current()
st.title("Linear probes: what the base model knows, layer by layer")
st.markdown(
    "A linear probe reads the current **subgoal** (the colour pair being sought) from the residual stream "
    "after each layer, on held-out expert episodes; a probe trained on shuffled labels is the control. "
    "The paper sees decoding rise to about 50% around mid-depth (chance: 25%).")


if not sel.grid:
    st.info(app_state.GRID_ONLY)
    st.stop()


@st.cache_data(show_spinner=False)
def _report(name: str, set_dir: str, mtime: float) -> dict:
    return load_report(name, set_dir=set_dir)


def report(name: str) -> dict:
    """A report of the selected checkpoint set, read again when its file changes."""
    path = report_path(name, sel.set_dir)
    return _report(name, str(sel.set_dir), path.stat().st_mtime if path.exists() else 0.0)


try:
    probes = report("probes")
except CheckpointError as e:
    st.warning(str(e))
    st.stop()

layers = probes["layers"]
fig = go.Figure()
for key, label, colour in (("subgoal_probe", "subgoal", "#4363d8"), ("last_colour_probe", "last colour visited", "#f58231")):
    fig.add_trace(go.Scatter(x=layers, y=probes[key]["accuracy"], mode="lines+markers", name=f"{label} probe",
                             line=dict(color=colour, width=3)))
    fig.add_trace(go.Scatter(x=layers, y=probes[key]["control"], mode="lines", name=f"{label}: shuffled control",
                             line=dict(color=colour, dash="dot")))
fig.update_layout(xaxis_title="layer (0 = embedding)", yaxis_title="test accuracy", yaxis_range=[0, 1], height=420,
                  legend=dict(orientation="h", y=-0.25), margin=dict(t=20))
st.plotly_chart(fig, width="stretch")

acc, hist, sampled = probes["action_accuracy"], probes["history_use"], probes["sampled"]


def bayes(key: str, fmt: str = ".3f") -> str:
    """The same measure for the best predictor that does not know the task, when the report has it."""
    ref = probes.get("history_use_bayes")
    return f" (best task-blind predictor: {ref[key]:{fmt}})" if ref else ""


st.subheader("Diagnostics")
st.dataframe(pd.DataFrame([
    ("per-step action accuracy on held-out episodes", f"{acc['model']:.3f}"),
    ("… expert that knows the task (ceiling)", f"{acc['expert_knowing_task']:.3f}"),
    ("… best predictor that does not know the task", f"{acc['bayes_task_blind']:.3f}"),
    ("history use: accuracy at segment start, target known (2nd of pair)", f"{hist['determined_acc']:.3f}"
     + bayes("determined_acc")),
    ("history use: accuracy at segment start, target open (1st of pair)", f"{hist['undetermined_acc']:.3f}"
     + bayes("undetermined_acc")),
    ("history-use gap (known − open)", f"{hist['gap']:+.3f}" + bayes("gap", "+.3f")),
    ("sampled success on the pretraining tasks", f"{sampled['success_pretraining_tasks']:.3f}"),
    ("sampled success on the held-out task", f"{sampled['success_heldout_task']:.4f}"),
], columns=["measure", "value"]), hide_index=True, width="stretch")

ENDS = {"success": ("success", 1 / 16), "first_pair_of_another_task": ("first pair: another task's", 3 / 4),
        "next_pair_of_another_task": ("a later pair: another task's", 3 / 16),
        "partner_missed": ("pair left unfinished", 0.0), "first_colour_starts_no_pair": ("first colour starts no pair", 0.0),
        "next_pair_no_task_allows": ("a next pair no task allows", 0.0), "timeout": ("out of time", 0.0)}
if "ends" in sampled:
    st.subheader("How sampled episodes end")
    st.caption("Sampled rollouts on the pretraining tasks, against an agent that navigates perfectly but does not "
               "know its task: it fails only by picking another task's pair (3 in 4 at the start, 1 in 2 later).")
    labels = [label for label, _ in ENDS.values()]
    bars = go.Figure([go.Bar(y=labels, x=[sampled["ends"].get(k, 0.0) for k in ENDS], orientation="h", name="base model",
                             marker_color="#4363d8"),
                      go.Bar(y=labels, x=[ideal for _, ideal in ENDS.values()], orientation="h",
                             name="perfect task-blind agent", marker_color="#bbbbbb")])
    bars.update_layout(barmode="group", xaxis_title="fraction of episodes", height=360, margin=dict(t=20),
                       yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(bars, width="stretch")

try:
    curve = report("pretrain_curve")
except CheckpointError as e:
    st.info(str(e))
else:
    rows = [r for r in curve["curve"] if "eval/action_acc" in r]
    if rows:
        st.subheader("Training curve")
        st.caption(f"`{curve['meta']['command']}` — {curve['meta']['episodes']:,} episodes")
        fig = go.Figure(go.Scatter(x=[r["charts/episodes"] for r in rows], y=[r["eval/action_acc"] for r in rows],
                                   mode="lines+markers", line=dict(color="#3cb44b", width=3)))
        fig.update_layout(xaxis_title="training episodes", yaxis_title="held-out action accuracy", height=320,
                          margin=dict(t=20))
        st.plotly_chart(fig, width="stretch")

try:
    over_training = report("probes_curve")
except CheckpointError as e:
    st.caption(f"Probes over training (the paper's Fig. A1): {e}")
else:
    points = [p for p in over_training["points"] if p.get("episodes") is not None]
    if points:
        st.subheader("Over training (Fig. A1)")
        labels = [f"{p['episodes'] / 1e6:.2f}M" for p in points]
        heat = go.Figure(go.Heatmap(
            x=labels, y=over_training["layers"], z=[[p["subgoal_probe"]["accuracy"][l] for p in points]
                                                    for l in over_training["layers"]],
            colorscale="Viridis", zmin=0.25, zmax=0.7, colorbar=dict(title="subgoal<br>probe")))
        heat.update_layout(xaxis_title="training episodes", yaxis_title="layer", height=340, margin=dict(t=20))
        st.plotly_chart(heat, width="stretch")
        lines = go.Figure()
        for name, values, colour in (
                ("history-use gap (target ≥ 0.2)", [p["history_use"]["gap"] for p in points], "#4363d8"),
                ("sampled success, pretraining tasks", [p["sampled"]["success_pretraining_tasks"] for p in points], "#3cb44b"),
                ("reaches the right first colour", [p["sampled"]["reached_correct_first_colour"] for p in points], "#f58231")):
            lines.add_trace(go.Scatter(x=labels, y=values, mode="lines+markers", name=name, line=dict(color=colour, width=3)))
        lines.update_layout(xaxis_title="training episodes", yaxis_title="value", height=340, margin=dict(t=20),
                            legend=dict(orientation="h", y=-0.3))
        st.plotly_chart(lines, width="stretch")
