"""The "5×5 world" section of BENCHMARKS.md, from the reports of a grid5 checkpoint set and the runs that made them.

    python scripts/report_grid5.py [--set checkpoints/grid5] [--linear checkpoints/grid5-linear] [--runs runs]

Reads only what ``bash scripts/reproduce_grid5.sh`` wrote (reports under the sets; status and metrics of the runs
under ``runs/`` for the wall-clock of each stage) and prints Markdown. A report that is missing is named with the
stage that makes it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irl_core.machine import describe_machine  # noqa: E402
from irl_core.reports import alignment_by_alpha, load_sweep  # noqa: E402


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def run_minutes(run: Path) -> float | None:
    """Wall-clock of a run from its status (started → finished), in minutes."""
    st = load(run / "status.json")
    if not st or "finished" not in st or "started" not in st:
        return None
    return (st["finished"] - st["started"]) / 60


def train_minutes(run: Path) -> float | None:
    """Training wall-clock of a run from its logged rows (first to last training row, scaled to the whole run),
    in minutes; unlike the status it does not count later re-evaluations of the finished run."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(l) for l in path.read_text().splitlines() if "losses/action_nll" in l]
    if len(rows) < 2:
        return None
    a, b = rows[0], rows[-1]
    return (b["time"] - a["time"]) * b["step"] / max(1, b["step"] - a["step"]) / 60


def fmt(x, f=".3f") -> str:
    return "–" if x is None else format(x, f)


def agreement(set_dir: Path, linear: Path) -> str:
    """Whether the replayed and the simulator's success agree in every controller evaluation the reports hold."""
    rows = []
    for path in [*set_dir.glob("reports/controllers*.json"), *linear.glob("reports/controllers*.json")]:
        r = load(path)
        rows += r.get("rows", [r])
    rows = [r for r in rows if "success_rate_simulator" in r]
    same = sum(r["replay_consistent"] and abs(r["success_rate"] - r["success_rate_simulator"]) < 1e-6 for r in rows)
    return f"replay and the batched simulator agree in {same} of {len(rows)} controller evaluations"


def section(set_dir: Path, linear: Path, runs: Path) -> list[str]:
    out = [f"## The 5×5 world (`grid5`) (measured {datetime.date.today()}; {describe_machine()})", "",
           "The laptop world: G = 5, 4 colours, 1 wall, T = 50, subgoal = the colour itself, the 16 tasks of Table A2, "
           "held-out 0-1-2-3. Everything below is rebuilt by `bash scripts/reproduce_grid5.sh` and tabulated by "
           "`python scripts/report_grid5.py`. Success on the held-out task is judged by replaying the exported "
           f"rollouts in the gymnasium env (`irl_core.data.replay`); {agreement(set_dir, linear)}.", ""]
    curve = load(set_dir / "reports" / "pretrain_curve.json")
    pre = runs / "pretrain" / "grid5-cpu-seed0"
    if curve:
        m = curve["meta"]
        evals = [r for r in curve["curve"] if "eval/action_acc" in r]
        out += ["### Base model", "",
                f"`{m['command']}`: {m['steps']:,} steps, {m['episodes']:,} episodes, "
                f"{fmt(train_minutes(pre), '.0f')} min (bf16 autocast on this CPU, `--precision auto`; one thread, the "
                "other core busy with other work).", "",
                "| episodes | held-out D* action accuracy | NLL |", "|---|---|---|"]
        out += [f"| {r['charts/episodes']:,} | {r['eval/action_acc']:.3f} | {r['eval/action_nll']:.3f} |"
                for r in evals[1::4] + evals[-1:]]
    probes = load(set_dir / "reports" / "probes.json")
    if probes:
        sp, aa, sm = probes["subgoal_probe"], probes["action_accuracy"], probes["sampled"]
        out += ["", f"Probes and diagnostics (`python -m irl_core probes --checkpoint {set_dir}/base --episodes 2000`, "
                f"{probes['seconds'] / 60:.0f} min):", "",
                "| layer | " + " | ".join(map(str, probes["layers"])) + " |", "|---" * (len(probes["layers"]) + 1) + "|",
                "| subgoal probe | " + " | ".join(f"{a:.3f}" for a in sp["accuracy"]) + " |",
                "| shuffled control | " + " | ".join(f"{a:.3f}" for a in sp["control"]) + " |",
                "| last-colour probe | " + " | ".join(f"{a:.3f}" for a in probes["last_colour_probe"]["accuracy"]) + " |",
                "", "| measure | value |", "|---|---|",
                f"| per-step action accuracy (best task-blind predictor; expert that knows the task) | "
                f"{aa['model']:.3f} ({aa['bayes_task_blind']:.3f}; {aa['expert_knowing_task']:.3f}) |",
                f"| sampled success on the pretraining tasks (a perfect task-blind agent: 1/16 = 0.0625) | "
                f"{sm['success_pretraining_tasks']:.3f} of {sm['episodes']} |",
                f"| sampled success on the held-out task, base model alone | {sm['success_heldout_task']:.3f} of {sm['episodes']} |",
                "| how sampled episodes end: " + ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in sm["ends"].items())
                + " | |"]
    out += ["", "### Ground-truth controllers", ""]
    for name, what, run in (("controllers", "at L/2 = 3 (shipped `gt_controllers`)", "gt-l3-2400"),
                            ("controllers_layer0", "at layer 0, the embedding (shipped `gt_controllers_layer0`)", "gt-l0-2400")):
        r = load(set_dir / "reports" / f"{name}.json")
        if r:
            out.append(f"- {what}: held-out success **{r['success_rate']:.3f}** of {r['episodes']} "
                       f"(mean {r['mean_colours_completed']:.2f} of 4 colours; replay consistent: {r['replay_consistent']}); "
                       f"{r['config']['steps']} steps in {fmt(train_minutes(runs / 'grid5' / run), '.0f')} min; `{r['command']}`")
    sweep = load(set_dir / "reports" / "controllers_layers.json")
    if sweep:
        by: dict[int, list[float]] = {}
        for row in sweep["rows"]:
            by.setdefault(row["layer"], []).append(row["success_rate"])
        out += ["", f"Layer sweep (Fig. 4), `{sweep['command']}`:", "",
                "| controlled layer | " + " | ".join(map(str, sorted(by))) + " |", "|---" * (len(by) + 1) + "|",
                "| median success | " + " | ".join(f"{statistics.median(by[l]):.3f}" for l in sorted(by)) + " |",
                "| per seed | " + " | ".join(" / ".join(f"{v:.2f}" for v in by[l]) for l in sorted(by)) + " |"]
        times = [train_minutes(p) for p in (runs / "grid5" / "layer-sweep").glob("layer*_seed*")]
        times = [t for t in times if t is not None]
        if times:
            out.append(f"\nOne controller run (800 steps × 128 episodes, one thread, both cores busy): median "
                       f"{statistics.median(times):.1f} min over {len(times)} runs.")
    snaps = load(set_dir / "reports" / "controllers_snapshots.json")
    if snaps:
        out += ["", f"Over training (Fig. A2), `{snaps['command']}`:", "", "| base-model episodes | layer | success |",
                "|---|---|---|"]
        out += [f"| {r['base_episodes']:,} | {r['layer']} | {r['success_rate']:.3f} |" for r in snaps["rows"]]
    reading = load(set_dir / "reports" / "control_reading.json")
    if reading:
        c = reading["clean"]
        out += ["", f"What a controller rewrites (`{reading['command']}`; probes read layer {reading['read_layer']}; "
                "the injected subgoal is another one than the true one):", "",
                "| | ‖Ue‖/‖e‖ | subgoal probe reads the injected subgoal | layout reading | acts toward injected colour | "
                "acts toward true colour |", "|---|---|---|---|---|---|",
                f"| no controller | – | (true: {c['subgoal_probe']:.3f}) | {c['layout_accuracy']:.3f} | "
                f"{c['acts_toward_injected']:.3f} | {c['acts_toward_true']:.3f} |"]
        out += [f"| layer {r['layer']} | {r['relative_norm']:.2f} | {r['subgoal_reads_injected']:.3f} | "
                f"{r['layout_accuracy']:.3f} | {r['acts_toward_injected']:.3f} | {r['acts_toward_true']:.3f} |"
                for r in reading["rows"]]
        if "layout_probe_by_layer" in reading:
            out += ["", "Where each colour lies (its first shortest-path move), read linearly from the uncontrolled "
                    "stream, by layer: " + ", ".join(f"{l}: {a:.3f}" for l, a in enumerate(reading["layout_probe_by_layer"]))]
    lin_probes, lin_sweep = load(linear / "reports" / "probes.json"), load(linear / "reports" / "controllers_layers.json")
    if lin_probes or lin_sweep:
        out += ["", "### The contrast: the linear observation encoder (`checkpoints/grid5-linear`)", ""]
        if lin_probes:
            out.append(f"- action accuracy {lin_probes['action_accuracy']['model']:.3f}; subgoal probe by layer "
                       + ", ".join(f"{a:.3f}" for a in lin_probes["subgoal_probe"]["accuracy"])
                       + f" (control ~{statistics.mean(lin_probes['subgoal_probe']['control']):.2f}); sampled success on "
                       f"pretraining tasks {lin_probes['sampled']['success_pretraining_tasks']:.3f}")
        lin_reading = load(linear / "reports" / "control_reading.json")
        if lin_reading:
            out.append("- where each colour lies, read linearly by layer: " + ", ".join(
                f"{l}: {a:.3f}" for l, a in enumerate(lin_reading["layout_probe_by_layer"])))
        if lin_sweep:
            out.append("- controllers: " + ", ".join(f"layer {r['layer']}: {r['success_rate']:.3f}"
                                                     for r in lin_sweep["rows"]) + f" (`{lin_sweep['command']}`)")
    return out


COMMON_KNOBS = {"decoder_init_std": 0.1, "switch_bias": 1.0, "layer": 3}  # what every lever run shares (in the text)


def discovery_section(set_dir: Path, runs: Path) -> list[str]:
    """BENCHMARKS.md's "Discovery on the 5×5 world" part: the lever runs, the shipped metacontroller, the probe of
    internal RL on it (stages 10–11 of scripts/reproduce_grid5.sh)."""
    out = ["## Discovery on the 5×5 world (`checkpoints/grid5`)", "",
           f"{datetime.date.today().isoformat()}; {describe_machine()}. Written by "
           "`python scripts/report_grid5.py --part discovery` from the reports of stages 10–11 of "
           "`bash scripts/reproduce_grid5.sh`.", ""]
    lev = load(set_dir / "reports" / "discovery_levers.json")
    if not lev:
        return out + ["No `reports/discovery_levers.json`: run stage 10 of `scripts/reproduce_grid5.sh`."]
    out += ["Metacontrollers on the frozen base model at L/2 (seed 0, batch 128, lr 1e-3, decoder init std 0.1, β-head "
            "bias 1 and layer 3 = L/2 unless the row says otherwise, α ramped linearly from 0 over the warm-up), "
            "evaluated on 512 held-out D* episodes at the step "
            f"shown; codes analysed at the last step of every segment; centroid steering on {lev['layouts']} layouts "
            f"per subgoal. `{lev['command']}`", "",
            "| run | α | other knobs | step | min | F1 | quasi-binary | switches / episode | distortion | rate | code dims used | "
            "subgoal from code (chance) | first action from code (chance) | centroid code → its colour first |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in lev["runs"]:
        last, c = r["curve"][-1], r["codes"]
        kn = ", ".join(f"{k}={v}" for k, v in r["knobs"].items() if k != "alpha" and COMMON_KNOBS.get(k) != v)
        steer = r.get("steering", {}).get("first_colour", {})
        out.append(f"| {r['run']} | {r['alpha']:g} | {kn} | {r['step']} | {fmt(train_minutes(runs / 'grid5' / 'levers' / r['run']), '.0f')} | "
                   f"{last['f1']:.3f} | {last['binary_fraction']:.3f} | {last['switches']:.2f} | {last['action_nll']:.3f} | "
                   f"{last['kl']:.3f} | {c['dims_used']} | {c['subgoal_accuracy']:.2f} ({c['subgoal_chance']:.2f}) | "
                   f"{c['first_action_accuracy']:.2f} ({c['first_action_chance']:.2f}) | "
                   + " / ".join(f"{v:.2f}" for v in steer.values()) + " |")
    lm = load(set_dir / "reports" / "latent_map.json")
    if lm:
        out += ["", f"Shipped metacontroller (`metacontroller`, run e13), latent map on {lm['episodes']} held-out episodes: "
                f"{lm['segments_per_episode']:.2f} segments per episode, majority-label purity {lm['mean_purity']:.3f}, "
                f"PCA explains {lm['explained_variance_ratio'][0]:.2f} + {lm['explained_variance_ratio'][1]:.2f} of the "
                f"code variance, nearest-centroid subgoal accuracy {lm['centroid_accuracy']:.3f}."]
        if "steering" in lm:
            out.append(f"Each subgoal's centroid code, injected from t = 0 on {lm['steering']['layouts']} held-out layouts "
                       "(greedy): the agent enters that subgoal's colour first in "
                       + ", ".join(f"{g}: {v:.2f}" for g, v in lm["steering"]["first_colour"].items())
                       + " of the layouts (chance ≈ 0.25).")
    rl = load(set_dir / "reports" / "internal_rl_probe.json")
    if rl:
        for method, m in rl["methods"].items():
            g = m.get("eval_greedy", {})
            out.append(f"Internal RL on it (`{method}`, {m.get('runs')} seed, held-out 0-1-2-3, cpu preset, "
                       f"{m['episodes']:,} episodes): held-out greedy success at every evaluation "
                       + " → ".join(f"{v:.3f}" for v in (g.get("median") or [])) + f". `{rl['meta']['command']}`")
    return out


def sweep_section(set_dir: Path) -> list[str]:
    """The α sweep's Fig. 7 contrast α by α, from the shipped table ``reports/discovery.json``: per α and variant,
    the subgoal-aligned seeds (F1 ≥ 0.9) of those run and the median switch F1, rate and distortion."""
    rows = load_sweep(set_dir)["rows"]
    out = [f"Per α ({len(rows)} points of `{set_dir}/reports/discovery.json`; `python scripts/report_grid5.py --part "
           "sweep`): subgoal-aligned seeds (★, F1 ≥ 0.9) of those run, and the median F1 / rate / distortion over "
           "them.", "", "| α | frozen: ★ | F1 | rate | distortion | co-trained: ★ | F1 | rate | distortion |",
           "|---|---|---|---|---|---|---|---|---|"]

    for a in alignment_by_alpha(rows):
        cells = []
        for v in ("frozen", "cotrained"):
            n = a[f"{v}_seeds"]
            cells += [f"{a[f'{v}_aligned']} of {n}" if n else "–"]
            cells += [fmt(a[f"{v}_median_{key}"]) for key in ("f1", "rate", "distortion")]
        out.append(f"| {a['alpha']:g} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="checkpoints/grid5")
    ap.add_argument("--linear", default="checkpoints/grid5-linear")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--part", choices=("base", "discovery", "sweep"), default="base",
                    help="base: the base model and controllers (BENCHMARKS.md between <!-- grid5 --> markers); "
                         "discovery: the metacontroller (between <!-- grid5-discovery --> markers); "
                         "sweep: the α sweep's table per α")
    args = ap.parse_args()
    make = {"base": section, "discovery": lambda s, l, r: discovery_section(s, r),
            "sweep": lambda s, l, r: sweep_section(s)}[args.part]
    print("\n".join(make(Path(args.set), Path(args.linear), Path(args.runs))))


if __name__ == "__main__":
    main()
