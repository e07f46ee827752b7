"""Fuzzing the readers of untrusted data files: whatever the bytes, a reader returns well-formed values or raises
DataFormatError (one sentence naming the file), never anything else."""
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from data.readers import DataFormatError, load_frame, read_ground_truth, read_index, write_ground_truth, write_index

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def valid_bytes(write, *args):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'f.mat'
        write(path, *args)
        return path.read_bytes()


VALID_INDEX = valid_bytes(write_index, 'Test001', np.arange(1, 17))
VALID_GT = valid_bytes(write_ground_truth, np.r_[np.zeros(10), np.ones(6)])
# MATLAB's own default (v7) compresses every variable
VALID_COMPRESSED_INDEX = valid_bytes(lambda path: sio.savemat(str(path), {
    'v_name': 'Test001', 'idx': np.arange(1.0, 17.0)[None]}, do_compression=True))


def png_bytes():
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, format='PNG')
    return buffer.getvalue()


def jpeg_bytes():
    buffer = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(buffer, format='JPEG')
    return buffer.getvalue()


def read_bytes(reader, data, name='f.mat'):
    """Run ``reader`` on a file holding ``data``; return its result, or None if it raised DataFormatError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            return reader(path)
        except DataFormatError as error:
            assert str(path) in str(error) and '\n' not in str(error)
            return None


def damaged(valid):
    """Random bytes, a truncated valid file, or a valid file with bytes overwritten."""
    return st.one_of(
        st.binary(max_size=400),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.tuples(st.integers(0, len(valid) - 1), st.binary(min_size=1, max_size=16)).map(
            lambda t: valid[:t[0]] + t[1] + valid[t[0] + len(t[1]):]),
    )


def check_index(result):
    if result is not None:
        v_name, frames = result
        assert isinstance(v_name, str) and frames.dtype == np.int64 and frames.ndim == 1 and frames.min() >= 1


def check_gt(result):
    if result is not None:
        assert result.dtype == np.int64 and result.ndim == 1 and set(np.unique(result)) <= {0, 1}


def patched(data, offset, patch):
    return data[:offset] + patch + data[offset + len(patch):]


# Files that made scipy.io.loadmat die with a segmentation fault before readers checked the structure first:
# an element tag with an impossible type after the name of idx, and the flags of v_name turned into a complex
# uint8 array (the first variable's flags start at byte 128 + 16).
SCIPY_CRASHES = [patched(VALID_INDEX, VALID_INDEX.index(b'idx') + 3, b'\xa5\x96\xaf\x00'),
                 patched(VALID_INDEX, 144, b'\x09\xfc\xe7')]


@pytest.mark.parametrize('data', SCIPY_CRASHES, ids=['impossible_element_type', 'complex_uint8_flags'])
def test_files_that_crashed_scipy_are_refused_with_one_sentence(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'Test001_i001.mat'
        path.write_bytes(data)
        with pytest.raises(DataFormatError, match='is not a readable MATLAB .mat file'):
            read_index(path)


def test_valid_files_pass_the_structure_check():
    assert read_bytes(read_index, VALID_INDEX)[0] == 'Test001'
    assert read_bytes(read_index, VALID_COMPRESSED_INDEX)[1].tolist() == list(range(1, 17))
    assert read_bytes(read_ground_truth, VALID_GT).sum() == 6


@FUZZ
@given(st.one_of(damaged(VALID_INDEX), damaged(VALID_COMPRESSED_INDEX)))
def test_index_reader_on_damaged_bytes(data):
    check_index(read_bytes(read_index, data))


@FUZZ
@given(damaged(VALID_GT))
def test_ground_truth_reader_on_damaged_bytes(data):
    check_gt(read_bytes(read_ground_truth, data))


ARRAYS = st.one_of(
    hnp.arrays(st.sampled_from([np.float64, np.float32, np.int8, np.uint16, np.int64, np.bool_, np.complex64]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    st.text(max_size=8),
    st.lists(st.text(max_size=3), max_size=3),
)


@FUZZ
@given(st.dictionaries(st.sampled_from(['v_name', 'idx', 'l', 'gt', 'x']), ARRAYS, max_size=3))
def test_readers_on_wrong_variables_shapes_and_dtypes(variables):
    buffer = io.BytesIO()
    try:
        sio.savemat(buffer, variables)
    except Exception:  # scipy cannot write every combination; those are not files a user could have
        return
    check_index(read_bytes(read_index, buffer.getvalue()))
    check_gt(read_bytes(read_ground_truth, buffer.getvalue()))


@FUZZ
@given(st.one_of(damaged(png_bytes()).map(lambda b: (b, 'f.png')), damaged(jpeg_bytes()).map(lambda b: (b, 'f.jpg'))))
def test_frame_reader_on_damaged_images(case):
    data, name = case
    frame = read_bytes(lambda path: load_frame(path, channels=1), data, name)
    if frame is not None:
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 1
