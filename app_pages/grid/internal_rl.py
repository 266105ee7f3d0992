"""Internal RL: launch runs through the job backend, watch them live, and compare methods (Fig. 8)."""
import plotly.graph_objects as go
import streamlit as st

from irl_core import app_state
from irl_core.checkpoints import CheckpointError
from irl_core.palette import METHOD_COLOURS, METHOD_LABELS
from irl_core.reports import load_report, rl_null_note

NEEDS = {"internal-rl": "metacontroller", "beta1": "metacontroller_beta1", "cotrained": "metacontroller_cotrained",
         "compile": "compile", "raw-action": "base"}
PRESETS = {"tiny": "tiny (seconds; a smoke test)", "cpu": "cpu (this machine)", "paper": "paper (Table A13; a GPU)"}

sel = app_state.current_grid()
st.title("Internal RL: reinforcement learning in the space of abstract actions")
st.markdown(
    "The policy picks a code z only when the frozen switching unit opens the gate (β > 0.5); the frozen "
    "base model, steered by U(z) at mid-depth, then acts on its own until the next switch. The baselines use "
    "the same RL algorithm (critic-free PPO) and budget: RL on raw actions, internal RL with β ≡ 1 "
    "(a decision every step), internal RL on a co-trained metacontroller, and CompILE's codes (a decision "
    "every 10 steps). The task is the held-out "
    f"{len(sel.world.heldout_task)}-colour task {'-'.join(map(str, sel.world.heldout_task))}, whose subgoal "
    "transitions the model never saw. In the paper, only internal RL learns.")


# --- the shipped curves and your finished runs ------------------------------------------------------------
@st.cache_data(ttl=5)
def finished_curves() -> dict:
    """Curves of the finished runs in the runs folder (``runs/internal-rl/<id>``, as the job backend lists them)."""
    from irl_core.rl.curves import collect_curves
    from irl_core.jobs import list_runs
    return collect_curves([r["run_dir"] for r in list_runs(stage="internal-rl") if r["status"] == "done"])["methods"]


def band_traces(fig: go.Figure, methods: dict, key: str, dash: str, suffix: str) -> None:
    for method, m in methods.items():
        c = m.get(key) or {}
        if not c.get("episodes"):
            continue
        colour = METHOD_COLOURS.get(method, "#888888")
        x = c["episodes"]
        name = f"{METHOD_LABELS.get(method, method)}{suffix} ({m['runs']} runs)"
        fig.add_trace(go.Scatter(x=x + x[::-1], y=c["q75"] + c["q25"][::-1], fill="toself", fillcolor=colour,
                                 opacity=0.18, line=dict(width=0), hoverinfo="skip", showlegend=False,
                                 legendgroup=name))
        fig.add_trace(go.Scatter(x=x, y=c["median"], mode="lines+markers", name=name, legendgroup=name,
                                 line=dict(color=colour, width=3, dash=dash)))


st.header("Success on the held-out task (Fig. 8)")
c1, c2 = st.columns([2, 1])
curve = c1.radio("Curve", ["held-out evaluation (greedy code)", "held-out evaluation (sampled code)",
                           "training batches (sampled)"], horizontal=True)
log_y = c2.toggle("log scale (Fig. A5)", value=False)
key = {"held-out evaluation (greedy code)": "eval_greedy", "held-out evaluation (sampled code)": "eval_sampled",
       "training batches (sampled)": "train"}[curve]
fig = go.Figure()
try:
    shipped = load_report("internal_rl", set_dir=sel.set_dir)
    band_traces(fig, shipped.get("methods", {}), key, "solid", ", shipped")
    null = rl_null_note(shipped.get("methods", {}))
    if null:
        st.info(null)
except CheckpointError as e:
    shipped = None
    st.info(str(e))
mine = finished_curves()
band_traces(fig, mine, key, "dot", ", your runs")
if fig.data:
    fig.update_layout(xaxis_title="RL training episodes", yaxis_title="success rate", height=440,
                      yaxis_type="log" if log_y else "linear", legend=dict(orientation="h", y=-0.25),
                      margin=dict(t=20))
    if not log_y:
        fig.update_yaxes(range=[0, 1])
    st.plotly_chart(fig, width="stretch")
    st.caption("Median over runs (line) and 25–75% band. Dotted: finished runs launched from this page or the CLI "
               f"under `runs/internal-rl/`. Shipped: `{(shipped or {}).get('meta', {}).get('command', 'bash scripts/reproduce_grid_rl.sh')}`.")
    if log_y:
        st.caption("On the log scale a success rate of 0 is not drawn.")

# --- launching ------------------------------------------------------------------------------------------------
st.header("Launch a run")
from irl_core.jobs import JobError, default_backend, list_runs, tail_log  # noqa: E402 (torch: only on this page)

try:
    BACKEND = default_backend()
except JobError as e:  # IRL_JOBS_BACKEND names no backend
    st.error(str(e))
    st.stop()
st.caption(f"Runs are launched through the **{BACKEND.name}** job backend" + (
    " (Ray tasks, one CPU each; they end if this app stops)." if BACKEND.name == "ray" else
    " (one process per run on this machine). Start the app with `IRL_JOBS_BACKEND=ray` to launch them as Ray "
    "tasks (`RAY_ADDRESS` names a cluster; without it a local Ray starts)."))

with st.form("launch"):
    a, b, c = st.columns(3)
    method = a.selectbox("Method", list(METHOD_LABELS), format_func=METHOD_LABELS.get)
    preset = b.selectbox("Preset", list(PRESETS), index=0, format_func=PRESETS.get)
    device = c.selectbox("Device", list(app_state.devices()), help="cuda appears when this machine has a GPU")
    a, b = st.columns(2)
    seeds = a.multiselect("Seeds", list(range(10)), default=[0])
    episodes = b.number_input("Episode budget (0: the preset's)", min_value=0, max_value=10_000_000, value=0, step=1024)
    go_clicked = st.form_submit_button("Launch", type="primary")
if go_clicked:
    needed = sel.set_dir / f"{NEEDS[method]}.json"
    if not seeds:
        st.error("Choose at least one seed.")
    elif not needed.exists():
        st.error(f"{METHOD_LABELS[method]} needs `{needed}`, which this checkpoint set does not hold; make it with "
                 "`bash scripts/reproduce_grid_rl.sh` (or the discover and compile commands in README).")
    else:
        backend = BACKEND
        for seed in seeds:
            argv = ["internal-rl", "--method", method, "--preset", preset, "--seed", str(seed), "--device", device,
                    "--quiet"]
            if method == "raw-action":
                argv += ["--base", str(sel.set_dir / "base")]
            else:
                argv += ["--metacontroller", str(sel.set_dir / NEEDS[method])]
            if episodes:
                argv += ["--episodes", str(int(episodes))]
            from irl_core.runs import new_run_id, runs_root
            try:
                path = backend.submit(argv, runs_root() / "internal-rl" / new_run_id(f"{method}-seed{seed}-"))
            except (JobError, CheckpointError, RuntimeError) as e:
                st.error(f"seed {seed}: {e}")
            else:
                st.success(f"launched {METHOD_LABELS[method]}, seed {seed}: `{path}`")


# --- live runs ------------------------------------------------------------------------------------------------
@st.fragment(run_every=2)
def live_runs() -> None:
    runs = list_runs(stage="internal-rl")
    if BACKEND.queues:  # Ray knows of tasks that ended without a result; the local backend's list already does
        runs = [BACKEND.status(r["run_dir"]) if r["status"] in ("queued", "running") else r for r in runs]
    if not runs:
        st.info("No internal-RL runs yet: launch one above, or run `python -m irl_core internal-rl --preset tiny`.")
        return
    rows = [{"run": r["id"], "status": r["status"],
             "episodes": f"{int(r['last_step']):,}" if r.get("last_step") is not None else "",
             "error": r.get("error", "")} for r in runs]
    st.table(rows)
    ids = [r["id"] for r in runs]
    chosen = st.selectbox("Run", ids, key="irl_run")
    run = next(r for r in runs if r["id"] == chosen)
    from irl_core.runs import Run
    metrics = Run(run["run_dir"]).metrics()
    train = [(m["charts/episodes"], m["charts/success_rate"]) for m in metrics if "charts/success_rate" in m]
    evals = [(m["charts/episodes"], m["eval/success_greedy"]) for m in metrics if "eval/success_greedy" in m]
    fig = go.Figure()
    if train:
        fig.add_trace(go.Scatter(x=[t[0] for t in train], y=[t[1] for t in train], name="training batches",
                                 mode="lines", line=dict(color="#999999")))
    if evals:
        fig.add_trace(go.Scatter(x=[t[0] for t in evals], y=[t[1] for t in evals], name="held-out (greedy)",
                                 mode="lines+markers", line=dict(color="#4363d8", width=3)))
    if fig.data:
        fig.update_layout(xaxis_title="episodes", yaxis_title="success", yaxis_range=[0, 1], height=300,
                          margin=dict(t=10))
        st.plotly_chart(fig, width="stretch", key=f"live_{chosen}")
    cancel, resume = st.columns(2)
    backend = BACKEND
    if run["status"] in ("queued", "running") and cancel.button("Cancel", key=f"cancel_{chosen}"):
        try:
            backend.cancel(run["run_dir"])
        except JobError as e:
            st.error(str(e))
    if run["status"] in ("failed", "cancelled") and resume.button("Resume", key=f"resume_{chosen}"):
        try:
            backend.resume(run["run_dir"])
        except JobError as e:
            st.error(str(e))
    if run["status"] == "failed" and run.get("error"):
        st.error(run["error"])
    with st.expander("Log"):
        try:
            st.code(tail_log(run["run_dir"], 20) or "(empty)")
        except (JobError, OSError) as e:
            st.caption(str(e))


st.header("Runs")
st.caption("Runs live in `runs/internal-rl/` and keep going when the browser closes; this list refreshes every 2 s.")
live_runs()
