#!/usr/bin/env bash
# Train with the paper's settings:  bash train.sh [EXPERIMENT] [extra script_training.py flags]
# `bash train.sh --help` lists the experiments (utils/experiments/settings.py), the ablation sweeps
# (bash train.sh ablation_DATA, utils/experiments/ablation.py) and the environment variables DATA_ROOT
# (./dataset/), MODEL_ROOT (./results/, as the released training script: trained weights never overwrite the
# released ones in ./memae_models/) and OUT_ROOT (./results/). Evaluate the result with
# MODEL_ROOT=./results/ bash test.sh EXPERIMENT.
# The command replaces this script (exec), so Ctrl-C, SIGTERM and SIGHUP reach it directly.
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-}" in
  -h|--help) exec python -m utils.experiments.settings --usage train.sh ;;
  ablation_*) exec python -m utils.experiments.ablation "${1#ablation_}" "${@:2}" ;;
esac
SETTINGS="$(python -m utils.experiments.settings "${1:-ped2}")" || exit 2
eval "$SETTINGS"
exec python script_training.py "${FLAGS[@]}" "${TRAIN_FLAGS[@]}" \
  --DataRoot "${DATA_ROOT:-./dataset/}" \
  --ModelRoot "${MODEL_ROOT:-./results/}" \
  --OutRoot "${OUT_ROOT:-./results/}" \
  --Suffix Non "${@:2}"
