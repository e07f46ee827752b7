# The paper's experiments as flag lists, shared by test.sh and train.sh (sourced, not run).
# parse_experiment [NAME [ARGS...]] sets FLAGS (the flags of experiment NAME, default ped2, that name its models),
# TRAIN_FLAGS (its training settings, for train.sh), TEST_FLAGS (for test.sh: figures for video data sets) and
# EXTRA_ARGS (the ARGS, passed through), or prints the valid names and returns 1.
DATASETS="ped2 ped1 avenue shanghaitech mnist cifar10 kdd"
# Every data set runs MemAE (its name alone), the AE baseline and MemAE-nonSpar (the paper's Tables 1-3), and the
# ablations of the paper's Table 4 (noshrink, noentropy, ael1) plus the paper's cosine addressing.
VARIANTS="_ae _nonspar _noshrink _noentropy _ael1 _cosine"
EXPERIMENTS="$(for d in $DATASETS; do printf '%s ' "$d"; for v in $VARIANTS; do printf '%s ' "$d$v"; done; done)demo"

# Training settings per data set. Video: as the released training script (BatchSize 10). Images and KDDCUP99: the
# paper gives no optimiser settings; the image ones were fixed before any test result was seen, to fit a 2-core CPU
# (README, "Results"). Images run once per class (add --Runs 3 for seeds); KDDCUP99 20 times, as in the paper.
VIDEO_TRAIN=(--BatchSize 10 --SaveCheckInterval 1 --IsTbLog True --IsDeter True)
MNIST_TRAIN=(--BatchSize 64 --LR 1e-3 --EpochNum 10)
CIFAR10_TRAIN=(--BatchSize 64 --LR 1e-3 --EpochNum 30)
# KDDCUP99: chosen on validation data from the training half (python -m utils.kdd_validation; README, "Results").
KDD_TRAIN=(--BatchSize 1024 --LR 1e-4 --EpochNum 20)
# The demo (bash test.sh demo): the ped2 MemAE on the 32 x 32 synthetic videos of data/synthetic.py, trained
# briefly (one epoch, a larger learning rate) so that the whole demo takes a few minutes on a 2-core CPU.
DEMO_DATASET=SyntheticDemo
DEMO_TRAIN=(--BatchSize 8 --LR 1e-3 --EpochNum 1 --IsTbLog True --IsDeter True)

video_dataset() {  # the --Dataset of a video experiment
  case "$1" in
    ped2*) echo UCSD_P2_256 ;;
    ped1*) echo UCSD_P1_256 ;;
    avenue*) echo Avenue_256 ;;
    shanghaitech*) echo ShanghaiTech_256 ;;
  esac
}

experiment_flags() {
  local name="$1" dataset memory shrink spar
  case "$name" in
    # every video data set: the released ped2 settings (memory 2000 x 256), which the paper uses for all of them
    ped2*|ped1*|avenue*|shanghaitech*)
              dataset=(--Dataset "$(video_dataset "$name")"); memory=(--MemDim 2000); shrink=0.0025; spar=Conv3D
              TRAIN_FLAGS=("${VIDEO_TRAIN[@]}") ;;
    mnist*)   dataset=(--Dataset MNIST); memory=(--MemDim 100); shrink=0.01; spar=Conv2D
              TRAIN_FLAGS=("${MNIST_TRAIN[@]}") ;;
    cifar10*) dataset=(--Dataset CIFAR10); memory=(--MemDim 500); shrink=0.002; spar=Conv2D
              TRAIN_FLAGS=("${CIFAR10_TRAIN[@]}") ;;
    kdd*)     dataset=(--Dataset KDDCUP99 --Runs 20); memory=(--MemDim 50); shrink=0.02; spar=FC
              TRAIN_FLAGS=("${KDD_TRAIN[@]}") ;;
    demo)     dataset=(--Dataset "$DEMO_DATASET"); memory=(--MemDim 2000); shrink=0.0025; spar=Conv3D
              TRAIN_FLAGS=("${DEMO_TRAIN[@]}") ;;
    *)        echo "unknown experiment '$name'; valid: $EXPERIMENTS" >&2; return 1 ;;
  esac
  local memae=(--ModelName MemAE --ModelSetting "${spar}Spar" "${dataset[@]}" "${memory[@]}")
  case "$name" in
    ped2|ped1|avenue|shanghaitech|mnist|cifar10|kdd|demo)
                             # MemAE: alpha = 0.0002 (paper); lambda = 1/N, the lower end of the paper's [1/N, 3/N],
                             # except video (and the demo), which keeps the released 0.0025
      FLAGS=("${memae[@]}" --EntropyLossWeight 0.0002 --ShrinkThres "$shrink" --Seed 1) ;;
    *_ae)                    # the AE baseline
      FLAGS=(--ModelName AE --ModelSetting "$spar" "${dataset[@]}" --Seed 1) ;;
    *_nonspar)               # MemAE-nonSpar: no shrinkage, no entropy loss
      FLAGS=(--ModelName MemAE --ModelSetting "$spar" "${dataset[@]}" "${memory[@]}"
             --EntropyLossWeight 0 --ShrinkThres 0 --Seed 1) ;;
    *_noshrink)              # ablation: MemAE without shrinkage (entropy loss kept)
      FLAGS=("${memae[@]}" --EntropyLossWeight 0.0002 --ShrinkThres 0 --Seed 1) ;;
    *_noentropy)             # ablation: MemAE without the entropy loss (shrinkage kept)
      FLAGS=("${memae[@]}" --EntropyLossWeight 0 --ShrinkThres "$shrink" --Seed 1) ;;
    *_ael1)                  # ablation: the AE with an l1 penalty on its encoding (--L1Weight, default 0.0002)
      FLAGS=(--ModelName AEL1 --ModelSetting "$spar" "${dataset[@]}" --Seed 1) ;;
    *_cosine)                # MemAE with the paper's cosine addressing instead of the released dot product
      FLAGS=("${memae[@]}" --EntropyLossWeight 0.0002 --ShrinkThres "$shrink" --MemAddressing cosine --Seed 1) ;;
    *)                       echo "unknown experiment '$name'; valid: $EXPERIMENTS" >&2; return 1 ;;
  esac
}

parse_experiment() {
  experiment_flags "${1:-ped2}" || return 1
  case "${1:-ped2}" in
    ped2*|ped1*|avenue*|shanghaitech*) TEST_FLAGS=(--Plots True) ;;
    # tiny clips: batches help, workers do not; the training step just printed the option table
    demo)  TEST_FLAGS=(--Plots True --BatchSize 16 --NumWorker 0 --PrintOptions False) ;;
    *)     TEST_FLAGS=() ;;
  esac
  EXTRA_ARGS=("${@:2}")
}
