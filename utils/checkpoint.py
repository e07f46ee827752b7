"""Finding and loading model weights (the authors' released files, our training outputs, or any state dict),
writing files atomically, and the full training state that ``--Resume`` restores.

Accepted files: plain state dicts saved by PyTorch 0.4 (legacy, non-zip pickle; no ``num_batches_tracked``) or
later, and dicts that wrap one under ``model``/``state_dict``/``model_state_dict``; a ``module.`` prefix left by
DataParallel is removed. Files are read with ``weights_only=True`` (no arbitrary pickle) onto the CPU, so
weights saved on a GPU load anywhere.

Training state (``<ModelRoot>/model_<setting>/<setting>_resume.pt``, rewritten after every epoch): the model, the
optimizer, the epochs and iterations done, every random state (utils/runtime.rng_state) and the run name. It is
separate from the plain weight files, which stay what ``script_testing.py`` and the release use.
"""
import os
import re
from pathlib import Path

import torch

from utils.errors import InputError

WRAPPER_KEYS = ('model', 'state_dict', 'model_state_dict')


class CheckpointError(InputError):
    """The weights are missing, unreadable or do not fit the model the options describe."""


def released_file_name(setting):
    """The authors' weight file name for a run name: the run name without its ``_Seed{n}`` field, plus ``.pt``."""
    return re.sub(r'_Seed\d+', '', setting, count=1) + '.pt'


def candidate_paths(opt):
    """Where ``script_testing.py`` looks for weights, in order: ``--ModelFilePath``; ``<ModelRoot>/<setting>.pt``;
    the released file name, which lacks the ``_Seed{n}`` field; the newest final weights that
    ``script_training.py`` wrote under ``<ModelRoot>/model_<setting>/``."""
    if opt.ModelFilePath:
        return [Path(opt.ModelFilePath)]
    root = Path(opt.ModelRoot)
    paths = [root / f'{opt.setting}.pt', root / released_file_name(opt.setting)]
    paths += sorted((root / f'model_{opt.setting}').glob(f'{opt.setting}_epoch_*_final.pt'), reverse=True)
    return list(dict.fromkeys(paths))


def first_existing(paths, missing, hint):
    """The first of ``paths`` that is a file; else an error: ``missing``, every path tried, then ``hint``."""
    for path in paths:
        if path.is_file():
            return path
    raise CheckpointError(f"{missing}; tried: {', '.join(str(p) for p in paths)} ({hint})")


def find_weights(opt):
    if opt.ModelFilePath:
        hint = 'check --ModelFilePath'
    else:
        hint = (f'put the weights file there as {Path(opt.ModelRoot) / released_file_name(opt.setting)}: the '
                "authors' UCSD Ped2 weights are downloaded from the link in the README of "
                'github.com/donggong1/memae-anomaly-detection, see memae_models/README.md; or train them with '
                'bash train.sh and test with MODEL_ROOT=./results/; or set --ModelFilePath')
    return first_existing(candidate_paths(opt), 'no model weights found', hint)


def read_state_dict(path):
    """The state dict stored in ``path``, unwrapped and without a DataParallel prefix."""
    try:
        content = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # truncated files, foreign pickles and wrong formats all end here
        raise CheckpointError(f'{path} is not a readable PyTorch weights file ({type(error).__name__}: {error})') \
            from None
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


def _mismatch_message(path, state, model, opt):
    expected = model.state_dict()
    memory_key = 'mem_rep.memory.weight'
    if memory_key in expected and memory_key not in state:
        return f'{path} has no memory ({memory_key}): it holds an AE, not a --ModelName {opt.ModelName}'
    if memory_key in state and memory_key not in expected:
        return f'{path} holds a memory model (MemAE), not a --ModelName {opt.ModelName}'
    if memory_key in state and state[memory_key].shape != expected[memory_key].shape:
        return (f'{path} has {state[memory_key].shape[0]} memory slots, but --MemDim is {opt.MemDim}: '
                f'pass --MemDim {state[memory_key].shape[0]}')
    first_conv = 'encoder.0.weight'
    if first_conv in state and state[first_conv].shape[1] != expected[first_conv].shape[1]:
        return (f'{path} takes {state[first_conv].shape[1]}-channel frames, but --ImgChnNum is {opt.ImgChnNum}')
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    return (f'{path} does not fit --ModelName {opt.ModelName}: missing keys {missing[:5]}, unexpected keys '
            f'{unexpected[:5]}, wrong shapes {wrong[:5]}')


def load_weights(model, path, opt):
    """Load ``path`` into ``model`` strictly; a mismatch is one sentence naming the flag at fault."""
    state = read_state_dict(path)
    _fill_legacy_batchnorm(state, model)
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise CheckpointError(_mismatch_message(path, state, model, opt))
    model.load_state_dict(state, strict=True)
    return model


def atomic_save(obj, path):
    """``torch.save`` to a temporary file beside ``path``, then rename it: a crash mid-write leaves the previous
    file intact instead of a truncated one."""
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.tmp')
    torch.save(obj, temporary)
    os.replace(temporary, path)


def resume_file(model_dir, setting):
    return Path(model_dir) / f'{setting}_resume.pt'


def save_training_state(path, model, optimizer, epochs_done, iteration, rng, setting):
    atomic_save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'epochs_done': epochs_done,
                 'iteration': iteration, 'rng': rng, 'setting': setting}, path)


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


def load_training_state(path, setting):
    """The dict :func:`save_training_state` wrote, checked to belong to the run ``setting``."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:
        raise CheckpointError(f'--Resume {path} is not a readable training state ({type(error).__name__}: '
                              f'{error})') from None
    if not isinstance(state, dict) or not {'model', 'optimizer', 'epochs_done', 'rng'} <= set(state):
        raise CheckpointError(f'--Resume {path} is not a training state (plain weights cannot be resumed: they '
                              f'lack the optimizer and random states)')
    if state.get('setting') != setting:
        raise CheckpointError(f"--Resume {path} belongs to the run {state.get('setting')}, not to {setting}: the "
                              f'options differ')
    return state
