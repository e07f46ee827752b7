"""Tiny synthetic data sets in the layouts the project reads, written inside the tests.

Frames show a bright square walking across a dark background; in anomalous frames a second, larger square
appears, and the pixel masks mark it.
"""
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

FRAME_SIZE = (24, 36)  # H x W of source frames; preparation resizes them


def frame_and_mask(t, anomalous, size=FRAME_SIZE, seed=0):
    h, w = size
    rng = np.random.default_rng(seed * 1000 + t)
    frame = rng.integers(0, 30, size=(h, w)).astype(np.uint8)
    x = (2 * t) % (w - 6)
    frame[8:14, x:x + 6] = 200
    mask = np.zeros((h, w), dtype=np.uint8)
    if anomalous:
        frame[2:12, w - 12:w - 2] = 255
        mask[2:12, w - 12:w - 2] = 255
    return frame, mask


def anomaly_ranges(num_test, num_frames):
    """One 1-based inclusive anomaly range per test video (video 2 ends anomalous)."""
    return [(num_frames // 2, num_frames) if k % 2 else (3, num_frames // 2) for k in range(num_test)]


def make_ucsd_original(root, num_train=2, num_test=2, num_frames=20, frame_prefix_videos=(2,)):
    """``UCSDped2/{Train,Test}`` of the original release: .tif frames, .bmp masks, ``UCSDped2.m``. Mask folders of
    the test videos numbered in ``frame_prefix_videos`` name their files ``frameNNN.bmp``."""
    src = Path(root) / 'UCSDped2'
    ranges = anomaly_ranges(num_test, num_frames)
    for k in range(1, num_train + 1):
        folder = src / 'Train' / f'Train{k:03d}'
        folder.mkdir(parents=True)
        for t in range(1, num_frames + 1):
            Image.fromarray(frame_and_mask(t, False, seed=k)[0]).save(folder / f'{t:03d}.tif')
    lines = ['TestVideoFile = {};']
    for k in range(1, num_test + 1):
        folder = src / 'Test' / f'Test{k:03d}'
        gt_folder = src / 'Test' / f'Test{k:03d}_gt'
        folder.mkdir(parents=True)
        gt_folder.mkdir()
        start, end = ranges[k - 1]
        for t in range(1, num_frames + 1):
            frame, mask = frame_and_mask(t, start <= t <= end, seed=100 + k)
            Image.fromarray(frame).save(folder / f'{t:03d}.tif')
            mask_name = f'frame{t:03d}.bmp' if k in frame_prefix_videos else f'{t:03d}.bmp'
            Image.fromarray(mask).save(gt_folder / mask_name)
        lines.append(f'TestVideoFile{{end+1}}.gt_frame = [{start}:{end}];')
    (src / 'Test' / 'UCSDped2.m').write_text('\n'.join(lines) + '\n')
    return src


def make_jpeg_redistribution(root, num_train=2, num_test=2, num_frames=20):
    """``ped2/{training,testing}/frames/NN/NNN.jpg`` (0-based, RGB) and ``ped2.mat`` with the ``gt`` cell."""
    src = Path(root) / 'ped2'
    ranges = anomaly_ranges(num_test, num_frames)
    for split, count, seed0 in (('training', num_train, 0), ('testing', num_test, 100)):
        for k in range(1, count + 1):
            folder = src / split / 'frames' / f'{k:02d}'
            folder.mkdir(parents=True)
            start, end = ranges[k - 1] if split == 'testing' else (0, -1)
            for t in range(1, num_frames + 1):
                frame = frame_and_mask(t, start <= t <= end, seed=seed0 + k)[0]
                Image.fromarray(np.repeat(frame[:, :, None], 3, axis=2)).save(folder / f'{t - 1:03d}.jpg', quality=95)
    cells = np.empty((1, num_test), dtype=object)
    for k, (start, end) in enumerate(ranges):
        cells[0, k] = np.array([[start], [end]], dtype=np.uint8)
    sio.savemat(str(src / 'ped2.mat'), {'gt': cells})
    return src, ranges
