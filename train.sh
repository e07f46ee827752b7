#!/usr/bin/env bash
# Train with the paper's settings:  bash train.sh [ped2|ped2_ae|ped2_nonspar] [extra script_training.py flags]
# Environment: DATA_ROOT (./dataset/), MODEL_ROOT (./results/, as the released training script: trained weights
# never overwrite the released ones in ./memae_models/). Evaluate the result with MODEL_ROOT=./results/ bash test.sh.
set -euo pipefail
cd "$(dirname "$0")"
source utils/experiments.sh
parse_experiment "$@" || exit 2
# BatchSize 10 is what the released train_video_MemAE.sh passed (the option's default is 14).
python script_training.py "${FLAGS[@]}" \
  --BatchSize 10 --SaveCheckInterval 1 --IsTbLog True --IsDeter True \
  --DataRoot "${DATA_ROOT:-./dataset/}" \
  --ModelRoot "${MODEL_ROOT:-./results/}" \
  --Suffix Non "${EXTRA_ARGS[@]}"
