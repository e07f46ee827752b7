"""Run-time set-up shared by the scripts: seeding, determinism and the device."""
import random
import warnings
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed):
    """Seed Python, NumPy and PyTorch (all devices), as the released ``utils.seed`` did."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_deterministic(is_deter):
    """``--IsDeter``: deterministic cuDNN kernels and no benchmark-driven algorithm choice, as released."""
    torch.backends.cudnn.deterministic = bool(is_deter)
    torch.backends.cudnn.benchmark = not is_deter


def select_device(use_cuda):
    """CUDA when asked for and present; otherwise the CPU, with a warning if CUDA was asked for."""
    if use_cuda and not torch.cuda.is_available():
        warnings.warn('--UseCUDA is True but CUDA is not available: running on the CPU', stacklevel=2)
        return torch.device('cpu')
    return torch.device('cuda' if use_cuda else 'cpu')


@contextmanager
def onednn_disabled(disabled):
    """Run the block with PyTorch's native CPU kernels instead of oneDNN's when ``disabled`` (restored after).
    (``torch.backends.mkldnn.flags`` would do it too, but warns about TF32 on every use.)"""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = previous and not disabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous
