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


def make_ucsd_original(root, num_train=2, num_test=2, num_frames=20, frame_prefix_videos=(2,), name='UCSDped2',
                       mask_videos=None):
    """``UCSDped2/{Train,Test}`` of the original release: .tif frames, .bmp masks, ``UCSDped2.m``. Mask folders of
    the test videos numbered in ``frame_prefix_videos`` name their files ``frameNNN.bmp``; only the test videos
    numbered in ``mask_videos`` have masks (None: all, as Ped2; Ped1 has them for some)."""
    src = Path(root) / name
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
        has_masks = mask_videos is None or k in mask_videos
        if has_masks:
            gt_folder.mkdir()
        start, end = ranges[k - 1]
        for t in range(1, num_frames + 1):
            frame, mask = frame_and_mask(t, start <= t <= end, seed=100 + k)
            Image.fromarray(frame).save(folder / f'{t:03d}.tif')
            mask_name = f'frame{t:03d}.bmp' if k in frame_prefix_videos else f'{t:03d}.bmp'
            if has_masks:
                Image.fromarray(mask).save(gt_folder / mask_name)
        lines.append(f'TestVideoFile{{end+1}}.gt_frame = [{start}:{end}];')
    (src / 'Test' / f'{name}.m').write_text('\n'.join(lines) + '\n')
    return src


def write_movie(path, frames, rate=25):
    """A video file (MPEG-4 in AVI) of grayscale uint8 frames, written with PyAV."""
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('mpeg4', rate=rate)
        stream.height, stream.width = frames[0].shape
        stream.pix_fmt = 'yuv420p'
        for frame in frames:
            rgb = np.repeat(frame[:, :, None], 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def video_frames(num_frames, seed, anomalous=lambda t: False):
    """Frames (and masks) of one synthetic video; frame t (1-based) is anomalous when ``anomalous(t)``."""
    pairs = [frame_and_mask(t, anomalous(t), seed=seed) for t in range(1, num_frames + 1)]
    return [f for f, _ in pairs], [m for _, m in pairs]


def make_avenue_official(root, num_train=2, num_test=2, num_frames=20):
    """CUHK Avenue as released: ``training_videos/NN.avi``, ``testing_videos/NN.avi`` and
    ``ground_truth_demo/testing_label_mask/N_label.mat`` (``volLabel``: a 1 x frames cell of masks)."""
    src = Path(root) / 'Avenue Dataset'
    ranges = anomaly_ranges(num_test, num_frames)
    for k in range(1, num_train + 1):
        write_movie(src / 'training_videos' / f'{k:02d}.avi', video_frames(num_frames, k)[0])
    (src / 'ground_truth_demo' / 'testing_label_mask').mkdir(parents=True)
    for k, (start, end) in enumerate(ranges, start=1):
        frames, masks = video_frames(num_frames, 100 + k, lambda t: start <= t <= end)
        write_movie(src / 'testing_videos' / f'{k:02d}.avi', frames)
        cells = np.empty((1, num_frames), dtype=object)
        for t, mask in enumerate(masks):
            cells[0, t] = (mask > 0).astype(np.uint8)
        sio.savemat(str(src / 'ground_truth_demo' / 'testing_label_mask' / f'{k}_label.mat'), {'volLabel': cells})
    return src, ranges


def make_shanghaitech(root, num_train=2, num_test=2, num_frames=20):
    """ShanghaiTech Campus: ``training/videos/NN_NNN.avi``, ``testing/frames/NN_NNNN/NNN.jpg`` (0-based) and
    ``testing/test_frame_mask/NN_NNNN.npy``."""
    src = Path(root) / 'shanghaitech'
    ranges = anomaly_ranges(num_test, num_frames)
    for k in range(1, num_train + 1):
        write_movie(src / 'training' / 'videos' / f'01_{k:03d}.avi', video_frames(num_frames, k)[0])
    (src / 'testing' / 'test_frame_mask').mkdir(parents=True)
    for k, (start, end) in enumerate(ranges, start=1):
        name = f'01_{k:04d}'
        folder = src / 'testing' / 'frames' / name
        folder.mkdir(parents=True)
        frames, _ = video_frames(num_frames, 100 + k, lambda t: start <= t <= end)
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f'{t:03d}.jpg', quality=95)
        labels = np.array([start <= t <= end for t in range(1, num_frames + 1)], dtype=np.int8)
        np.save(src / 'testing' / 'test_frame_mask' / f'{name}.npy', labels)
    return src, ranges


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


def write_idx(path, array):
    """An unsigned-byte IDX file (the MNIST format); gzip-compressed when the name ends in .gz."""
    import gzip
    header = bytes([0, 0, 0x08, array.ndim]) + b''.join(int(n).to_bytes(4, 'big') for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if str(path).endswith('.gz') else open
    with opener(path, 'wb') as f:
        f.write(data)


def digit_images(labels, size=28, seed=0):
    """Images whose class is drawn as a bar at a class-specific position, plus a little noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 20, size=(len(labels), size, size)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 2 + 2 * int(label)
        images[i, row:row + 3, 4:size - 4] = 230
    return images


def make_mnist(root, per_class_train=12, per_class_test=6, folder='MNIST/raw', compressed=True):
    """The four MNIST IDX files with 10 classes of synthetic 28 x 28 images; ``per_class_train``: the training
    images of every class, or of each (a list of 10)."""
    folder = Path(root) / folder
    folder.mkdir(parents=True)
    suffix = '.gz' if compressed else ''
    for split, count, seed in (('train', per_class_train, 1), ('t10k', per_class_test, 2)):
        labels = np.repeat(np.arange(10), count).astype(np.uint8)
        write_idx(folder / f'{split}-images-idx3-ubyte{suffix}', digit_images(labels, seed=seed))
        write_idx(folder / f'{split}-labels-idx1-ubyte{suffix}', labels)
    return folder


def make_image_folder(folder, classes=('cat', 'dog', 'ship'), per_class=9, size=32):
    """``<folder>/<class>/*.png`` colour images."""
    for k, name in enumerate(classes):
        (Path(folder) / name).mkdir(parents=True)
        images = digit_images(np.full(per_class, k), size=size, seed=k)
        for i, image in enumerate(images):
            Image.fromarray(np.repeat(image[:, :, None], 3, axis=2)).save(Path(folder) / name / f'{name}_{i:03d}.png')


SERVICES = ('http', 'smtp', 'ftp', 'private')
FLAGS = ('SF', 'S0', 'REJ')


def kdd_rows(num_rows, anomaly_fraction=0.2, seed=0):
    """KDDCUP99-like records: 41 features and a label; 'normal.' records (the anomalies) differ in their bytes."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num_rows):
        normal = rng.random() < anomaly_fraction
        numeric = rng.random(38) * (5 if normal else 1)
        fields = [f'{numeric[0]:.2f}', ('tcp', 'udp', 'icmp')[i % 3], SERVICES[i % len(SERVICES)], FLAGS[i % 3]]
        fields += [f'{v:.2f}' for v in numeric[1:]]
        fields.append('normal.' if normal else ('smurf.', 'neptune.')[i % 2])
        rows.append(','.join(fields))
    return rows


def make_kdd(root, num_rows=400, folder='KDDCUP99', name='kddcup.data_10_percent.gz', seed=0):
    import gzip
    path = Path(root) / folder / name
    path.parent.mkdir(parents=True)
    text = '\n'.join(kdd_rows(num_rows, seed=seed)) + '\n'
    if name.endswith('.gz'):
        with gzip.open(path, 'wt') as f:
            f.write(text)
    else:
        path.write_text(text)
    return path
