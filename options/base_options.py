"""Command-line options shared by training and testing.

Every flag of the released scripts keeps its name and default (they are a public interface); flags we added
say so in their help text. :meth:`BaseOptions.parse` prints the options, marking the ones that differ from
their default, and :meth:`BaseOptions.save` writes them beside a run's outputs as ``opt.txt`` and ``opt.json``.
"""
import argparse
import difflib
import math
import os
import shutil
from types import SimpleNamespace

from data.protocols import PROTOCOLS
from data.registry import family_of
from models import ADDRESSING_CHOICES, IMAGE_RANGES, MODELS, QUERY_CHOICES, has_latent_penalty, is_memory_model
from models.ae_3dconv import TIME_FACTOR
from utils.files import make_folder, write_json, write_text
from utils.flags import BOOL_HELP, BOOL_METAVAR, str2bool
from utils.runtime import AMP_CHOICES
from utils.scoring import SCORE_TYPES

# AE-l1: the paper gives no weight. Ours equals the entropy weight alpha, the other sparsity term of the objective,
# under the same (released) scaling: fixed a priori, not tuned.
DEFAULT_L1_WEIGHT = 0.0002
# (flag, run-name field, released value) of added memory options that go into the run name when not at the
# released value
ADDED_MEMORY_FIELDS = (('MemAddressing', 'Addr', 'dot'), ('MemQuery', 'Query', 'whole'),
                       ('MemTemperature', 'Temp', 1.0))
# (flag, run-name field, default) of the added image-layer options: every model's run name names them when they
# differ from their default (``_Kernel3``, ``_Code16``, ``_RangeSymmetric_tanh``)
ADDED_IMAGE_FIELDS = (('ImageFirstKernel', 'Kernel', 0), ('ImageCodeChannels', 'Code', 0),
                      ('ImageRange', 'Range', 'unit'))
# (flag, run-name field, default) of the added video-data option that changes what is trained: named like them
ADDED_DATA_FIELDS = (('HoldOutVideos', 'HoldOut', 0),)
# 'auto' choices, per data family: video follows the released code; images and KDDCUP99, for which the release
# has no code, follow the paper's text (cosine addressing, Eq. 5; the per-sample loss of Eq. 10)
FAMILY_DEFAULTS = {'MemAddressing': {'video': 'dot', 'image': 'cosine', 'tabular': 'cosine'},
                   'LossScaling': {'video': 'released', 'image': 'paper', 'tabular': 'paper'}}


def resolve_family_defaults(opt, family):
    """Replace the 'auto' of --MemAddressing and --LossScaling (a testing run has no --LossScaling) by the
    choice for ``family``, the data family of --Dataset."""
    for flag, choices in FAMILY_DEFAULTS.items():
        if getattr(opt, flag, None) == 'auto':
            setattr(opt, flag, choices[family])


def model_setting(opt):
    """The run name, built exactly as released; it names weight files and result folders.

    MemAE: ``{ModelName}_{ModelSetting}_{Dataset}_MemDim{N}_EntW{a}_ShrThres{l}_Seed{s}_{Suffix}``, with the
    numbers as Python's ``str()`` writes them (``EntW0.0002``); AE: ``{ModelName}_{ModelSetting}_{Dataset}_{Suffix}``;
    AE-l1 (ours): ``AEL1_{ModelSetting}_{Dataset}_L1W{w}_{Suffix}``.
    Memory options we added name themselves before the seed when they differ from their default
    (``_AddrCosine``, ``_QueryPosition``, ``_Temp0.1``), and the image-layer options and ``--HoldOutVideos``
    before the suffix (every model), so that such runs never overwrite the released-style ones.
    """
    trained_on = added_fields(opt, ADDED_IMAGE_FIELDS + ADDED_DATA_FIELDS)  # other networks or training data
    if has_latent_penalty(opt.ModelName):
        return f'{opt.ModelName}_{opt.ModelSetting}_{opt.Dataset}_L1W{opt.L1Weight}{trained_on}_{opt.Suffix}'
    if not is_memory_model(opt.ModelName):
        return f'{opt.ModelName}_{opt.ModelSetting}_{opt.Dataset}{trained_on}_{opt.Suffix}'
    memory = added_fields(opt, ADDED_MEMORY_FIELDS)
    return (f'{opt.ModelName}_{opt.ModelSetting}_{opt.Dataset}_MemDim{opt.MemDim}_EntW{opt.EntropyLossWeight}'
            f'_ShrThres{opt.ShrinkThres}{memory}_Seed{opt.Seed}{trained_on}_{opt.Suffix}')


def added_fields(opt, fields):
    """``_{field}{value}`` of each added option of ``fields`` that differs from its default."""
    return ''.join(f'_{field}{str(getattr(opt, flag)).capitalize()}'
                   for flag, field, default in fields if getattr(opt, flag) != default)


def cxx_compiler():
    """The C++ compiler torch.compile's code generation would use (CXX, else the usual names), or None."""
    return next((found for name in (os.environ.get('CXX'), 'g++', 'c++', 'clang++')
                 if name and (found := shutil.which(name))), None)


# Options that become part of the run name, hence of file and folder names
NAME_FIELDS = ('ModelName', 'ModelSetting', 'Dataset', 'Suffix')
# The sections of --help, in order (a flag is found by what it is about)
ARGUMENT_GROUPS = {
    'model': 'model (what is trained or loaded, and its run name)',
    'data': 'data',
    'run': '{script}',
    'speed': 'device and speed (results do not depend on these, up to float rounding)',
    'outputs': 'outputs and messages',
    'oneclass': 'image and KDDCUP99 experiments only',
}


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints its whole usage first, which buries the
    sentence that names the flag at fault)."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message}{self.suggestion(message)} (--help lists every flag)\n')

    def suggestion(self, message):
        """'; did you mean --UseCUDA?' for an unrecognized flag close to one of ours (case aside), else ''."""
        if not message.startswith('unrecognized arguments:'):
            return ''
        ours = {flag.lower(): flag for flag in self._option_string_actions if flag.startswith('--')}
        guesses = []
        for given in message.split(':', 1)[1].split():
            if given.startswith('--'):
                close = difflib.get_close_matches(given.split('=', 1)[0].lower(), ours, n=1, cutoff=0.75)
                guesses += [f'{ours[close[0]]} for {given}'] if close else []
        return f"; did you mean {', '.join(guesses)}?" if guesses else ''


class BaseOptions:
    """The flags both scripts take; subclasses set ``mode`` and add their own in :meth:`add_arguments`."""

    mode = None  # 'train' or 'eval', the released --Mode value of the script
    run_title = ''  # the --help section of the script's own flags
    description = ''
    batch_size = 1
    positive_flags = ('BatchSize', 'FrameNum', 'ImgChnNum', 'MemDim', 'Runs')

    def __init__(self):
        self.parser = OneLineErrorParser(description=self.description, epilog=BOOL_HELP,
                                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        groups = SimpleNamespace(**{name: self.parser.add_argument_group(title.format(script=self.run_title))
                                    for name, title in ARGUMENT_GROUPS.items()})
        self.add_base_arguments(groups)
        self.add_arguments(groups)
        for action in self.parser._actions:  # --help shows the words a boolean flag accepts, not its dest
            if action.type is str2bool:
                action.metavar = BOOL_METAVAR

    def own_flags(self, flags):
        """Of ``flags`` (a command line), the flags this script takes, each with its values: what a program that
        runs both scripts with one set of flags hands this one (training flags such as --EpochNum mean nothing to
        testing)."""
        known = self.parser._option_string_actions
        kept, keeping = [], False
        for item in flags:
            if item.startswith('--'):
                keeping = item.split('=', 1)[0] in known
            if keeping:
                kept.append(item)
        return kept

    def add_base_arguments(self, groups):
        data, model, oneclass, outputs, run, speed = (groups.data, groups.model, groups.oneclass, groups.outputs,
                                                       groups.run, groups.speed)
        speed.add_argument('--UseCUDA', help='use CUDA when available (without CUDA: a one-line note, then the CPU)',
                            type=str2bool, nargs='?', const=True, default=True)
        run.add_argument('--Mode', help='kept from the release, where it named the mode of the script; each '
                            'script has one mode here (train: script_training.py, eval: script_testing.py), so it '
                            'may be left out, and a value that does not fit the script is an error',
                            choices=['train', 'eval'], default=self.mode)
        model.add_argument('--ModelName', help=f"{'/'.join(MODELS)} (AEL1, added: the AE trained with an l1 "
                            'penalty on its encoding, the paper\'s AE-l1 ablation)', type=str, default='MemAE')
        model.add_argument('--ModelSetting', help='a label that goes into the run name (the network follows '
                            '--ModelName and --Dataset); in use: Conv3DSpar / Conv3D (video MemAE / AE), Conv2DSpar / '
                            'Conv2D (images), FCSpar / FC (KDDCUP99)', type=str, default='Conv3DSpar')
        model.add_argument('--Seed', help='random seed of weights, data order and splits (image and KDD runs use '
                            'Seed, Seed+1, ...); part of the MemAE run name', type=int, default=1)
        data.add_argument('--Dataset', help='data set folder under --DataRoot', type=str, default='UCSD_P2_256')
        model.add_argument('--ImgChnNum', help='image channels (1 = grayscale, 3 = colour)', type=int, default=1)
        model.add_argument('--FrameNum', help='frames per video clip', type=int, default=16)
        run.add_argument('--BatchSize', help='batch size', type=int, default=self.batch_size)
        speed.add_argument('--NumWorker', help='DataLoader worker processes', type=int, default=1)
        model.add_argument('--MemDim', help='memory size N (number of slots)', type=int, default=2000)
        model.add_argument('--EntropyLossWeight', help='weight alpha of the entropy loss', type=float,
                            default=0.0002)
        model.add_argument('--ShrinkThres', help='hard-shrinkage threshold lambda (0: no shrinkage)', type=float,
                            default=0.0025)
        model.add_argument('--L1Weight', help='(added) --ModelName AEL1: weight of the l1 penalty on the encoding '
                            '(same scaling as the entropy loss; see models/losses.py)', type=float,
                            default=DEFAULT_L1_WEIGHT)
        model.add_argument('--MemAddressing', help='(added) memory addressing: dot product as released, or the '
                            "paper's cosine similarity; auto: dot for video (released), cosine for images and "
                            'KDDCUP99 (the paper; the release has no code for them)',
                            choices=('auto', *ADDRESSING_CHOICES), default='auto')
        model.add_argument('--MemTemperature', help='(added) temperature T of the addressing soft-max, '
                            'softmax(d / T); 1 = the paper and the release. Below 1 lets cosine addressing (d in '
                            '[-1, 1]) concentrate on a few slots', type=float, default=1.0)
        model.add_argument('--MemQuery', help='(added) image memories: the whole encoding is one query (a slot '
                            'decodes into an image) or every latent position is one', choices=QUERY_CHOICES,
                            default='whole')
        model.add_argument('--ImageFirstKernel', help='(added) image experiments: kernel of the first encoder layer '
                            '(odd; 0 = the architecture\'s: 1 for MNIST, as secondary sources give the paper\'s '
                            'Conv2(1,2,16); 3 for CIFAR-10); see models/image_ae.py', type=int, default=0)
        model.add_argument('--ImageCodeChannels', help='(added) image experiments: channels of the code, the last '
                            'encoder layer (0 = the architecture\'s: 64 for MNIST, a 64 x 4 x 4 code; 256 for '
                            'CIFAR-10)', type=int, default=0)
        model.add_argument('--ImageRange', help='(added) image experiments: pixel range and output activation: '
                            '"unit" = [0, 1] and none, "unit_sigmoid" = [0, 1] and a sigmoid, "symmetric_tanh" = '
                            '[-1, 1] and a tanh', choices=tuple(IMAGE_RANGES), default='unit')
        run.add_argument('--ScoreType', help='(added) per-sample score: "released" = what the released code '
                            'computes for --ModelName on video (MemAE: mean per-pixel L2 error on [-1, 1] frames; AE: '
                            'MSE on [0, 1] frames) and MSE for images and records; or "l2" / "mse" for any model',
                            choices=SCORE_TYPES, default='released')
        oneclass.add_argument('--NormalClass', help='(added) image experiments: the normal class; -1 = each class in '
                            'turn', type=int, default=-1)
        oneclass.add_argument('--Runs', help='(added) image and KDD experiments: repetitions with seeds Seed, Seed+1, '
                            '...', type=int, default=1)
        oneclass.add_argument('--Protocol', help='(added) image experiments: "standard" (train split / test split), '
                            '"pooled" (one split: 2/3 of the normal class train), "auto" = standard when a training '
                            'split exists; KDDCUP99: "dagmm" (auto; the test half of a 50/50 split of all records), '
                            '"dagmm_reimpl" (the other half of the attack records plus every normal. record; '
                            'threshold over training and test scores); see data/protocols.py',
                            choices=PROTOCOLS, default='auto')
        oneclass.add_argument('--AnomalyRatio', help='(added) image experiments: fraction of anomalies in the test '
                            'set (default 0.3); KDD: fraction of test records flagged (default 0.2)', type=float,
                            default=None)
        oneclass.add_argument('--EarlyStopping', help='(added) image and KDD experiments: each unit trains on 80 %% '
                            'of its training data for --EpochNum epochs, scores a validation set built from its own '
                            'training data (data/protocols.py) after every epoch, and keeps the weights of the epoch '
                            'whose validation metric, averaged over +-2 epochs, is best; no record of the unit\'s '
                            'test set is used (KDD dagmm_reimpl: the validation records are not counted as test '
                            'records). Testing needs the value the weights were trained with',
                            type=str2bool, default=False)
        oneclass.add_argument('--ShrinkThresGrid', help='(added) image and KDD MemAE with --EarlyStopping: the '
                            'shrink thresholds lambda each unit tries (replacing --ShrinkThres); the unit keeps the '
                            'one whose smoothed validation metric is best (the first of equals) and writes it beside '
                            'its weights (<unit>_choice.json), where testing, given the same grid, reads it',
                            type=float, nargs='+', metavar='LAMBDA', default=None)
        data.add_argument('--HoldOutVideos', help='(added) video: the last N training videos (natural order) are '
                            'held out: training leaves them out, and testing with --Calibrate True calibrates on them '
                            '(docs/DEPLOYMENT.md); adds _HoldOut<N> to the run name', type=int, default=0)
        data.add_argument('--Download', help='(added) let torchvision download MNIST / CIFAR-10 into --DataRoot',
                            type=str2bool, default=False)
        data.add_argument('--DataRoot', help='folder holding the prepared data sets', type=str,
                            default='./dataset/')
        outputs.add_argument('--OutRoot', help='results go to <OutRoot>/res_<setting>/ (testing, and training for '
                            'the image and KDD experiments, which evaluates at the end)', type=str,
                            default='./results/')
        outputs.add_argument('--ModelRoot', help='folder of model weights (the release said ./models/, which is the '
                            'Python package here)', type=str, default='./memae_models/')
        model.add_argument('--Suffix', help='last field of the run name', type=str, default='Non')
        speed.add_argument('--AMP', help='(added) video: run the model in bfloat16 autocast ("bf16"; GPUs with '
                            'bf16 support, or recent CPUs), with TF32 tensor cores for CUDA\'s convolutions and '
                            'matrix products ("tf32"; float32 storage; Ampere and later GPUs) or in float32 '
                            'throughout as released ("none", on a GPU too)', choices=AMP_CHOICES, default='none')
        speed.add_argument('--Compile', help='(added) video: torch.compile the model; image and KDD experiments '
                            'trained in lockstep: the batched training step (a one-time compilation, then faster '
                            'steps; weights files are unchanged)', type=str2bool, default=False)
        speed.add_argument('--ChannelsLast', help='(added) video: keep the model and its clips in the '
                            'channels_last_3d memory layout (faster 3-D convolutions on this CPU; scores equal to '
                            '1e-6)', type=str2bool, default=False)
        outputs.add_argument('--Debug', help='(added) show the traceback of errors in the input too (otherwise: one '
                            'sentence and exit code 2)', type=str2bool, nargs='?', const=True, default=False)
        outputs.add_argument('--PrintOptions', help='(added) print the table of all options at the start (default: '
                            'one line of those that differ from their default, so that the table does not push a '
                            'message off the screen); opt.txt beside the outputs always holds the table',
                            type=str2bool, default=False)

    def check_numbers_and_names(self, opt):
        """Every number given is finite (NaN passes every comparison a range check makes: ``nan < 0`` is False),
        and the fields of the run name, which name files and folders, hold no path."""
        for action in self.parser._actions:
            value = getattr(opt, action.dest, None)
            values = value if isinstance(value, list) else [value]
            if action.type is float and not all(v is None or math.isfinite(v) for v in values):
                self.parser.error(f'{action.option_strings[0]} must be a finite number, got {value}')
        for flag in NAME_FIELDS:
            value = getattr(opt, flag)
            if not value or any(part in value for part in ('/', '\\')) or value in ('.', '..'):
                self.parser.error(f'--{flag} is part of the run name, which names files and folders: it must be '
                                  f"a plain name without '/' or a backslash, got {value!r}")

    def check_grid(self, opt, flag, grid):
        """A grid of settings each unit chooses from (--LRGrid, --ShrinkThresGrid) needs --EarlyStopping, whose
        validation set makes the choice, and distinct values."""
        if grid is None:
            return
        if not opt.EarlyStopping:
            self.parser.error(f'{flag} lets each unit choose on its validation set: it needs --EarlyStopping True')
        if len(set(grid)) != len(grid):
            self.parser.error(f'{flag} lists a value twice: {" ".join(map(str, grid))}')

    def add_arguments(self, groups):
        """Flags of one script only, each added to its group of ``groups`` (see ARGUMENT_GROUPS)."""

    def check(self, opt):
        """Checks of the flags of one script only (``self.parser.error`` on a bad value)."""

    def parse(self, args=None, is_print=True):
        opt = self.parser.parse_args(args)
        self.check_numbers_and_names(opt)
        if opt.Mode != self.mode:
            self.parser.error(f'--Mode {opt.Mode} does not fit this script, which runs in --Mode {self.mode}')
        if opt.Compile and not cxx_compiler():
            self.parser.error('--Compile True builds the model into C++ (and on a GPU, Triton) code, which needs a '
                              'C++ compiler; none was found (install g++ or clang, or name one in CXX), or leave '
                              '--Compile out')
        for flag in self.positive_flags:
            if getattr(opt, flag) < 1:
                self.parser.error(f'--{flag} must be at least 1, got {getattr(opt, flag)}')
        if opt.ShrinkThres < 0 or opt.EntropyLossWeight < 0 or opt.L1Weight < 0:
            self.parser.error('--ShrinkThres, --EntropyLossWeight and --L1Weight must not be negative')
        if min(opt.ShrinkThresGrid or [0]) < 0:
            self.parser.error(f'--ShrinkThresGrid must not be negative, got {" ".join(map(str, opt.ShrinkThresGrid))}')
        if not opt.MemTemperature > 0:
            self.parser.error(f'--MemTemperature must be positive, got {opt.MemTemperature}')
        if opt.FrameNum % TIME_FACTOR:
            self.parser.error(f'--FrameNum must be a multiple of {TIME_FACTOR} (the video network halves the '
                              f'time axis three times), got {opt.FrameNum}')
        self.check(opt)
        family = family_of(opt.Dataset, opt.DataRoot)
        if opt.EarlyStopping and family == 'video':
            self.parser.error(f'--EarlyStopping chooses the epoch of an image or KDD unit on validation data; '
                              f'--Dataset {opt.Dataset} is a video data set: leave --EarlyStopping out')
        self.check_grid(opt, '--ShrinkThresGrid', opt.ShrinkThresGrid)
        if opt.ShrinkThresGrid and not is_memory_model(opt.ModelName):
            self.parser.error(f'--ShrinkThresGrid chooses the memory\'s shrink threshold; --ModelName {opt.ModelName} '
                              'has no memory: leave it out')
        changed_image_layers = [f'--{flag}' for flag, _, default in ADDED_IMAGE_FIELDS if getattr(opt, flag) != default]
        if changed_image_layers and family != 'image':
            self.parser.error(f"{', '.join(changed_image_layers)} change(s) the image networks; --Dataset "
                              f'{opt.Dataset} is not an image data set: leave them out')
        if opt.ImageFirstKernel < 0 or opt.ImageFirstKernel % 2 == 0 and opt.ImageFirstKernel != 0:
            self.parser.error(f"--ImageFirstKernel must be odd (or 0: the architecture's), got {opt.ImageFirstKernel}")
        if opt.HoldOutVideos < 0:
            self.parser.error(f'--HoldOutVideos must not be negative, got {opt.HoldOutVideos}')
        if opt.HoldOutVideos and family != 'video':
            self.parser.error(f'--HoldOutVideos holds out training videos; --Dataset {opt.Dataset} is not a video '
                              'data set: leave it out')
        if opt.ImageCodeChannels < 0:
            self.parser.error(f'--ImageCodeChannels must not be negative, got {opt.ImageCodeChannels}')
        resolve_family_defaults(opt, family)
        opt.setting = model_setting(opt)
        self.opt = opt
        if is_print:
            print(self.format_options(opt) if opt.PrintOptions else self.format_changed_options(opt))
        return opt

    def default_of(self, name, opt):
        """The default of option ``name`` for these options: an 'auto' default is what it resolves to."""
        default = self.parser.get_default(name)
        if default == 'auto' and name in FAMILY_DEFAULTS:
            return FAMILY_DEFAULTS[name][family_of(opt.Dataset, opt.DataRoot)]
        return default

    def changed_options(self, opt):
        """(name, value) of the options that differ from their default."""
        return [(name, value) for name, value in sorted(vars(opt).items())
                if name != 'setting' and value != self.default_of(name, opt)]

    def format_options(self, opt):
        """One line per option, with ``[default: ...]`` behind those that differ from their default."""
        changed = dict(self.changed_options(opt))
        lines = ['----------------- Options ---------------']
        for name, value in sorted(vars(opt).items()):
            comment = f'\t[default: {self.default_of(name, opt)}]' if name in changed else ''
            lines.append(f'{name:>25}: {str(value):<30}{comment}')
        lines.append('----------------- End -------------------')
        return '\n'.join(lines)

    def format_changed_options(self, opt):
        """One line: the options that differ from their default (``--PrintOptions False``)."""
        changed = ' '.join(f'--{name} {value}' for name, value in self.changed_options(opt))
        return f'options (not at their default; all in opt.txt): {changed or "none"}'

    def save(self, opt, folder):
        """Write ``opt.txt`` (as printed) and ``opt.json`` into ``folder``."""
        folder = make_folder(folder)
        write_text(folder / 'opt.txt', self.format_options(opt) + '\n')
        write_json(folder / 'opt.json', vars(opt), sort_keys=True)
