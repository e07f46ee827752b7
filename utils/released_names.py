"""The small helpers the authors' scripts call as ``utils.<name>``, for scripts written against the release.

Our own code does not use them (it has its own modules: data loading, scoring, evaluation); they exist so that
``import utils; utils.vframes2imgs(...)`` in a user's script keeps working. Each does what the released helper of
the same name did, on the same shapes. ``utils/__init__.py`` exports them lazily, with ``eval_video``,
``get_model_setting``, ``seed`` and ``weights_init`` from the modules that own them.
"""
from pathlib import Path

import numpy as np


def mkdir(path):
    """Create ``path`` (and its parents) if it does not exist."""
    Path(path).mkdir(parents=True, exist_ok=True)


def get_subdir_list(path, is_sort=True):
    """Names of the folders in ``path`` (sorted by name when ``is_sort``)."""
    names = [p.name for p in Path(path).iterdir() if p.is_dir()]
    return sorted(names) if is_sort else names


def get_file_list(path, is_sort=True):
    """Names of the files in ``path`` (sorted by name when ``is_sort``)."""
    names = [p.name for p in Path(path).iterdir() if p.is_file()]
    return sorted(names) if is_sort else names


def crop_image(img, s):
    """Remove ``s`` pixels from every side of the last two (H, W) axes of a 3-, 4- or 5-D array; ``s`` <= 0: no
    cropping."""
    if s <= 0:
        return img
    return img[..., s:-s, s:-s]


def tensor2numpy(tensor_in):
    """A tensor's values as a NumPy array on the CPU (no gradient)."""
    return tensor_in.detach().cpu().numpy()


class UnNormalize:
    """The inverse of ``Normalize(mean, std)`` for C x T x H x W or N x C x T x H x W tensors (a copy)."""

    def __init__(self, mean, std):
        self.mean = mean
        self.std = std

    def __call__(self, tensor_in):
        channel_axis = 1 if tensor_in.dim() == 5 else 0
        shape = [1] * tensor_in.dim()
        shape[channel_axis] = -1
        mean = tensor_in.new_tensor(self.mean).reshape(shape)
        std = tensor_in.new_tensor(self.std).reshape(shape)
        return tensor_in * std + mean


def vframes2imgs(frames_in, step=1, batch_idx=0):
    """The frames of sample ``batch_idx`` as a NumPy array: N x F x H x W input gives F x H x W, N x C x T x H x W
    gives T x C x H x W; with ``step`` > 1 every ``step``-th frame from the second on, as released."""
    frames = tensor2numpy(frames_in)[batch_idx]
    if frames.ndim == 4:  # C x T x H x W -> T x C x H x W
        frames = np.transpose(frames, (1, 0, 2, 3))
    return frames if step == 1 else frames[1::step]


def btv2btf(frames_in):
    """N x C x T x H x W tensor -> N x T x C x H x W NumPy array (other shapes are returned as arrays as they are)."""
    frames = tensor2numpy(frames_in)
    return np.transpose(frames, (0, 2, 1, 3, 4)) if frames.ndim == 5 else frames
