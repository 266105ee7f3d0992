"""What the pretrained base model knows: its training curve, per-layer linear probes and diagnostics."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from irl_core import app_state
from irl_core.checkpoints import CheckpointError
from irl_core.reports import load_report, report_path

sel = app_state.current_grid()
st.title("Linear probes: what the base model knows, layer by layer")
world = sel.world
st.markdown(
    "A linear probe reads the current **subgoal** ("
    + ("the colour pair being sought" if world.subgoal == "pair" else "the colour being sought")
    + ") from the residual stream after each layer, on held-out expert episodes; a probe trained on shuffled "
    "labels is the control. The paper sees decoding rise to about 50% around mid-depth (chance: 25%).")


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
    *([("history use: accuracy at segment start, target known (2nd of pair)", f"{hist['determined_acc']:.3f}"
        + bayes("determined_acc")),
       ("history use: accuracy at segment start, target open (1st of pair)", f"{hist['undetermined_acc']:.3f}"
        + bayes("undetermined_acc")),
       ("history-use gap (known − open)", f"{hist['gap']:+.3f}" + bayes("gap", "+.3f"))] if world.subgoal == "pair" else
      [("accuracy at segment start (no target is ever fixed by history in this world)",
        f"{hist['undetermined_acc']:.3f}" + bayes("undetermined_acc"))]),
    ("sampled success on the pretraining tasks", f"{sampled['success_pretraining_tasks']:.3f}"),
    ("sampled success on the held-out task", f"{sampled['success_heldout_task']:.4f}"),
], columns=["measure", "value"]), hide_index=True, width="stretch")

# each end: (label, the fraction a perfect task-blind agent would have)
if world.subgoal == "pair":
    ENDS = {"success": ("success", 1 / 16), "first_pair_of_another_task": ("first pair: another task's", 3 / 4),
            "next_pair_of_another_task": ("a later pair: another task's", 3 / 16),
            "partner_missed": ("pair left unfinished", 0.0), "first_colour_starts_no_pair": ("first colour starts no pair", 0.0),
            "next_pair_no_task_allows": ("a next pair no task allows", 0.0), "timeout": ("out of time", 0.0)}
    BLIND = "picking another task's pair (3 in 4 at the start, 1 in 2 later)"
else:
    ENDS = {"success": ("success", 1 / 16), "first_colour_of_another_task": ("first colour: another task's", 3 / 4),
            "next_colour_of_another_task": ("a later colour: another task's", 3 / 16),
            "next_colour_no_task_allows": ("a next colour no task allows", 0.0), "timeout": ("out of time", 0.0)}
    BLIND = "picking another task's colour (3 in 4 at the start, 1 in 2 later)"
if "ends" in sampled:
    st.subheader("How sampled episodes end")
    st.caption("Sampled rollouts on the pretraining tasks, against an agent that navigates perfectly but does not "
               f"know its task: it fails only by {BLIND}.")
    labels = [label for label, _ in ENDS.values()]
    bars = go.Figure([go.Bar(y=labels, x=[sampled["ends"].get(k, 0.0) for k in ENDS], orientation="h", name="base model",
                             marker_color="#4363d8"),
                      go.Bar(y=labels, x=[ideal for _, ideal in ENDS.values()], orientation="h",
                             name="perfect task-blind agent", marker_color="#bbbbbb")])
    bars.update_layout(barmode="group", xaxis_title="fraction of episodes", height=360, margin=dict(t=20),
                       yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(bars, width="stretch")

pretrain_meta: dict = {}
try:
    curve = report("pretrain_curve")
except CheckpointError as e:
    st.info(str(e))
else:
    pretrain_meta = curve.get("meta", {})
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
        gap = [("history-use gap (target ≥ 0.2)", [p["history_use"]["gap"] for p in points], "#4363d8")]
        for name, values, colour in (
                *(gap if world.subgoal == "pair" else []),
                ("sampled success, pretraining tasks", [p["sampled"]["success_pretraining_tasks"] for p in points], "#3cb44b"),
                ("reaches the right first colour", [p["sampled"]["reached_correct_first_colour"] for p in points], "#f58231")):
            lines.add_trace(go.Scatter(x=labels, y=values, mode="lines+markers", name=name, line=dict(color=colour, width=3)))
        lines.update_layout(xaxis_title="training episodes", yaxis_title="value", height=340, margin=dict(t=20),
                            legend=dict(orientation="h", y=-0.3))
        st.plotly_chart(lines, width="stretch")


# --- controllability (Fig. 4 and Fig. A2): where a ground-truth controller steers this model -------------------
def _rows_by_layer(rows: list[dict]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for r in rows:
        out.setdefault(int(r["layer"]), []).append(float(r["success_rate"]))
    return dict(sorted(out.items()))


try:
    sweep = report("controllers_layers")
except CheckpointError as e:
    sweep = None
    st.caption(f"Controllability by layer (the paper's Fig. 4): {e}")
if sweep is not None:
    by_layer = _rows_by_layer(sweep["rows"])
    st.subheader("Where a controller steers it (Fig. 4)")
    st.markdown(
        "Ground-truth subgoal controllers (one low-rank U per subgoal, trained with the base model frozen) inserted "
        "after each layer, switched on the environment's progress, on the held-out task "
        f"{'-'.join(map(str, world.heldout_task))}; success judged by replaying the rollouts under the world's rules. "
        "The paper finds mid-depth best.")
    med = [float(pd.Series(v).median()) for v in by_layer.values()]
    fig = go.Figure(go.Scatter(x=list(by_layer), y=med, mode="lines+markers", name="median over seeds",
                               line=dict(color="#4363d8", width=3)))
    for layer, values in by_layer.items():
        fig.add_trace(go.Scatter(x=[layer] * len(values), y=values, mode="markers", showlegend=False,
                                 marker=dict(color="#4363d8", opacity=0.4, size=8), hoverinfo="y"))
    fig.update_layout(xaxis_title="controlled layer (0 = embedding)", yaxis_title="held-out success",
                      yaxis_range=[0, 1], height=340, margin=dict(t=20))
    st.plotly_chart(fig, width="stretch")
    n_seeds = max(len(v) for v in by_layer.values())
    st.caption(f"{n_seeds} seed(s) per layer, {sweep['rows'][0]['episodes']} episodes per point · `{sweep['command']}`")

try:
    snaps = report("controllers_snapshots")
except CheckpointError:
    snaps = None
if snaps is not None:
    st.markdown("**Over training** (Fig. A2): the same controllers on earlier snapshots of the base model "
                "(the last point of each line is the final model, from the sweep above)")
    final = _rows_by_layer(sweep["rows"]) if sweep is not None else {}
    final_episodes = int(pretrain_meta.get("episodes", 0)) if pretrain_meta else 0
    fig = go.Figure()
    for layer, colour in ((0, "#f58231"), (layers[-1] // 2, "#4363d8")):
        pts = sorted((r["base_episodes"], r["success_rate"]) for r in snaps["rows"] if r["layer"] == layer)
        if layer in final and final_episodes:
            pts.append((final_episodes, float(pd.Series(final[layer]).median())))
        if pts:
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                     name=f"controller at layer {layer}", line=dict(color=colour, width=3)))
    fig.update_layout(xaxis_title="training episodes of the base model", yaxis_title="held-out success",
                      yaxis_range=[0, 1], height=320, margin=dict(t=20), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(fig, width="stretch")

try:
    reading = report("control_reading")
except CheckpointError:
    reading = None
if reading is not None:
    st.subheader("What a controller rewrites")
    st.markdown(
        f"Probes fitted on the uncontrolled residual stream at layer {reading['read_layer']} read, while a controller "
        "for *another* subgoal is injected: which subgoal the model now represents, and whether it still reads where "
        "each colour lies (the first shortest-path move to each colour). A controller that writes an abstract subgoal "
        "changes the first and leaves the second alone.")
    clean = reading["clean"]
    table = [("no controller", "–", f"{clean['subgoal_probe']:.2f} (true)", f"{clean['layout_accuracy']:.2f}",
              f"{clean.get('acts_toward_true', float('nan')):.2f}", "–")]
    for r in reading["rows"]:
        table.append((f"layer {r['layer']}", f"{r['relative_norm']:.2f}", f"{r['subgoal_reads_injected']:.2f}",
                      f"{r['layout_accuracy']:.2f}", f"{r.get('acts_toward_true', float('nan')):.2f}",
                      f"{r.get('acts_toward_injected', float('nan')):.2f}"))
    st.dataframe(pd.DataFrame(table, columns=["controller", "‖Ue‖/‖e‖", "subgoal probe reads the injected subgoal",
                                              "layout reading accuracy", "acts toward the true colour",
                                              "acts toward the injected colour"]),
                 hide_index=True, width="stretch")
    if "layout_probe_by_layer" in reading:
        st.markdown("Where each colour lies (the first shortest-path move to it) is read linearly from the uncontrolled "
                    "stream with accuracy, layer by layer: " + ", ".join(
                        f"{l}: **{a:.2f}**" for l, a in enumerate(reading["layout_probe_by_layer"])) + ".")
    st.caption(f"{reading['episodes']} held-out episodes · `{reading['command']}`")
