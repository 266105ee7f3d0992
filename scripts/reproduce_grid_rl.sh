#!/usr/bin/env bash
# Reproduce the shipped gridworld discovery baselines (β ≡ 1, co-trained, CompILE) and internal-RL curves (Fig. 8) on the shipped base model.
#   bash scripts/reproduce_grid_rl.sh            # the budget of the shipped artifacts (one CPU core, ~1 h)
#   EPISODES=1000000 PRESET=paper DEVICE=cuda bash scripts/reproduce_grid_rl.sh   # the paper's budget on a GPU
# The frozen metacontroller (checkpoints/grid/metacontroller) comes first, from README's command.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-cpu}
DEVICE=${DEVICE:-cpu}
EPISODES=${EPISODES:-15360}
BATCH=${BATCH:-512}
DISCOVERY_STEPS=${DISCOVERY_STEPS:-300}
SEEDS=${SEEDS:-"0 1 2"}
THREADS=${THREADS:-1}
RUNS=${RUNS:-runs/internal-rl/shipped}

for variant in beta1 cotrained; do
  if [ ! -f "checkpoints/grid/metacontroller_${variant}.json" ]; then
    python -m irl_core discover --preset "$PRESET" --variant "$variant" --alpha 0.1 --steps "$DISCOVERY_STEPS" \
      --seed 0 --threads "$THREADS" --device "$DEVICE" --quiet --run-dir "runs/discover/${PRESET}-${variant}-${DISCOVERY_STEPS}" \
      --export "checkpoints/grid/metacontroller_${variant}"
  fi
done

if [ ! -f "checkpoints/grid/compile.json" ]; then
  python -m irl_core compile --preset "$PRESET" --steps "$DISCOVERY_STEPS" --seed 0 --threads "$THREADS" --device "$DEVICE" \
    --quiet --run-dir "runs/compile/${PRESET}-${DISCOVERY_STEPS}" --export checkpoints/grid/compile
fi

for seed in $SEEDS; do
  for method in internal-rl beta1 cotrained compile raw-action; do
    export_arg=()
    if [ "$method" = internal-rl ] && [ "$seed" = 0 ]; then export_arg=(--export checkpoints/grid/internal_rl_policy); fi
    python -m irl_core internal-rl --method "$method" --preset "$PRESET" --episodes "$EPISODES" --batch-size "$BATCH" \
      --seed "$seed" --threads "$THREADS" --device "$DEVICE" --quiet --run-dir "$RUNS/${method}-seed${seed}" "${export_arg[@]}"
  done
done
python -m irl_core rl-curves --runs "$RUNS" --out checkpoints/grid/reports/internal_rl.json
