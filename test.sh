#!/usr/bin/env bash
# Evaluate weights with the paper's settings:  bash test.sh [EXPERIMENT] [extra script_testing.py flags]
# `bash test.sh --help` lists the experiments (utils/experiments/settings.py) and the environment variables
# DATA_ROOT (./dataset/), MODEL_ROOT (./memae_models/), OUT_ROOT (./results/).
#
# demo: writes synthetic videos (data/synthetic.py) into DATA_ROOT, trains a MemAE on them briefly (weights in
# OUT_ROOT), tests it and prints the frame AUC, with figures. It is what plain `bash test.sh` runs when the
# Ped2 data set is not prepared yet.
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-}" in
  -h|--help) exec python -m utils.experiments.settings --usage test.sh ;;
esac
DATA_ROOT="${DATA_ROOT:-./dataset/}"
OUT_ROOT="${OUT_ROOT:-./results/}"

# The demo's first steps run in the background while the script waits for them: bash runs a trap only after a
# foreground command has ended, so this way Ctrl-C, SIGTERM and SIGHUP reach the step at once and the script stops
# with it. The last command replaces the script (exec) and gets every signal directly.
STEP=
forward() { [ -z "$STEP" ] || kill -"$1" "$STEP" 2>/dev/null || true; }
trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward HUP' HUP
step() {
  "$@" &
  STEP=$!
  local status=0
  wait "$STEP" || status=$?
  if [ "$status" -gt 128 ]; then wait "$STEP" || status=$?; fi  # a trap ended the wait: wait for the step itself
  STEP=
  return "$status"
}

if [ $# -eq 0 ] && [ ! -d "${DATA_ROOT%/}/UCSD_P2_256" ]; then
  echo "No prepared UCSD Ped2 in ${DATA_ROOT%/}/UCSD_P2_256. To test on the real data, download UCSD Ped2 and run" >&2
  echo "  python -m data.prepare_video --src /path/to/UCSD_Anomaly_Dataset.v1p2/UCSDped2 --dst ${DATA_ROOT%/}/UCSD_P2_256" >&2
  echo "for the original release (TIFF frames), or for the JPEG re-distribution (ped2/training/frames, ped2.mat)" >&2
  echo "  python -m data.prepare_video --src /path/to/ped2 --dst ${DATA_ROOT%/}/UCSD_P2_256" >&2
  echo "(README, Real UCSD Ped2). Running the built-in demo on synthetic videos instead." >&2
  set -- demo
fi
EXPERIMENT="${1:-ped2}"
SETTINGS="$(python -m utils.experiments.settings "$EXPERIMENT")" || exit 2
eval "$SETTINGS"

if [ "$EXPERIMENT" = demo ]; then
  if [ ! -d "$DATA_ROOT/$DATASET" ]; then
    step python -m data.synthetic --dst "$DATA_ROOT/$DATASET"
  fi
  step python script_training.py "${FLAGS[@]}" "${TRAIN_FLAGS[@]}" --DataRoot "$DATA_ROOT" --ModelRoot "$OUT_ROOT" \
    --Suffix Non "${@:2}"
  MODEL_ROOT="$OUT_ROOT"
  export MEMAE_CUDA_NOTED=1  # training said it if CUDA is missing: testing does not say it again
  # testing gets the extra flags it takes (--Resume auto, --EpochNum ... are training's)
  mapfile -d '' -t EXTRA < <(python -m utils.experiments.settings --testing-flags "${@:2}")
  set -- "$1" "${EXTRA[@]}"
fi
exec python script_testing.py "${FLAGS[@]}" "${TEST_FLAGS[@]}" \
  --DataRoot "$DATA_ROOT" \
  --ModelRoot "${MODEL_ROOT:-./memae_models/}" \
  --OutRoot "$OUT_ROOT" \
  --Suffix Non "${@:2}"
