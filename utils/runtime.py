"""Run-time set-up shared by the scripts: seeding, determinism and the device."""
import os
import random
import sys
from contextlib import nullcontext

import numpy as np
import torch

AMP_CHOICES = ('none', 'tf32', 'bf16')


def seed_everything(seed):
    """Seed Python, NumPy and PyTorch (all devices), as the released ``utils.seed`` did."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_deterministic(is_deter):
    """``--IsDeter``: deterministic cuDNN kernels and no benchmark-driven algorithm choice, as released."""
    torch.backends.cudnn.deterministic = bool(is_deter)
    torch.backends.cudnn.benchmark = not is_deter


CUDA_NOTED = 'MEMAE_CUDA_NOTED'  # set by a command that already said so (test.sh's demo, for its testing step)


def select_device(use_cuda):
    """CUDA when asked for and present; otherwise the CPU, with one plain line on stderr if CUDA was asked for
    (a Python warning would add a line of our source code to it), once per command: not again in a later step of
    a command that set ``MEMAE_CUDA_NOTED``."""
    if use_cuda and not torch.cuda.is_available():
        if not os.environ.get(CUDA_NOTED):
            print('note: --UseCUDA is True but CUDA is not available: running on the CPU', file=sys.stderr)
        return torch.device('cpu')
    return torch.device('cuda' if use_cuda else 'cpu')


def set_precision(amp):
    """``--AMP``: whether CUDA's convolutions and matrix products may use TF32 tensor cores (float32 storage, products
    with a 10-bit mantissa): only for 'tf32'. With 'none' everything is float32 as released: PyTorch would otherwise
    let cuDNN use TF32 for convolutions on Ampere and later GPUs. A CPU computes in float32 either way."""
    torch.backends.cuda.matmul.allow_tf32 = amp == 'tf32'
    torch.backends.cudnn.allow_tf32 = amp == 'tf32'


def autocast(device, amp):
    """``--AMP``: bfloat16 autocast on ``device`` for 'bf16' (no loss scaling needed, unlike float16); float32
    storage otherwise (:func:`set_precision`)."""
    if amp == 'bf16':
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def compile_model(model, enabled):
    """``--Compile``: the model compiled by ``torch.compile``, which shares its parameters; save and load the
    original (the compiled wrapper prefixes every ``state_dict`` key with ``_orig_mod.``)."""
    return torch.compile(model) if enabled else model


def memory_layout(channels_last):
    """``--ChannelsLast``: the memory format for the video model and its clips."""
    return torch.channels_last_3d if channels_last else torch.contiguous_format


def rng_state(loader_generator=None):
    """Every random state a training run draws from (Python, NumPy, PyTorch CPU and CUDA, and the DataLoader's
    generator, which fixes the order of the next epochs), in types ``torch.load(weights_only=True)`` reads."""
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {'python': random.getstate(), 'numpy_keys': torch.from_numpy(keys.astype(np.int64)),
             'numpy_position': int(position), 'numpy_has_gauss': int(has_gauss),
             'numpy_cached_gauss': float(cached_gauss), 'torch': torch.get_rng_state(),
             'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    if loader_generator is not None:
        state['loader'] = loader_generator.get_state()
    return state


def set_rng_state(state, loader_generator=None):
    """Restore what :func:`rng_state` captured."""
    random.setstate(state['python'])
    np.random.set_state(('MT19937', state['numpy_keys'].numpy().astype(np.uint32), state['numpy_position'],
                         state['numpy_has_gauss'], state['numpy_cached_gauss']))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    if loader_generator is not None and 'loader' in state:
        loader_generator.set_state(state['loader'])
