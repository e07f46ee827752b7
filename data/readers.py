"""Readers and writers of the prepared-data files: clip index ``.mat``, ground-truth ``.mat`` and frames.

File formats (those of the released MATLAB scripts):

* index file ``<Video>_iNNN.mat``: ``v_name`` (char, the video folder's name) and ``idx`` (1 x clip_len double,
  1-based frame numbers);
* ground-truth file ``<Video>.mat``: ``l`` (1 x num_frames double, 1 = anomalous frame);
* frames ``NNN.jpg``, 1-based, zero-padded to 3 digits (more for videos of 1000 frames or more).

Every reader raises :class:`DataFormatError` with one sentence that names the file at fault.
"""
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from utils.errors import InputError

FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')


class DataFormatError(InputError):
    """A data file is missing, unreadable or holds something other than what its format says."""


def _load_mat(path, variables):
    path = Path(path)
    try:
        content = sio.loadmat(str(path), variable_names=list(variables))
    except FileNotFoundError:
        raise DataFormatError(f'{path} does not exist') from None
    except Exception as error:  # scipy raises many types for bad bytes; all mean the same to the user
        raise DataFormatError(f'{path} is not a readable MATLAB .mat file ({type(error).__name__}: {error})') from None
    missing = [name for name in variables if name not in content]
    if missing:
        raise DataFormatError(f"{path} lacks the variable(s) {', '.join(missing)}")
    return content


def _as_integers(values, path, variable):
    values = np.asarray(values)
    if values.dtype.kind not in 'uifb' or values.size == 0:
        raise DataFormatError(f'{path}: variable {variable} must be a non-empty numeric array')
    values = values.astype(np.float64).ravel()
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise DataFormatError(f'{path}: variable {variable} must hold whole numbers')
    return values.astype(np.int64)


def read_index(path):
    """(video name, 1-based frame numbers) of one clip index file."""
    content = _load_mat(path, ('v_name', 'idx'))
    v_name = content['v_name']
    if v_name.dtype.kind != 'U' or v_name.size != 1:
        raise DataFormatError(f'{path}: variable v_name must be a character string')
    frames = _as_integers(content['idx'], path, 'idx')
    if frames.min() < 1:
        raise DataFormatError(f'{path}: frame numbers in idx are 1-based, found {frames.min()}')
    return str(v_name[0]), frames


def read_ground_truth(path):
    """Frame labels (0/1, int64) of one test video."""
    labels = _as_integers(_load_mat(path, ('l',))['l'], path, 'l')
    if not np.isin(labels, (0, 1)).all():
        raise DataFormatError(f'{path}: variable l must hold only 0 and 1')
    return labels


def write_index(path, v_name, frames):
    sio.savemat(str(path), {'v_name': v_name, 'idx': np.asarray(frames, dtype=np.float64)[None, :]})


def write_ground_truth(path, labels):
    sio.savemat(str(path), {'l': np.asarray(labels, dtype=np.float64)[None, :]})


def frame_files(folder):
    """{frame number: path} of the image files in a folder whose names are numbers (any zero-padding)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f'frame folder {folder} does not exist')
    return {int(p.stem): p for p in folder.iterdir()
            if p.suffix.lower() in FRAME_SUFFIXES and p.stem.isdigit()}


def load_frame(path, channels=1):
    """A frame as uint8 H x W x C (C = 1: grayscale, 3: RGB), converted if it is stored otherwise."""
    try:
        with Image.open(path) as image:
            image = image.convert('L' if channels == 1 else 'RGB')
            array = np.array(image)  # a writable copy: torch.from_numpy warns on read-only arrays
    except FileNotFoundError:
        raise DataFormatError(f'frame {path} does not exist') from None
    except Exception as error:  # PIL's errors for truncated or foreign bytes vary
        raise DataFormatError(f'frame {path} is not a readable image ({type(error).__name__}: {error})') from None
    return array[:, :, None] if array.ndim == 2 else array
