"""Options of ``script_training.py``."""
from models.losses import LOSS_SCALINGS
from options.base_options import BaseOptions
from utils.flags import bool_or_auto, optional_path, str2bool


class TrainOptions(BaseOptions):
    mode = 'train'
    run_title = 'training (optimiser, epochs, resuming)'
    description = ('Train a video MemAE or AE on a prepared data set, or train and evaluate every model of an image '
                   'or KDDCUP99 experiment.')
    batch_size = 14
    positive_flags = BaseOptions.positive_flags + ('EpochNum', 'TextLogInterval', 'SnapInterval', 'TBImgLogInterval',
                                                   'SaveCheckInterval')

    def add_arguments(self, groups):
        outputs, run = groups.outputs, groups.run
        run.add_argument('--IsDeter', type=str2bool, help='deterministic cuDNN (set False for speed)',
                            default=True)
        outputs.add_argument('--IsTbLog', type=str2bool, help='TensorBoard log under <ModelRoot>/log_<setting>/',
                            default=True)
        run.add_argument('--LR', help='learning rate (Adam)', type=float, default=1e-4)
        run.add_argument('--LRGrid', help='(added) image and KDD experiments with --EarlyStopping: the learning '
                            'rates each unit tries (replacing --LR), all in lockstep; the unit keeps the rate and '
                            'epoch whose smoothed validation metric is best (the first of equals)', type=float,
                            nargs='+', metavar='LR', default=None)
        run.add_argument('--LossScaling', help='(added) "released": MSE and entropy averaged over all elements and '
                            'queries; "paper": per-sample sums as Eq. 10 reads (see models/losses.py); auto: released '
                            'for video, paper for images and KDDCUP99', choices=('auto', *LOSS_SCALINGS),
                            default='auto')
        run.add_argument('--EpochNum', help='number of epochs', type=int, default=100)
        outputs.add_argument('--TextLogInterval', help='text log every N iterations', type=int, default=1)
        outputs.add_argument('--SnapInterval', help='save <setting>_snap.pt every N iterations', type=int,
                            default=100)
        outputs.add_argument('--TBImgLogInterval', help='TensorBoard images every N iterations', type=int,
                            default=200)
        outputs.add_argument('--SaveCheckInterval', help='save <setting>_epoch_NNNN.pt every N epochs', type=int,
                            default=1)
        outputs.add_argument('--KeepIntermediate', help='(added) keep, after a run that finished, the files only '
                            'an unfinished run needs: the snapshot <setting>_snap.pt, the training state '
                            '<setting>_resume.pt (image and KDD: one per unit) and the last epoch\'s checkpoint, '
                            'which holds the same weights as the _final.pt file. Default: they are removed; the other '
                            'epoch checkpoints (--SaveCheckInterval) always stay', type=str2bool, default=False)
        run.add_argument('--Lockstep', help='(added) image and KDDCUP99 experiments: train the units (classes x '
                         'runs, or runs) together, as one batched model (utils/lockstep.py): each unit keeps its own '
                         'seed, batches, loss and Adam steps, only rounding differs. False: one unit after another. '
                         'auto: KDDCUP99 in lockstep, images one after another, the faster of the two on a CPU '
                         '(docs/SPEED.md). A video run trains one model and does not read it', type=bool_or_auto,
                         metavar='{auto,true,false}', default='auto')
        groups.speed.add_argument('--PreloadFrames', help='(added) video: decode every training frame once into one '
                         'uint8 tensor on the device and cut each batch from it (no decoding per epoch, no '
                         'DataLoader workers); the same clips in the same order for a seed as the DataLoader. auto: '
                         'on CUDA when the frames take at most half of its free memory', type=bool_or_auto,
                         metavar='{auto,true,false}', default='auto')
        run.add_argument('--Resume', help='(added) continue an interrupted run from its training state, '
                            'written after every epoch: video, a path or "auto" (<ModelRoot>/model_<setting>/'
                            '<setting>_resume.pt; starts afresh if there is none), restoring model, optimizer, epoch, '
                            'iteration and random states; image and KDD experiments, "auto": units that finished keep '
                            'their results, the interrupted one continues from its last epoch, the rest start',
                            type=optional_path, default=None)

    def check(self, opt):
        for flag, values in (('--LR', [opt.LR]), ('--LRGrid', opt.LRGrid or [])):
            if not all(lr > 0 for lr in values):  # also catches NaN
                self.parser.error(f'{flag} must be positive, got {" ".join(map(str, values))}')
        self.check_grid(opt, '--LRGrid', opt.LRGrid)
        if (opt.LRGrid or opt.ShrinkThresGrid) and opt.Lockstep is False:
            self.parser.error('--LRGrid and --ShrinkThresGrid train each unit\'s candidates together: leave out '
                              '--Lockstep False')
