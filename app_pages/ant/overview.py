"""Ant-pinpad overview: the world seen from above, its tasks, and the expert's measured success."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from irl_core import app_state
from irl_core.ant_media import MediaError, SEED_MAX, expert_command, short_path
from irl_core.ant_plots import colour_chip, task_chips, world_figure
from irl_core.envs import ant as A
from irl_core.envs.tasks import ANT_HELDOUT_TASK, ANT_PRETRAIN_TASKS, pretraining_transitions

EVAL_COMMAND = "python -m irl_core ant-eval --episodes 200 --out {set}/reports/expert.json"

st.title("Ant-pinpad")
st.markdown(
    "The continuous-control half of the paper: the classic MuJoCo **ant** (8 joints, torques in [−1, 1]) walks "
    f"on a {A.G}×{A.G} grid of {A.CELL_SIZE:g} m floor cells with {A.N_COLOURS} coloured cells and "
    f"{A.N_WALLS} wall. It must enter the colours of its task in order; entering another colour, the wall or "
    f"leaving the grid, or its torso leaving heights {A.Z_RANGE[0]:g}–{A.Z_RANGE[1]:g} m, ends the episode, as "
    f"do T = {A.T_MAX} control steps ({A.CONTROL_DT:g} s each, {1 / A.CONTROL_DT:g} per second). The observation "
    "(41 numbers: symlog proprioception, the torso's position, offsets to the colours and the wall, the "
    "position within its cell) never shows the task. Subgoals are the colours themselves.")

sel = app_state.current()
set_dir = Path(sel.set_dir if sel.env == "ant" else app_state.catalogue("ant")[0].path)
set_dir = short_path(set_dir)  # relative to the working directory when inside it: commands to copy


@st.cache_data(show_spinner=False, max_entries=64)
def episode_start(seed: int) -> tuple[list, list]:
    """Layout and torso start (cell units) of the episode reset with ``seed`` (no physics, no rendering)."""
    batch = A.AntPinpadBatch(1)
    batch.seed(0, seed)
    batch.reset_one(0, task=ANT_HELDOUT_TASK)
    return batch.layout[0].tolist(), batch.uv()[0].tolist()


left, right = st.columns([1, 1.3])
with left:
    st.subheader("The world, from above")
    seed = st.number_input("Layout seed", value=0, step=1, key="ant_overview_seed",
                           help=f"The seed of an episode's reset: layout, start cell and pose (0..{SEED_MAX}).")
    if not 0 <= seed <= SEED_MAX:
        st.error(f"Layout seed must be in 0..{SEED_MAX}, got {seed}.")
    else:
        layout, start = episode_start(int(seed))
        st.plotly_chart(world_figure(np.array(layout), start, size=380), width="content",
                        config={"displayModeBar": False})
        st.caption("Cells in the video's orientation (row 0 at the top). Colours and the wall are drawn on the "
                   "floor only: the physics is the same on every layout. About 11–13 % of random layouts cannot be "
                   "solved (a colour walled in), and are kept, as in the paper.")
with right:
    st.subheader("Tasks")
    st.markdown("**The 16 pretraining tasks** (3 colours each, Table A2)")
    st.markdown("<div style='display:grid;grid-template-columns:repeat(4,max-content);gap:4px 22px'>"
                + "".join(f"<div>{task_chips(t)}</div>" for t in ANT_PRETRAIN_TASKS) + "</div>", unsafe_allow_html=True)
    seen = sorted(pretraining_transitions("ant"))
    held = list(zip(ANT_HELDOUT_TASK, ANT_HELDOUT_TASK[1:]))
    st.markdown("**The held-out task** " + task_chips(ANT_HELDOUT_TASK) + " — its transitions "
                + ", ".join(f"{a}→{b}" for a, b in held) + " never occur in pretraining (which has "
                + ", ".join(f"{a}→{b}" for a, b in seen) + ").", unsafe_allow_html=True)

    st.subheader("The expert")
    st.markdown("A shortest-path planner over the cells gives the direction; a PPO-trained locomotion policy walks "
                "it. Sampling its Gaussian gives dataset D, its mean action D*.")
    report_path = Path(set_dir) / "reports" / "expert.json"
    try:
        from irl_core.checkpoints import CheckpointError, read_json
        if not report_path.exists():
            raise MediaError(f"{report_path} is missing; make it with `{EVAL_COMMAND.format(set=set_dir)}`")
        report = read_json(report_path)
        rows = []
        for mode, label in (("sampled", "sampled (D)"), ("mean", "mean action (D*)")):
            for split, name in (("pretrain", "16 pretraining tasks"), ("pretrain_any", "any pretraining task"),
                                ("heldout", "held-out 0-1-2-3")):
                if split == "pretrain_any" and split not in report[mode]:
                    continue  # a report made before the any-task judging existed
                r = report[mode][split]
                ev = r.get("events", {})
                rows.append({"actions": label, "tasks": f"{name} ({r['episodes']} episodes)",
                             "success": r["success_rate"], "success on solvable layouts": r.get("success_rate_on_solvable"),
                             "mean length": r.get("mean_length_successful"),
                             "ends": ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ev.items() if v)})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                     column_config={"success": st.column_config.NumberColumn(format="%.3f", width="small"),
                                    "success on solvable layouts": st.column_config.NumberColumn(
                                        "solvable", format="%.3f", width="small",
                                        help="success on the layouts where no colour of the task is walled in"),
                                    "mean length": st.column_config.NumberColumn(
                                        "length", format="%.0f", width="small",
                                        help="mean length of the successful episodes, in control steps")})
        st.caption(f"From `{report_path}` (`{EVAL_COMMAND.format(set=set_dir)}`).")
    except (MediaError, CheckpointError) as e:
        st.warning(str(e).splitlines()[0])
    except (KeyError, TypeError) as e:
        st.warning(f"{report_path}: not an expert report (missing {e}); remake it with "
                   f"`{EVAL_COMMAND.format(set=set_dir)}`")
    expert = Path(set_dir) / "expert"
    if not expert.with_suffix(".safetensors").exists():
        st.warning(f"The ant expert checkpoint {expert}.safetensors is missing, so the Rollouts page can only show "
                   f"its shipped videos; make it with `{expert_command(expert)}`")
    st.markdown("Colours: " + " ".join(colour_chip(c) for c in range(A.N_COLOURS)) +
                " &nbsp; Watch the expert on the **Rollouts** page.", unsafe_allow_html=True)


# --- the ant's own base model (issue: the Hawk SSM, its probes, controllers and injection) ----------------------
BASE_COMMAND = "bash scripts/reproduce_ant_base.sh"


def read_report(name: str):
    """``<set>/reports/<name>.json``, or None (with the command that makes it named once below)."""
    from irl_core.checkpoints import CheckpointError, read_json
    path = Path(set_dir) / "reports" / f"{name}.json"
    try:
        return read_json(path) if path.exists() else None
    except CheckpointError:
        return None


st.subheader("The base model")
st.markdown("A Hawk SSM (recurrent, Tables A5/A15) pretrained to predict the expert's actions and next observations "
            "on dataset D. It is not told the task, so alone it is judged on completing **any** pretraining task; "
            "the expert's rate judged the same way is its yardstick.")
evals = {mode: read_report(name) for mode, name in (("sampled", "base_eval"), ("mean action", "base_eval_mean"))}
if not any(evals.values()):
    st.info(f"No base-model reports in `{set_dir}/reports` yet; `{BASE_COMMAND}` trains the base model and "
            "measures everything below.")
else:
    rows, expert_report = [], read_report("expert") or {}  # the same file the expert's table above reads
    for mode, rep in evals.items():
        if not rep:
            continue
        expert = expert_report.get("sampled" if mode == "sampled" else "mean", {})
        for split, name in (("pretrain_any", "any pretraining task"), ("pretrain", "the episode's drawn task"),
                            ("heldout", "held-out 0-1-2-3")):
            r = rep.get(split)
            if r:
                rows.append({"actions": mode, "judged on": f"{name} ({r['episodes']} episodes)",
                             "success": r["success_rate"],
                             "expert": expert.get(split, {}).get("success_rate"),
                             "ends": ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.get("events", {}).items() if v)})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"success": st.column_config.NumberColumn(format="%.3f"),
                                "expert": st.column_config.NumberColumn("expert, judged alike", format="%.3f")})
    probes = read_report("base_probes")
    if probes:
        layers = [f"{'embedding' if l == 0 else f'layer {l}'}" for l in range(len(probes["accuracy"]))]
        st.markdown(f"**What it knows, layer by layer**: a linear probe of the colour sought on held-out D* steps "
                    f"(mid-depth, layer {probes['mid_layer']}: {probes['accuracy'][probes['mid_layer']]:.3f} against "
                    f"{probes['control'][probes['mid_layer']]:.3f} for shuffled labels)"
                    + ("; and a linear read-out of where it lies (R² of its offset from the ant; the embedding's "
                       "is what the observation alone gives)." if "location" in probes else "."))
        table = {"layer": layers, "probe accuracy": probes["accuracy"], "shuffled control": probes["control"]}
        if "location" in probes:  # where the colour sought lies: R² of its offset (the embedding's is the baseline)
            table["where it lies (R²)"] = probes["location"]["r2"]
        st.dataframe(pd.DataFrame(table), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in ("probe accuracy", "shuffled control", "where it lies (R²)")})
    ctrl = read_report("gt_controllers")
    if ctrl:
        c, b = ctrl["controlled"], ctrl["base_alone"]
        st.markdown(f"**Steering it**: ground-truth controllers at layer {ctrl.get('layer', 'L/2')} switched on the "
                    f"task's progress complete the held-out task in **{c['success_rate']:.1%}** of {c['episodes']} "
                    f"episodes, against {b['success_rate']:.1%} for the base model alone.")
    inject = [r for r in (read_report(f"inject_colour{g}") for g in range(A.N_COLOURS)) if r]
    if inject:
        st.markdown(f"**Injection** (Fig. A4): a \"go to colour g\" controller switched on at step {inject[0]['t0']}; "
                    "how often g is the first colour entered after it.")
        st.dataframe(pd.DataFrame([{"colour": f"{r['colour']}", "base alone": r["base_alone"]["reached_first"],
                                    "injected": r["injected"]["reached_first"],
                                    "episodes": r["injected"]["episodes"]} for r in inject]), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("base alone", "injected")})
    hand = read_report("handover")
    if hand:
        st.markdown(f"**Shown the way** (the handover test): the expert walks the first {hand['t0']} steps of each "
                    "episode while the base model reads along, then the base model walks on; the expert walking on "
                    "is the yardstick. A target *ahead* needs no turn; a target *to a side* (over 60° off the "
                    "ant's heading) does.")
        rows = [{"walks on": arm, "target": where, "episodes": part["episodes"],
                 "reaches the target first": part["reached_target"],
                 "reaches one other colour first": part.get("reached_other"), "moves toward it": part["follows_plan"],
                 "keeps its heading": part["keeps_going"]}
                for arm, name in (("base model", "handover"), ("expert", "expert"))
                for where, part in (("ahead", hand[name]["straight"]), ("to a side", hand[name]["turn"]))]
        st.dataframe(pd.DataFrame(rows), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.2f")
                                    for c in ("reaches the target first", "reaches one other colour first",
                                              "moves toward it", "keeps its heading")})
    st.caption(f"From `{set_dir}/reports/base_*.json`, `gt_controllers.json`, `inject_colour*.json`, "
               f"`handover.json` (`{BASE_COMMAND}`). Watch it on the **Rollouts** page, with or without an "
               "injected controller.")
