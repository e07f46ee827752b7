#!/usr/bin/env bash
# Evaluate weights with the paper's settings:  bash test.sh [EXPERIMENT] [extra script_testing.py flags]
# Experiments (utils/experiments/settings.py): ped2 ped1 avenue shanghaitech mnist cifar10 kdd, each also as _ae,
# _nonspar and the ablations _noshrink, _noentropy, _ael1, _cosine, _released; and demo. KDDCUP99 under the
# re-implementation protocol: bash test.sh kdd --Protocol dagmm_reimpl --OutRoot ./results/kdd_reimpl/
# Environment: DATA_ROOT (./dataset/), MODEL_ROOT (./memae_models/), OUT_ROOT (./results/).
#
# demo: writes synthetic videos (data/synthetic.py) into DATA_ROOT, trains a MemAE on them briefly (weights in
# OUT_ROOT), tests it and prints the frame AUC, with figures. It is what plain `bash test.sh` runs when the
# Ped2 data set is not prepared yet.
set -euo pipefail
cd "$(dirname "$0")"
DATA_ROOT="${DATA_ROOT:-./dataset/}"
OUT_ROOT="${OUT_ROOT:-./results/}"

if [ $# -eq 0 ] && [ ! -d "${DATA_ROOT%/}/UCSD_P2_256" ]; then
  echo "No prepared UCSD Ped2 in ${DATA_ROOT%/}/UCSD_P2_256. To test on the real data, download UCSD Ped2 and run" >&2
  echo "  python -m data.prepare_video --src <download>/UCSD_Anomaly_Dataset.v1p2/UCSDped2 --dst ${DATA_ROOT%/}/UCSD_P2_256" >&2
  echo "for the original release (TIFF frames), or for the JPEG re-distribution (ped2/training/frames, ped2.mat)" >&2
  echo "  python -m data.prepare_video --src <download>/ped2 --dst ${DATA_ROOT%/}/UCSD_P2_256" >&2
  echo "(README, Data). Running the built-in demo on synthetic videos instead." >&2
  set -- demo
fi
EXPERIMENT="${1:-ped2}"
SETTINGS="$(python -m utils.experiments.settings "$EXPERIMENT")" || exit 2
eval "$SETTINGS"

if [ "$EXPERIMENT" = demo ]; then
  if [ ! -d "$DATA_ROOT/$DATASET" ]; then
    python -m data.synthetic --dst "$DATA_ROOT/$DATASET"
  fi
  python script_training.py "${FLAGS[@]}" "${TRAIN_FLAGS[@]}" --DataRoot "$DATA_ROOT" --ModelRoot "$OUT_ROOT" \
    --Suffix Non "${@:2}"
  MODEL_ROOT="$OUT_ROOT"
fi
python script_testing.py "${FLAGS[@]}" "${TEST_FLAGS[@]}" \
  --DataRoot "$DATA_ROOT" \
  --ModelRoot "${MODEL_ROOT:-./memae_models/}" \
  --OutRoot "$OUT_ROOT" \
  --Suffix Non "${@:2}"
