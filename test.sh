#!/usr/bin/env bash
# Evaluate weights with the paper's settings:  bash test.sh [EXPERIMENT] [extra script_testing.py flags]
# Experiments (utils/experiments.sh): ped2 mnist cifar10 kdd, each also as _ae, _nonspar
# and the ablations _noshrink, _noentropy, _ael1, _cosine.
# Environment: DATA_ROOT (./dataset/), MODEL_ROOT (./memae_models/), OUT_ROOT (./results/).
set -euo pipefail
cd "$(dirname "$0")"
source utils/experiments.sh
parse_experiment "$@" || exit 2
python script_testing.py "${FLAGS[@]}" \
  --DataRoot "${DATA_ROOT:-./dataset/}" \
  --ModelRoot "${MODEL_ROOT:-./memae_models/}" \
  --OutRoot "${OUT_ROOT:-./results/}" \
  --Suffix Non "${EXTRA_ARGS[@]}"
