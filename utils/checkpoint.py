"""Finding and loading model weights (the authors' released files, our training outputs, or any state dict),
and the full training state that ``--Resume`` restores.

Accepted files: plain state dicts saved by PyTorch 0.4 (legacy, non-zip pickle; no ``num_batches_tracked``) or
later, and dicts that wrap one under ``model``/``state_dict``/``model_state_dict``; a ``module.`` prefix left by
DataParallel is removed. Files are read with ``weights_only=True`` (no arbitrary pickle) onto the CPU, so
weights saved on a GPU load anywhere.

Training state (``<ModelRoot>/model_<setting>/<setting>_resume.pt``, rewritten after every epoch): the model, the
optimizer, the epochs and iterations done, every random state (utils/runtime.rng_state) and the run name. It is
separate from the plain weight files, which stay what ``script_testing.py`` and the release use.
"""
import pickle
import re
import warnings
from pathlib import Path

import torch

from models import build_model
from utils.errors import InputError
from utils.files import save_torch
from utils.runtime import set_rng_state

WRAPPER_KEYS = ('model', 'state_dict', 'model_state_dict')


class CheckpointError(InputError):
    """The weights are missing, unreadable or do not fit the model the options describe."""


def released_file_name(setting):
    """The authors' weight file name for a run name: the run name without its ``_Seed{n}`` field, plus ``.pt``."""
    return re.sub(r'_Seed\d+', '', setting, count=1) + '.pt'


AUTHORS_WEIGHTS_URL = 'https://drive.google.com/drive/folders/1N2DvmZwCKx_8bZWeueJNn9nsh3rQXdTg'
# The file names of the authors' released weights (UCSD Ped2, memae_models/README.md)
AUTHORS_FILES = ('MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Non.pt',
                 'AE_Conv3D_UCSD_P2_256_Non.pt')
DEMO_DATASET = 'SyntheticDemo'  # the data set of `bash test.sh demo` (utils/experiments/settings.py)


def trained_weights_pattern(opt):
    """Where ``script_training.py`` puts the final weights of the run ``opt`` names (a glob pattern)."""
    return Path(opt.ModelRoot) / f'model_{opt.setting}' / f'{opt.setting}_epoch_*_final.pt'


def candidate_paths(opt):
    """Where ``script_testing.py`` looks for weights, in order: ``--ModelFilePath``; ``<ModelRoot>/<setting>.pt``;
    the released file name, which lacks the ``_Seed{n}`` field; the newest final weights that
    ``script_training.py`` wrote under ``<ModelRoot>/model_<setting>/``."""
    if opt.ModelFilePath:
        return [Path(opt.ModelFilePath)]
    root = Path(opt.ModelRoot)
    paths = [root / f'{opt.setting}.pt', root / released_file_name(opt.setting)]
    pattern = trained_weights_pattern(opt)
    paths += sorted(pattern.parent.glob(pattern.name), reverse=True)
    return list(dict.fromkeys(paths))


def first_existing(paths, missing, hint):
    """The first of ``paths`` that is a file; else an error: ``missing``, every path tried, then ``hint``."""
    for path in paths:
        if path.is_file():
            return path
    raise CheckpointError(f"{missing}; tried: {', '.join(str(p) for p in paths)} ({hint})")


def missing_weights_advice(opt):
    """The one thing that gets weights for this run name: the authors' download, the demo, or training."""
    released = released_file_name(opt.setting)
    if released in AUTHORS_FILES:
        return (f"download the authors' weights from {AUTHORS_WEIGHTS_URL} and save them as "
                f'{Path(opt.ModelRoot) / released} (memae_models/README.md)')
    if opt.Dataset == DEMO_DATASET:
        return 'run bash test.sh demo, which trains the demo model before testing it'
    return ('train them with the same model flags: bash train.sh EXPERIMENT writes them to ./results/, then '
            'MODEL_ROOT=./results/ bash test.sh EXPERIMENT scores them (bash train.sh --help lists the experiments); '
            'or set --ModelFilePath')


def find_weights(opt):
    """The weights file of a video run: the first of :func:`candidate_paths` that exists."""
    if opt.ModelFilePath:
        return first_existing(candidate_paths(opt), 'no model weights found', 'check --ModelFilePath')
    paths = candidate_paths(opt)
    searched = ', '.join(str(p) for p in dict.fromkeys([*paths[:2], trained_weights_pattern(opt)]))
    for path in paths:
        if path.is_file():
            return path
    raise CheckpointError(f'no model weights found for {opt.setting}; searched {searched}; to fix: '
                          f'{missing_weights_advice(opt)}')


def why_unreadable(error):
    """Why ``torch.load(..., weights_only=True)`` refused a file, in a few words (torch's own text runs over
    several lines and talks about its options)."""
    text = str(error)
    code = re.search(r'GLOBAL ([\w.]+)', text)
    if code:
        return (f'it refers to Python code ({code.group(1)}) that loading would run, so it was refused without '
                f'running anything; weight files hold tensors only, so load it only if you trust its source')
    if isinstance(error, pickle.UnpicklingError):  # what weights_only raises for anything but tensors
        return 'it is damaged or holds something other than tensors'
    return f'it is truncated, damaged or not a PyTorch file ({type(error).__name__})'


def load_tensors_file(path, what):
    """``torch.load`` of ``path`` with ``weights_only=True`` onto the CPU; any failure is one sentence naming the
    file (``what``: how to call it, e.g. 'PyTorch weights file')."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles before refusing them: the refusal says it
            warnings.simplefilter('ignore')
            return torch.load(path, map_location='cpu', weights_only=True)
    except (Exception, RecursionError) as error:  # truncated files, foreign pickles and wrong formats all end here
        raise CheckpointError(f'{path} is not a readable {what}: {why_unreadable(error)}') from None


def read_state_dict(path):
    """The state dict stored in ``path``, unwrapped and without a DataParallel prefix."""
    content = load_tensors_file(path, 'PyTorch weights file')
    if isinstance(content, dict):
        for key in WRAPPER_KEYS:
            if isinstance(content.get(key), dict):
                content = content[key]
                break
    if not isinstance(content, dict) or not all(torch.is_tensor(v) for v in content.values()):
        raise CheckpointError(f'{path} does not hold a state dict of tensors')
    return {key.removeprefix('module.'): value for key, value in content.items()}


def _fill_legacy_batchnorm(state, model):
    """PyTorch 0.4.0 files have no ``num_batches_tracked``; it only matters for momentum=None, so use 0."""
    for key, value in model.state_dict().items():
        if key.endswith('num_batches_tracked') and key not in state:
            state[key] = torch.zeros_like(value)


NETWORK_KINDS = {5: 'the video network (3-D convolutions)', 4: 'an image network (2-D convolutions)',
                 2: 'a KDDCUP99 network (fully connected layers)'}  # by the rank of the first layer's weight


def _network_kind(state):
    first = state.get('encoder.0.weight')
    return NETWORK_KINDS.get(first.dim(), 'an unknown network') if first is not None else 'an unknown network'


# the memory's weight: feature-map and whole-encoding memories (MemModule, WholeEncodingMemory); records (MemoryUnit)
MEMORY_KEYS = ('mem_rep.memory.weight', 'mem_rep.weight')


def _memory_key(state):
    return next((key for key in MEMORY_KEYS if key in state), None)


def _mismatch_message(path, state, model, opt):
    expected = model.state_dict()
    if _network_kind(state) != _network_kind(expected):
        return (f'{path} holds {_network_kind(state)}, but --Dataset {opt.Dataset} takes {_network_kind(expected)}: '
                f'the weights belong to another data set')
    held, wanted = _memory_key(state), _memory_key(expected)
    if wanted and not held:
        return f'{path} has no memory ({wanted}): it holds an AE, not a --ModelName {opt.ModelName}'
    if held and not wanted:
        return f'{path} holds a memory model (MemAE), not a --ModelName {opt.ModelName}'
    if held and state[held].shape[0] != expected[wanted].shape[0]:
        return (f'{path} has {state[held].shape[0]} memory slots, but --MemDim is {opt.MemDim}: '
                f'pass --MemDim {state[held].shape[0]}')
    if held and state[held].shape != expected[wanted].shape:
        return (f'{path} has memory slots of {state[held].shape[1]} features, but this network\'s encoder '
                f'gives {expected[wanted].shape[1]} (another --MemQuery, --Dataset or data shape?)')
    first_conv = 'encoder.0.weight'
    if first_conv in state and state[first_conv].shape[1] != expected[first_conv].shape[1]:
        return (f'{path} takes {state[first_conv].shape[1]}-channel frames, but --ImgChnNum is {opt.ImgChnNum}')
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    return (f'{path} does not fit --ModelName {opt.ModelName}: missing keys {missing[:5]}, unexpected keys '
            f'{unexpected[:5]}, wrong shapes {wrong[:5]}')


def _fits(state, expected):
    return set(state) == set(expected) and all(state[k].shape == expected[k].shape for k in expected)


def _unusable_tensor(path, state, expected):
    """Why ``state`` (keys and shapes that fit ``expected``) must not be loaded, or None: a tensor of integers
    (or booleans) where the model has floating-point weights would be cast without a word and change every score,
    and a NaN or infinite weight makes every score meaningless."""
    for key, wanted in expected.items():
        held = state[key]
        if wanted.is_floating_point() and not held.is_floating_point():
            return (f'{path}: tensor {key} holds {str(held.dtype).removeprefix("torch.")} values, not floating-point '
                    f'weights; the file is damaged or was converted wrongly')
        if held.is_floating_point() and not torch.isfinite(held).all():
            bad = int((~torch.isfinite(held)).sum())
            return (f'{path}: tensor {key} holds {bad} non-finite value(s) (NaN or Inf); the weights come from a '
                    f'diverged training or a damaged file')
    return None


def load_weights(model, path, opt):
    """Load ``path`` into ``model`` strictly; a mismatch is one sentence naming the flag at fault, and weights of
    another type than floating point, or not finite, are refused naming the first such tensor."""
    state = read_state_dict(path)
    _fill_legacy_batchnorm(state, model)
    expected = model.state_dict()
    if not _fits(state, expected):
        raise CheckpointError(_mismatch_message(path, state, model, opt))
    problem = _unusable_tensor(path, state, expected)
    if problem:
        raise CheckpointError(problem)
    model.load_state_dict(state, strict=True)
    return model


def resume_file(model_dir, setting):
    return Path(model_dir) / f'{setting}_resume.pt'


# The options a video training state must share with the run that resumes it, beyond its run name (which names the
# data set, the model and its memory): they change what each step does. --EpochNum may grow (train on); the speed
# options (--AMP, --IsDeter, --Compile, ...) change rounding only, and the output options nothing trained.
VIDEO_RESUME_SIGNATURE = ('LR', 'BatchSize', 'LossScaling', 'FrameNum', 'ImgChnNum')


def video_resume_signature(opt):
    return {name: getattr(opt, name) for name in VIDEO_RESUME_SIGNATURE}


def save_training_state(path, model, optimizer, epochs_done, iteration, rng, setting, signature=None):
    save_torch({'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'epochs_done': epochs_done,
                 'iteration': iteration, 'rng': rng, 'setting': setting, 'signature': signature}, path)


def resolve_resume(resume, model_dir, setting):
    """The training-state file ``--Resume`` names: a path, or ``auto`` for the run's own (None if it has none
    yet, so that ``--Resume auto`` can be passed to every start of a job)."""
    if resume is None:
        return None
    if resume == 'auto':
        path = resume_file(model_dir, setting)
        return path if path.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f'--Resume {resume} does not exist; pass a {setting}_resume.pt file or auto')
    return path


def restore_training(path, state, model, optimizer, loader_generator):
    """Load a training state's model, optimizer and random states (checked like :func:`load_weights`); a state
    whose parts do not fit the run is one sentence naming the file."""
    weights, expected = state['model'], model.state_dict()
    if not isinstance(weights, dict) or not all(torch.is_tensor(v) for v in weights.values()) \
            or not _fits(weights, expected):
        raise CheckpointError(f'{path}: the model in this training state does not fit the run (damaged, or '
                              f'written by another version); delete it and start afresh')
    problem = _unusable_tensor(path, weights, expected)
    if problem:
        raise CheckpointError(problem)
    try:
        model.load_state_dict(weights)
        optimizer.load_state_dict(state['optimizer'])
        set_rng_state(state['rng'], loader_generator)
    # what torch's and NumPy's loaders raise for parts they reject
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f'{path}: its optimizer or random states are damaged ({type(error).__name__}); '
                              f'delete it and start afresh') from None


def load_training_state(path, setting, signature=None):
    """The dict :func:`save_training_state` wrote, checked to belong to the run ``setting`` and, where both have
    one, to have been trained with the options of ``signature``."""
    state = load_tensors_file(path, 'training state (--Resume)')
    if not isinstance(state, dict) or not {'model', 'optimizer', 'epochs_done', 'rng'} <= set(state):
        raise CheckpointError(f'--Resume {path} is not a training state (plain weights cannot be resumed: they '
                              f'lack the optimizer and random states)')
    if state.get('setting') != setting:
        raise CheckpointError(f"--Resume {path} belongs to the run {state.get('setting')}, not to {setting}: the "
                              f'options differ')
    saved = state.get('signature')
    if signature is not None and isinstance(saved, dict):
        differing = [f'{name} {saved.get(name)!r}, now {value!r}' for name, value in signature.items()
                     if saved.get(name) != value]
        if differing:
            raise CheckpointError(f"--Resume {path} was trained with {'; '.join(differing)}: give the options it was "
                                  f'trained with, or start afresh without --Resume')
    return state


def load_model(opt, device):
    """The model the options describe, with its weights (:func:`find_weights`), in eval mode; and the weights'
    path."""
    model = build_model(opt)
    weights = find_weights(opt)
    load_weights(model, weights, opt)
    return model.to(device).eval(), weights
