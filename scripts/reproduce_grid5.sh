#!/usr/bin/env bash
# Rebuild the laptop world's checkpoint set checkpoints/grid5 (and its linear-encoder contrast, checkpoints/grid5-linear)
# from nothing: base model, probes, probes over training, ground-truth controllers at L/2 and at the embedding, the
# layer sweep (Fig. 4, 3 seeds), controllability over training snapshots, and what a controller does to the model's
# reading of the layout; then discovery (stages 10–11): the metacontroller runs that measured each optimisation lever,
# the shipped metacontroller, its switching export and its latent map; then the α sweep (stage 12) and Fig. 8 (stage 13). Every stage is resumable: run the script again and finished stages are not redone (runs
# under runs/ keep their checkpoints; the probes and probe-curve stages are recomputed, a few minutes).
#
#   bash scripts/reproduce_grid5.sh            # everything, one stage after another, one thread
#   THREADS=2 bash scripts/reproduce_grid5.sh  # torch threads per stage
#
# Measured wall-clock per stage on this project's 2-core CPU machine: BENCHMARKS.md ("The 5×5 world").
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${SET:-checkpoints/grid5}
LIN=${LIN:-checkpoints/grid5-linear}
T=${THREADS:-1}
PRE=runs/pretrain/grid5-cpu-seed0
SWEEP=runs/grid5/layer-sweep
stage() { echo "[$(date +%H:%M:%S)] $*"; }

stage "1/13 base model (cpu preset, 12,500 steps = 1.6M episodes, snapshots every 1,000 steps)"
python -m irl_core pretrain --preset cpu --world grid5 --steps 12500 --snapshot-every 1000 --threads "$T" --seed 0 \
  --run-dir "$PRE" --export "$SET/base"

stage "2/13 probes and diagnostics of the base model"
python -m irl_core probes --checkpoint "$SET/base" --episodes 2000

stage "3/13 ground-truth controllers at L/2 (shipped) and at the embedding, layer 0: 2,400 steps, 3× the cpu preset"
# (the cpu preset's 800 steps gave 0.53 at L/2; 2,400 reach the paper's magnitude: BENCHMARKS.md)
python -m irl_core gt-controllers --base "$SET/base" --preset cpu --steps 2400 --episodes 1000 --threads "$T" --quiet \
  --run-dir runs/grid5/gt-l3-2400 --export "$SET/gt_controllers" --report "$SET/reports/controllers.json"
python -m irl_core gt-controllers --base "$SET/base" --preset cpu --layer 0 --steps 2400 --episodes 1000 --threads "$T" \
  --quiet --run-dir runs/grid5/gt-l0-2400 --export "$SET/gt_controllers_layer0" --report "$SET/reports/controllers_layer0.json"

stage "4/13 what the two controllers do to the model's reading of its subgoal and of the layout"
python -m irl_core control-reading --base "$SET/base" --controllers "$SET/gt_controllers_layer0" "$SET/gt_controllers" \
  --episodes 600 --out "$SET/reports/control_reading.json"

stage "5/13 layer sweep (Fig. 4): controllers at every layer, 3 seeds, the cpu preset (800 steps each)"
python -m irl_core layer-sweep --base "$SET/base" --preset cpu --seeds 0,1,2 --episodes 1000 --threads "$T" --quiet \
  --run-dir "$SWEEP" --out "$SET/reports/controllers_layers.json"

stage "6/13 controllability over training: layers 0 and 3 on the 128k, 384k and 768k-episode snapshots"
python -m irl_core layer-sweep --base "$PRE/checkpoints/step1000" --snapshots "$PRE/checkpoints/step3000" \
  "$PRE/checkpoints/step6000" --preset cpu --layers 0,3 --seeds 0 --episodes 1000 --threads "$T" --quiet \
  --run-dir runs/grid5/snapshot-sweep --out "$SET/reports/controllers_snapshots.json"

stage "7/13 probes over training (Fig. A1): the 128k, 384k, 768k and 1.15M-episode snapshots and the final model"
python -m irl_core probe-curve "$PRE/checkpoints/step1000" "$PRE/checkpoints/step3000" "$PRE/checkpoints/step6000" \
  "$PRE/checkpoints/step9000" "$SET/base" --episodes 600 --sample-episodes 300 --out "$SET/reports/probes_curve.json"

stage "8/13 the contrast: the same base model with the linear observation encoder"
python -m irl_core pretrain --preset cpu --world grid5 --encoder linear --steps 12500 --threads "$T" --seed 0 \
  --run-dir runs/pretrain/grid5-linear-seed0 --export "$LIN/base"
python -m irl_core probes --checkpoint "$LIN/base" --episodes 2000

stage "9/13 its controllers at L/2 and at layer 0"
python -m irl_core layer-sweep --base "$LIN/base" --preset cpu --layers 0,3 --seeds 0 --episodes 1000 --threads "$T" \
  --quiet --run-dir runs/grid5/linear-sweep --out "$LIN/reports/controllers_layers.json"
python -m irl_core control-reading --base "$LIN/base" --episodes 600 --out "$LIN/reports/control_reading.json"
stage "10/13 discovery levers: metacontrollers on the frozen base at L/2 (seed 0; ~9 min per 1,500 steps, 1 thread)"
LEV=runs/grid5/levers
COMMON=(--base "$SET/base" --preset cpu --decoder-init-std 0.1 --switch-bias 1.0 --seed 0 --threads "$T" --quiet)
lever() {  # name, then the run's own flags
  local name=$1; shift
  [ -f "$LEV/$name/checkpoints/last.json" ] && [ -f "$LEV/$name/result.json" ] && return 0
  python -m irl_core discover "${COMMON[@]}" "$@" --run-dir "$LEV/$name"
}
lever e1 --alpha 0.1 --alpha-warmup 1000 --steps 1500                                   # pooled s, the paper's D*
lever e2 --alpha 0.1 --alpha-warmup 1000 --steps 1500 --gumbel                          # + Gumbel-Sigmoid β
lever e3 --alpha 0.3 --alpha-warmup 1000 --steps 1500                                   # a higher α
lever e9 --alpha 0.5 --alpha-warmup 1000 --steps 1500 --emb-readout per_step            # s_t per step
lever e11 --alpha 0.3 --alpha-warmup 1000 --steps 1000 --emb-readout per_step --dstar-ties first
lever e13 --alpha 0.1 --alpha-warmup 1000 --steps 3000 --gumbel --dstar-ties first      # the shipped metacontroller
lever e14 --alpha 0.3 --alpha-warmup 3000 --steps 3000 --gumbel                         # α ramped over the whole run
lever e15 --alpha 0.1 --alpha-warmup 1000 --steps 3000 --gumbel --dstar-ties first --layer 0   # e13 at the embedding
lever e16 --alpha 0.1 --alpha-warmup 1000 --steps 3000 --gumbel --dstar-ties first --decoder-init-std 1.0
python scripts/collect_discovery_levers.py "$LEV"/e1 "$LEV"/e2 "$LEV"/e3 "$LEV"/e9 "$LEV"/e11 "$LEV"/e13 "$LEV"/e14 \
  "$LEV"/e15 "$LEV"/e16 \
  --layouts 50 --out "$SET/reports/discovery_levers.json"

stage "11/13 the shipped metacontroller (e13), its switching export, its latent map with centroid steering, internal RL on it (one seed)"
for s in json safetensors; do cp "$LEV/e13/checkpoints/metacontroller.$s" "$SET/metacontroller.$s"; done
python -m irl_core switching --checkpoint "$SET/metacontroller" --episodes 200 --out "$SET/reports/switching.npz"
python -m irl_core latent-map --checkpoint "$SET/metacontroller" --episodes 500 --steer-layouts 100 --threads "$T" \
  --out "$SET/reports/latent_map.json"
python -m irl_core internal-rl --set "$SET" --method internal-rl --preset cpu --episodes 40960 --seed 0 --threads "$T" \
  --quiet --run-dir runs/internal-rl/grid5-probe/internal-rl-seed0
python -m irl_core rl-curves --runs runs/internal-rl/grid5-probe --out "$SET/reports/internal_rl_probe.json"

stage "12/13 the α sweep (Fig. 7) with the e13 recipe, frozen and co-trained (~20 / ~22 min a point, one thread each)"
# The full grid is 7 α × 3 seeds × 2 variants = 42 points (~14 h of one core); ALPHAS, SEEDS, JOBS narrow or widen it.
# Finished points are kept, so any subset can run now and the rest later; the table lists every finished point.
SW=(--base "$SET/base" --preset cpu --gumbel --switch-bias 1.0 --decoder-init-std 0.1 --dstar-ties first
    --alpha-warmup 1000 --out-dir runs/grid5/sweep)
python -m irl_core sweep "${SW[@]}" --variants frozen,cotrained --alphas "${ALPHAS:-0,0.05,0.1,0.17,0.3,0.5,1}" \
  --seeds "${SEEDS:-0,1,2}" --jobs "${JOBS:-1}"
python -m irl_core sweep "${SW[@]}" --collect --table "$SET/reports/discovery.json"

stage "13/13 Fig. 8: the β ≡ 1 and co-trained metacontrollers (e13's recipe, 3,000 steps) and CompILE (1,500 steps), then internal RL of the five methods × 5 seeds on 0-1-2-3"
SET="$SET" ALPHA=0.1 DISCOVERY_STEPS=3000 COMPILE_STEPS=1500 DISCOVER_ARGS="--gumbel --switch-bias 1.0 --decoder-init-std 0.1 --dstar-ties first --alpha-warmup 1000" \
  EPISODES=${RL_EPISODES:-51200} SEEDS=${RL_SEEDS:-"0 1 2 3 4"} LR=3e-4 THREADS="$T" RUNS=runs/internal-rl/grid5 \
  bash scripts/reproduce_grid_rl.sh
stage "done"
