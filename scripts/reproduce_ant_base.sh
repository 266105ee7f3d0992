#!/usr/bin/env bash
# Rebuild the ant's own base model and what is measured on it, into checkpoints/ant: the datasets D and D*, the Hawk
# SSM base model (cpu preset), its closed-loop success alone, its per-layer probes (the colour sought and where it
# lies), the ground-truth controllers at L/2 with their held-out success, the injection of a "go to colour g"
# controller from step 30 (Fig. A4) for every colour, and the handover test (the expert walks 40 steps, then the
# base model). Every stage is resumable: run the script again and finished stages are not redone (datasets and
# reports that exist are kept; the pretraining and controller runs resume from their checkpoints).
#
#   bash scripts/reproduce_ant_base.sh
#   STEPS=3000 bash scripts/reproduce_ant_base.sh   # a shorter pretraining (the cpu preset's own 3,000 steps)
#
# Measured wall-clock per stage on this project's 2-core CPU machine: BENCHMARKS.md ("Ant base model").
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
SET=${SET:-checkpoints/ant}
DATA=${DATA:-runs/ant/data}
STEPS=${STEPS:-5000}
RUN=runs/ant_pretrain/cpu-seed0
stage() { echo "[$(date +%H:%M:%S)] $*"; }
mkdir -p "$DATA" "$SET/reports"

stage "1/8 D: 20,000 successful expert episodes, sampled actions (two seeds at once, one per core, then merged)"
if [ ! -f "$DATA/D.npz" ]; then
  python -m irl_core ant-data --episodes 10000 --seed 0 --quiet --out "$DATA/D_seed0a.npz" & a=$!
  python -m irl_core ant-data --episodes 10000 --seed 2 --quiet --out "$DATA/D_seed2b.npz"
  wait "$a"
  python -m irl_core ant-data-merge "$DATA/D_seed0a.npz" "$DATA/D_seed2b.npz" --out "$DATA/D.npz"
fi

stage "2/8 D*: 2,000 successful expert episodes, mean actions (probes and controllers)"
[ -f "$DATA/Dstar_seed1.npz" ] || python -m irl_core ant-data --episodes 2000 --mean-action --seed 1 --quiet \
  --out "$DATA/Dstar_seed1.npz"

stage "3/8 the base model: cpu preset, $STEPS steps of 32 episodes, one thread (resumable)"
python -m irl_core ant-pretrain --data "$DATA/D.npz" --preset cpu --steps "$STEPS" --threads 1 --quiet \
  --run-dir "$RUN" --export "$SET/base"

stage "4/8 the base model alone in MuJoCo: 200 episodes each on the pretraining tasks and the held-out task"
python -m irl_core ant-eval --policy base --checkpoint "$SET/base" --episodes 200 --out "$SET/reports/base_eval.json" >/dev/null
python -m irl_core ant-eval --policy base --mean-action --checkpoint "$SET/base" --episodes 200 \
  --out "$SET/reports/base_eval_mean.json" >/dev/null

stage "5/8 per-layer probes on D*: the colour sought, and where it lies"
python -m irl_core ant-probes --checkpoint "$SET/base" --data "$DATA/Dstar_seed1.npz" --out "$SET/reports/base_probes.json"

stage "6/8 ground-truth controllers at L/2 (cpu preset) and their held-out success"
python -m irl_core ant-gt-controllers --base "$SET/base" --data "$DATA/Dstar_seed1.npz" --preset cpu --threads 1 --quiet \
  --run-dir runs/ant_gt_controllers/cpu-seed0 --export "$SET/gt_controllers" --report "$SET/reports/gt_controllers.json"

stage "7/8 injection of a 'go to colour g' controller from step 30, 200 episodes, every colour"
for c in 0 1 2 3; do
  python -m irl_core ant-inject --base "$SET/base" --controllers "$SET/gt_controllers" --colour "$c" --t0 30 \
    --episodes 200 --out "$SET/reports/inject_colour$c.json" >/dev/null
done
stage "8/8 the handover test: the expert walks the first 40 steps, then the base model (200 episodes)"
python -m irl_core ant-handover --base "$SET/base" --t0 40 --episodes 200 --out "$SET/reports/handover.json" >/dev/null
stage "done"
