"""Rate–distortion (Fig. 7): metacontrollers on a frozen base model vs co-trained with it, across the KL weight α.

Reads the sweep table ``<set>/reports/discovery.json`` (``python -m irl_core sweep --table …``) through
irl_core.reports; the table keeps a few example episodes' β per point, so no model is loaded here.
"""
import pandas as pd
import streamlit as st

from irl_core import app_state
from irl_core.checkpoints import CheckpointError
from irl_core.plots import rate_cap, rate_distortion_figure, subgoal_legend_html, switching_timeline
from irl_core.reports import SUBGOAL_ALIGNED_F1, alignment_by_alpha, contrast_note, load_sweep, report_path

VARIANT_TITLES = {"frozen": "Frozen base model (the paper's method)", "cotrained": "Co-trained with the base model",
                  "beta1": "β ≡ 1 (no temporal integration)"}
POINT_KEY = "rd_point"

sel = app_state.current_grid()
st.title("Rate–distortion: why the base model must be frozen")
st.markdown(
    "Each point is one metacontroller trained with a KL weight **α** (colour): it trades **distortion** (how "
    "badly the controlled model predicts the expert's actions) against **rate** (how much information its "
    "latent codes carry). On a *frozen* base model the paper finds a gap in the curve, and a wide range of α "
    f"lands on solutions whose switches line up with the subgoals (★, here: alignment F1 ≥ {SUBGOAL_ALIGNED_F1}). "
    "*Co-trained* with the base model, the paper finds most α collapse to a single switch at the start of the "
    "episode. "
    "Select a point (click it, or use the list below) to see its switching on example episodes.")



@st.cache_data(show_spinner=False)
def sweep(set_dir: str, mtime: float) -> dict:
    """The sweep table of a set; ``mtime`` makes a rewritten table be read again."""
    return load_sweep(set_dir)


path = report_path("discovery", sel.set_dir)
try:
    table = sweep(str(sel.set_dir), path.stat().st_mtime if path.exists() else 0.0)
except CheckpointError as e:
    st.warning(str(e))
    st.stop()

rows = [dict(r, index=k) for k, r in enumerate(table["rows"])]
if table["invalid_rows"]:
    st.warning(f"{table['invalid_rows']} row(s) of {path} lack a variant or finite α, seed, rate or distortion "
               "and are left out.")
if not rows:
    st.warning(f"{path} has no points yet; run the sweep (finished points are kept as it goes).")
    st.stop()
overrides = table.get("overrides") if isinstance(table.get("overrides"), dict) else {}
knobs = ", ".join(f"{k} {v}" for k, v in overrides.items() if v not in (None, False))
st.caption(f"{len(rows)} runs from `{path.name}` · preset `{table.get('preset', '?')}` · base "
           f"`{table.get('base_checkpoint', '?')}` · knobs: {knobs or 'none (the paper objective and data)'}")


def alignment_cell(a: dict, v: str) -> str:
    """One variant's cell of the per-α table: aligned seeds of all, and the median F1."""
    if not a[f"{v}_seeds"]:
        return "—"
    f1 = a[f"{v}_median_f1"]
    return f"{a[f'{v}_aligned']} of {a[f'{v}_seeds']} aligned · F1 {'n/a' if f1 is None else format(f1, '.2f')}"


note = contrast_note(rows)
if note:
    st.markdown(note)
    with st.expander("Subgoal-aligned seeds per α (the contrast α by α)"):
        st.dataframe(pd.DataFrame([{"α": f"{a['alpha']:g}",
                                    "frozen: aligned · median F1": alignment_cell(a, "frozen"),
                                    "co-trained: aligned · median F1": alignment_cell(a, "cotrained")}
                                   for a in alignment_by_alpha(rows)]),
                     hide_index=True, width="stretch")


def label(k: int) -> str:
    r = rows[k]
    f1 = f"F1 {r['f1']:.2f}" if r["f1"] is not None else "F1 n/a"
    return f"{r['variant']} · α={r['alpha']:g} · seed {r['seed']} · {f1}{' ★' if r['aligned'] else ''}"


# a new chart selection (kept by Streamlit under the chart's key) becomes the selected point
variants = ["frozen", "cotrained"] + sorted({r["variant"] for r in rows} - {"frozen", "cotrained"})
for v in variants:
    try:
        points = list(st.session_state[f"rd_chart_{v}"]["selection"]["points"])
    except (KeyError, TypeError):
        points = []
    picked = [p.get("customdata") for p in points if isinstance(p, dict) and p.get("customdata") is not None]
    signature = repr(picked)
    if picked and st.session_state.get(f"_rd_seen_{v}") != signature:
        data = picked[0]
        k = int(data[0] if isinstance(data, (list, tuple)) else data)
        if 0 <= k < len(rows):
            st.session_state[POINT_KEY] = k
    st.session_state[f"_rd_seen_{v}"] = signature
if st.session_state.get(POINT_KEY) not in range(len(rows)):
    # default: a frozen point, subgoal-aligned if any, preferably one whose switching export is shipped, at the α
    # where most frozen seeds align (the typical point, not an outlier seed), lowest α and seed first
    frozen = [r for r in rows if r["variant"] == "frozen"] or rows
    aligned_at = {a: sum(r["aligned"] for r in frozen if r["alpha"] == a) for a in {r["alpha"] for r in frozen}}
    st.session_state[POINT_KEY] = max(frozen, key=lambda r: (r["aligned"], r["switching"] is not None,
                                                             aligned_at[r["alpha"]], -r["alpha"], -r["seed"]))["index"]
chosen = st.session_state[POINT_KEY]


def span(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = 0.12 * (hi - lo) if hi > lo else max(0.05 * abs(hi), 0.05)
    return lo - pad, hi + pad


cap = rate_cap([r["rate"] for r in rows])
x_range = span([r["distortion"] for r in rows])
y_range = span([r["rate"] if cap is None else min(r["rate"], cap) for r in rows])
alphas = [r["alpha"] for r in rows]
for start in range(0, len(variants), 2):
    cols = st.columns(2)
    for col, v in zip(cols, variants[start:start + 2]):
        part = [r for r in rows if r["variant"] == v]
        with col:
            if not part:
                st.markdown(f"**{VARIANT_TITLES.get(v, v)}**")
                st.info(f"No {v} points in this table; add them with `python -m irl_core sweep --variants {v} "
                        f"--table {path} …` (the same --out-dir keeps the finished points).")
                continue
            fig = rate_distortion_figure(part, VARIANT_TITLES.get(v, v), alphas, x_range, y_range,
                                         selected=chosen, cap=cap)
            st.plotly_chart(fig, width="stretch", key=f"rd_chart_{v}", on_select="rerun", selection_mode="points")

st.selectbox("Point", range(len(rows)), format_func=label, key=POINT_KEY,
             help="The same as clicking a point in a chart above.")
r = rows[chosen]


def num(x, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


st.subheader(f"{VARIANT_TITLES.get(r['variant'], r['variant'])}, α = {r['alpha']:g}, seed {r['seed']}")
top, bottom = st.columns(4), st.columns(4)
top[0].metric("Distortion (NLL/step)", num(r["distortion"]))
top[1].metric("Rate (KL/step)", num(r["rate"]))
top[2].metric("Switches / episode", num(r["switches"], ".2f"), help="steps with β > 0.5, the first one included")
top[3].metric("Changes / episode", num(r["true_changes"], ".2f"), help="true subgoal changes at t ≥ 1")
bottom[0].metric("F1 (±1 step)", num(r["f1"], ".2f"))
bottom[1].metric("Precision", num(r["precision"], ".2f"))
bottom[2].metric("Recall", num(r["recall"], ".2f"))
bottom[3].metric("Quasi-binary", "n/a" if r["binary_fraction"] is None else f"{r['binary_fraction']:.0%}",
                 help="fraction of steps with β < 0.1 or β > 0.9")

if r["switching"]:
    if st.button("Every held-out episode of this point, step by step (Switching page)", key="rd_open_switching"):
        st.session_state[app_state.SWITCHING_SOURCE_KEY] = r["switching"]
        st.switch_page("app_pages/grid/switching.py")
else:
    st.caption(f"No switching export of this point is shipped beside the table: it was tabulated from a run not in "
               f"`{r.get('run_dir') or 'the sweep folder'}` here; rerunning its sweep point remakes it.")

ex = r["examples"]
if ex is None:
    st.info("This table keeps no example episodes for this point (it was written by an older version); rerun the "
            "same sweep command: finished points are not retrained, only their examples are computed.")
else:
    ties = "a fixed tie-break" if ex["ties"] == "first" else "random tie-breaks, the paper's"
    st.markdown(f"**Switching on {len(ex['length'])} held-out episodes** (the same layouts and tasks for every "
                f"point; the expert's moves with {ties})")
    st.markdown(subgoal_legend_html(sel.world.subgoal), unsafe_allow_html=True)
    cols = st.columns(2)
    for j, (b, g, n) in enumerate(zip(ex["beta"], ex["subgoal"], ex["length"])):
        cols[j % 2].plotly_chart(switching_timeline(b, g, n, height=220, legend=False, title=f"episode {j}",
                                                    subgoals=sel.world.subgoal),
                                 width="stretch", key=f"rd_example_{j}")

with st.expander("All points"):
    st.dataframe(pd.DataFrame([{k: x[k] for k in ("variant", "alpha", "seed", "distortion", "rate", "switches",
                                                   "true_changes", "precision", "recall", "f1", "binary_fraction",
                                                   "aligned")} for x in rows]),
                 hide_index=True, width="stretch")
