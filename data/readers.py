"""Readers and writers of the prepared-data files: clip index ``.mat``, ground-truth ``.mat`` and frames.

File formats (those of the released MATLAB scripts):

* index file ``<Video>_iNNN.mat``: ``v_name`` (char, the video folder's name) and ``idx`` (1 x clip_len double,
  1-based frame numbers);
* ground-truth file ``<Video>.mat``: ``l`` (1 x num_frames double, 1 = anomalous frame);
* frames ``NNN.jpg``, 1-based, zero-padded to 3 digits (more for videos of 1000 frames or more).

Every reader raises :class:`DataFormatError` with one sentence that names the file at fault.
"""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from utils.errors import InputError
from utils.files import save_mat

FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')


class DataFormatError(InputError):
    """A data file is missing, unreadable or holds something other than what its format says."""


def is_hidden(path):
    """Files and folders whose names start with a dot (``.DS_Store``, macOS's ``._<name>`` copies, editors' and
    notebooks' folders) are never data: every listing of data files skips them."""
    return Path(path).name.startswith('.')


# MAT-file v5/v7 ("MAT-File Format", MathWorks): data element types and their item sizes (miUTF8: variable)
MI_ITEM_SIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: None, 17: 2, 18: 4}
MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 14, 15
CHAR_CLASS, NUMERIC_CLASSES = 4, range(6, 16)  # mxCHAR; mxDOUBLE ... mxUINT64
COMPLEX_FLAG = 0x0800
MAT_HEADER = 128
MAX_ELEMENTS = 10 ** 8


def _tag(data, position, end, order):
    """(type, size, first data byte, next element) of the data element at ``position``."""
    if end - position < 8:
        raise ValueError(f'truncated data element tag at byte {position}')
    word, size = struct.unpack_from(order + 'II', data, position)
    if word >> 16:  # small data element: type and size share the first word, data in the next 4 bytes
        kind, size = word & 0xFFFF, word >> 16
        if size > 4:
            raise ValueError(f'small data element of {size} bytes at byte {position}')
        return kind, size, position + 4, position + 8
    if position + 8 + size > end:
        raise ValueError(f'data element of {size} bytes at byte {position} runs past its end')
    padding = -size % 8 if word != MI_COMPRESSED else 0
    return word, size, position + 8, position + 8 + size + padding


def _check_matrix(data, start, end, order):
    """A plain variable: a real numeric or character array whose data has exactly the size its dimensions say."""
    elements = []
    position = start
    while position < end:
        kind, size, first, position = _tag(data, position, end, order)
        elements.append((kind, size, first))
    if len(elements) != 4:
        raise ValueError(f'a variable of {len(elements)} parts, not a plain array (flags, dimensions, name, data)')
    (flags_kind, flags_size, flags_at), (dims_kind, dims_size, dims_at), (name_kind, _, _), (kind, size, _) = elements
    if flags_kind != MI_UINT32 or flags_size != 8 or dims_kind != MI_INT32 or dims_size % 4 or dims_size < 8 \
            or name_kind != MI_INT8:
        raise ValueError('a variable whose header is not flags, dimensions and name')
    flags = struct.unpack_from(order + 'I', data, flags_at)[0]
    array_class = flags & 0xFF
    if flags & COMPLEX_FLAG or array_class not in (CHAR_CLASS, *NUMERIC_CLASSES):
        raise ValueError(f'a variable of class {array_class}{" (complex)" if flags & COMPLEX_FLAG else ""}, not a '
                         f'real numeric or character array')
    dims = struct.unpack_from(order + f'{dims_size // 4}i', data, dims_at)
    count = int(np.prod([max(d, 0) for d in dims], dtype=np.float64))
    if min(dims) < 0 or count > MAX_ELEMENTS or kind not in MI_ITEM_SIZE:
        raise ValueError(f'a variable of dimensions {dims} stored as type {kind}')
    item = MI_ITEM_SIZE[kind]
    if (item is None and size < count) or (item is not None and size != count * item):
        raise ValueError(f'a variable of dimensions {dims} with {size} bytes of data')


def _check_mat_structure(data):
    """Refuse what scipy's MAT reader may crash on. Fuzzing found corrupt element tags and array flags that kill
    the process inside scipy (a segmentation fault, not an exception), so only v5/v7 files whose every variable
    is a plain real numeric or character array with consistent sizes, as index and ground-truth files are, get
    to scipy."""
    if len(data) < MAT_HEADER:
        raise ValueError('shorter than a MAT-file header')
    order = {b'IM': '<', b'MI': '>'}.get(data[126:128])
    if order is None or struct.unpack_from(order + 'H', data, 124)[0] != 0x0100:
        raise ValueError("not a MATLAB v5/v7 MAT-file (the format of MATLAB's save and of data.prepare_video)")
    position = MAT_HEADER
    while position < len(data):
        kind, size, first, position = _tag(data, position, len(data), order)
        if kind == MI_COMPRESSED:
            inner = zlib.decompress(data[first:first + size])
            kind, size, first, _ = _tag(inner, 0, len(inner), order)
            if kind == MI_MATRIX:
                _check_matrix(inner, first, first + size, order)
                continue
        elif kind == MI_MATRIX:
            _check_matrix(data, first, first + size, order)
            continue
        raise ValueError(f'a top-level data element of type {kind}, not a variable')


def _load_mat(path, variables):
    path = Path(path)
    try:
        data = path.read_bytes()
        _check_mat_structure(data)
        content = sio.loadmat(io.BytesIO(data), variable_names=list(variables))  # the bytes checked, read once
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
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)) or np.any(np.abs(values) > 2 ** 53):
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
    save_mat(path, {'v_name': v_name, 'idx': np.asarray(frames, dtype=np.float64)[None, :]})


def write_ground_truth(path, labels):
    save_mat(path, {'l': np.asarray(labels, dtype=np.float64)[None, :]})


def frame_files(folder):
    """{frame number: path} of the image files in a folder whose names are numbers (any zero-padding)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f'frame folder {folder} does not exist')
    return {int(p.stem): p for p in folder.iterdir()
            if p.suffix.lower() in FRAME_SUFFIXES and p.stem.isdigit() and not is_hidden(p)}


def load_frame(path, channels=1):
    """A frame as uint8 H x W x C (C = 1: grayscale, 3: RGB), converted if it is stored otherwise."""
    return load_image(path, 'L' if channels == 1 else 'RGB', 'frame')


GRAYSCALE_MODES = ('L', 'I', 'I;16')  # PIL modes of images stored with one channel


def load_image(path, mode=None, what='image'):
    """An image file as a uint8 H x W x C array in PIL ``mode`` ('L' or 'RGB'; None: 'L' for an image stored as
    grayscale, else 'RGB'); a missing or unreadable file is one sentence naming it (``what`` says what it is)."""
    try:
        with Image.open(path) as image:
            image = image.convert(mode or ('L' if image.mode in GRAYSCALE_MODES else 'RGB'))
            array = np.array(image)  # a writable copy: torch.from_numpy warns on read-only arrays
    except FileNotFoundError:
        raise DataFormatError(f'{what} {path} does not exist') from None
    except Exception as error:  # PIL's errors for truncated or foreign bytes vary
        raise DataFormatError(f'{what} {path} is not a readable image ({type(error).__name__})') from None
    return array[:, :, None] if array.ndim == 2 else array
