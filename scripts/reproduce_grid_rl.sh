#!/usr/bin/env bash
# Fig. 8 on one gridworld checkpoint set: the discovery baselines (β ≡ 1, co-trained, CompILE) and the internal-RL
# curves of the five methods, trained on the set's base model and frozen metacontroller (<set>/metacontroller first).
#   bash scripts/reproduce_grid_rl.sh                          # checkpoints/grid, the budget of its shipped artifacts
#   SET=checkpoints/grid5 ALPHA=… DISCOVERY_STEPS=… DISCOVER_ARGS="…" EPISODES=… SEEDS="0 1 2 3 4" LR=… \
#     bash scripts/reproduce_grid_rl.sh                        # what scripts/reproduce_grid5.sh runs for grid5
#   EPISODES=1000000 PRESET=paper DEVICE=cuda bash scripts/reproduce_grid_rl.sh   # the paper's budget on a GPU
# Every step is resumable: finished checkpoints are kept, interrupted runs resume from their own checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${SET:-checkpoints/grid}
PRESET=${PRESET:-cpu}
DEVICE=${DEVICE:-cpu}
EPISODES=${EPISODES:-15360}
BATCH=${BATCH:-512}
LR=${LR:-}                                # the RL learning rate of every method (default: the preset's)
ALPHA=${ALPHA:-0.1}
DISCOVERY_STEPS=${DISCOVERY_STEPS:-300}
DISCOVER_ARGS=${DISCOVER_ARGS:-}          # the metacontroller recipe's knobs (README "Choices")
COMPILE_STEPS=${COMPILE_STEPS:-$DISCOVERY_STEPS}
SEEDS=${SEEDS:-"0 1 2"}
THREADS=${THREADS:-1}
NAME=$(basename "$SET")
RUNS=${RUNS:-runs/internal-rl/$NAME}
stage() { echo "[$(date +%H:%M:%S)] $*"; }

for variant in beta1 cotrained; do
  if [ ! -f "$SET/metacontroller_${variant}.json" ]; then
    stage "metacontroller, variant $variant (α $ALPHA, $DISCOVERY_STEPS steps)"
    # shellcheck disable=SC2086
    python -m irl_core discover --base "$SET/base" --preset "$PRESET" --variant "$variant" --alpha "$ALPHA" \
      --steps "$DISCOVERY_STEPS" $DISCOVER_ARGS --seed 0 --threads "$THREADS" --device "$DEVICE" --quiet \
      --run-dir "runs/discover/${NAME}-${PRESET}-${variant}-${DISCOVERY_STEPS}" --export "$SET/metacontroller_${variant}"
  fi
done

if [ ! -f "$SET/compile.json" ]; then
  stage "CompILE ($COMPILE_STEPS steps)"
  python -m irl_core compile --base "$SET/base" --preset "$PRESET" --steps "$COMPILE_STEPS" --seed 0 --threads "$THREADS" \
    --device "$DEVICE" --quiet --run-dir "runs/compile/${NAME}-${PRESET}-${COMPILE_STEPS}" --export "$SET/compile"
fi

for seed in $SEEDS; do
  for method in internal-rl beta1 cotrained compile raw-action; do
    stage "internal RL: $method, seed $seed ($EPISODES episodes)"
    export_arg=()
    if [ "$method" = internal-rl ] && [ "$seed" = 0 ]; then export_arg=(--export "$SET/internal_rl_policy"); fi
    if [ -n "$LR" ]; then export_arg+=(--lr "$LR"); fi
    python -m irl_core internal-rl --set "$SET" --method "$method" --preset "$PRESET" --episodes "$EPISODES" \
      --batch-size "$BATCH" --seed "$seed" --threads "$THREADS" --device "$DEVICE" --quiet \
      --run-dir "$RUNS/${method}-seed${seed}" "${export_arg[@]}"
  done
done
python -m irl_core rl-curves --runs "$RUNS" --out "$SET/reports/internal_rl.json"
