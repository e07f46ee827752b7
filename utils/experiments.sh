# The paper's experiments as flag lists, shared by test.sh and train.sh (sourced, not run).
# parse_experiment [NAME [ARGS...]] sets FLAGS (the experiment's flags, NAME defaulting to ped2) and EXTRA_ARGS
# (the ARGS to pass through), or prints the valid names and returns 1.
EXPERIMENTS="ped2 ped2_ae ped2_nonspar"

experiment_flags() {
  case "$1" in
    ped2)          # MemAE as released: N = 2000 slots, alpha = 0.0002, lambda = 0.0025
      FLAGS=(--ModelName MemAE --ModelSetting Conv3DSpar --Dataset UCSD_P2_256 --MemDim 2000
             --EntropyLossWeight 0.0002 --ShrinkThres 0.0025 --Seed 1) ;;
    ped2_ae)       # the AE baseline, named as the released AE weights
      FLAGS=(--ModelName AE --ModelSetting Conv3D --Dataset UCSD_P2_256) ;;
    ped2_nonspar)  # MemAE-nonSpar: no shrinkage, no entropy loss
      FLAGS=(--ModelName MemAE --ModelSetting Conv3D --Dataset UCSD_P2_256 --MemDim 2000
             --EntropyLossWeight 0 --ShrinkThres 0 --Seed 1) ;;
    *)
      echo "unknown experiment '$1'; valid: $EXPERIMENTS" >&2
      return 1 ;;
  esac
}

parse_experiment() {
  experiment_flags "${1:-ped2}" || return 1
  EXTRA_ARGS=("${@:2}")
}
