#!/usr/bin/env bash
# Train with the paper's settings:  bash train.sh [EXPERIMENT] [extra script_training.py flags]
# Experiments (utils/experiments/settings.py): ped2 ped1 avenue shanghaitech mnist cifar10 kdd, each also as _ae,
# _nonspar and the ablations _noshrink, _noentropy, _ael1, _cosine, _released. The image and KDD experiments train
# every class / run of their protocol and evaluate them (summary in OUT_ROOT, ./results/).
# A whole ablation table:  bash train.sh ablation_DATA [utils/experiments/ablation.py arguments]  (DATA: a data set above)
# Environment: DATA_ROOT (./dataset/), MODEL_ROOT (./results/, as the released training script: trained weights
# never overwrite the released ones in ./memae_models/). Evaluate the result with MODEL_ROOT=./results/ bash test.sh.
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-}" in
  ablation_*) exec python -m utils.experiments.ablation "${1#ablation_}" "${@:2}" ;;
esac
SETTINGS="$(python -m utils.experiments.settings "${1:-ped2}")" || exit 2
eval "$SETTINGS"
python script_training.py "${FLAGS[@]}" "${TRAIN_FLAGS[@]}" \
  --DataRoot "${DATA_ROOT:-./dataset/}" \
  --ModelRoot "${MODEL_ROOT:-./results/}" \
  --OutRoot "${OUT_ROOT:-./results/}" \
  --Suffix Non "${@:2}"
