"""Prepare a video anomaly-detection data set for MemAE, without MATLAB.

    python -m data.prepare_video --src SRC --dst DST [--size 256 256] [--clip-len 16] [--stride 1]

Does what the authors' MATLAB scripts (``script_img_prep.m``, ``script_index_gen.m``) did: every frame is
converted to grayscale, resized to 256 x 256 (bicubic with antialiasing, like MATLAB's ``imresize``) and
written as JPEG (quality 75, MATLAB's ``imwrite`` default) with 1-based names ``NNN.jpg``; one index file is
written per clip of 16 frames at start stride 1; each test video gets frame labels, from pixel masks (a frame
is anomalous iff its mask has a non-zero pixel) or from frame-range annotations. Where the source has pixel masks,
they are kept too, resized to the frame size (nearest neighbour, so they stay binary), as
``testing_masks/TestNNN/NNN.png`` (0 / 255, the frames' names): the localization evaluation of
``script_testing.py`` reads them, nothing else does. Videos are renamed
``TrainNNN`` / ``TestNNN`` in the order of the source's folder names. The result is the layout that
:mod:`data.layout` describes, plus ``prepare.json`` recording what was done.

Source layouts, detected from SRC:

1. the original UCSD release, ``UCSD_Anomaly_Dataset.v1p2/UCSDped2`` or ``UCSDped1``: ``Train/TrainNNN/*.tif``,
   ``Test/TestNNN/*.tif``, pixel masks ``Test/TestNNN_gt/*.bmp`` where they exist and the frame ranges of
   ``Test/UCSDped2.m`` (``UCSDped1.m``: Ped1 has masks for only some test videos, so its labels come from the
   ranges);
2. the JPEG re-distribution of Liu et al. (CVPR 2018), for Ped1, Ped2 and Avenue: ``training/frames/NN/NNN.jpg``
   (0-based names), ``testing/frames/NN/NNN.jpg`` and ``<name>.mat`` whose variable ``gt`` is a 1 x K cell of
   [start; end] 1-based frame ranges;
3. CUHK Avenue as released: ``training_videos/NN.avi``, ``testing_videos/NN.avi`` and per-frame masks
   ``ground_truth_demo/testing_label_mask/N_label.mat`` (variable ``volLabel``, a 1 x frames cell);
4. ShanghaiTech Campus: ``training/videos/*.avi``, ``testing/frames/<video>/NNN.jpg`` and frame labels
   ``testing/test_frame_mask/<video>.npy``.

Video files are decoded with PyAV (``pip install av``), needed only for layouts 3 and 4. ``prepare.json`` maps
every output video name to its source.

``--masks DIR`` takes the labels (and the pixel masks) from a folder of ``TestNNN_gt`` mask folders instead (e.g.
the official UCSD masks for the JPEG re-distribution).
"""
import argparse
import os
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image
from tqdm import tqdm

from data.frame_stream import JPEG_QUALITY, frame_image_files, save_prepared_frame
from data.layout import MASK_FOLDER, natural_key
from data.movies import MOVIE_SUFFIXES, count_frames, movie_files, movie_frames
from data.readers import DataFormatError, write_ground_truth, write_index
from utils.errors import run_cli
from utils.files import make_folder, replace_atomically, save_image, write_json, writing

OUTPUT_FOLDERS = ('training', 'training_idx', 'testing', 'testing_idx', 'testing_gt', MASK_FOLDER)


@dataclass
class SourceVideo:
    name: str                      # output name: TrainNNN / TestNNN
    frames: list = None            # source frame paths in temporal order; or
    movie: Path = None             # a video file holding the frames
    labels: np.ndarray = None      # test videos: 0/1 per frame
    masks: list = None             # test videos with pixel masks: one per frame, a mask image's path or an array
    source: str = ''               # the source's own name for the video
    _count: int = None

    @property
    def num_frames(self):
        if self.frames is not None:
            return len(self.frames)
        if self._count is None:
            self._count = count_frames(self.movie)
        return self._count


@dataclass
class Source:
    layout: str
    train: list
    test: list
    label_origin: str


def _numbered_subfolders(folder, pattern):
    regex = re.compile(pattern)
    return sorted((p for p in Path(folder).iterdir() if p.is_dir() and regex.fullmatch(p.name)),
                  key=lambda p: natural_key(p.name))


def _videos(folders, prefix):
    videos = []
    for k, folder in enumerate(folders, start=1):
        frames = frame_image_files(folder)
        if not frames:
            raise DataFormatError(f'video folder {folder} holds no frames')
        videos.append(SourceVideo(f'{prefix}{k:03d}', frames, source=str(folder)))
    return videos


def _movies(folder, prefix):
    files = movie_files(folder)
    if not files:
        raise DataFormatError(f'{folder} holds no video files ({", ".join(MOVIE_SUFFIXES)})')
    return [SourceVideo(f'{prefix}{k:03d}', movie=path, source=str(path)) for k, path in enumerate(files, start=1)]


def mask_files(mask_folder):
    """The mask images of one video, sorted by name (``001.bmp`` or ``frame001.bmp``: natural order)."""
    masks = frame_image_files(mask_folder)
    if not masks:
        raise DataFormatError(f'mask folder {mask_folder} holds no mask images')
    return masks


def mask_array(mask):
    """A mask (an image path or an array) as a 2-D bool array: True where it is non-zero."""
    if isinstance(mask, np.ndarray):
        array = mask
    else:
        with Image.open(mask) as image:
            array = np.asarray(image)
    return (array.any(axis=2) if array.ndim == 3 else array) != 0


def mask_labels(mask_folder):
    """One label per mask image, sorted by name: 1 iff the mask has a non-zero pixel. (MATLAB's rule was
    sum(im2double(mask)) >= 1; the two agree on the UCSD masks, which hold only 0 and 255.)"""
    return labels_of_masks(mask_files(mask_folder))


def labels_of_masks(masks):
    return np.array([int(mask_array(mask).any()) for mask in masks], dtype=np.int64)


def ranges_to_labels(ranges, num_frames):
    """0/1 labels of ``num_frames`` frames from 1-based inclusive (start, end) ranges."""
    labels = np.zeros(num_frames, dtype=np.int64)
    for start, end in ranges:
        if not 1 <= start <= end <= num_frames:
            raise DataFormatError(f'anomaly range {start}:{end} does not fit a video of {num_frames} frames')
        labels[start - 1:end] = 1
    return labels


def parse_ucsd_m_file(path):
    """Frame ranges per test video from ``UCSDped*.m`` (``TestVideoFile{end+1}.gt_frame = [61:180];``)."""
    ranges = []
    for match in re.finditer(r'gt_frame\s*=\s*\[([^\]]*)\]', Path(path).read_text()):
        video_ranges = []
        for part in re.split(r'[,;\s]+', match.group(1).strip()):
            if not part:
                continue
            bounds = part.split(':')
            if len(bounds) not in (1, 2) or not all(b.isdigit() for b in bounds):
                raise DataFormatError(f'{path}: cannot read the frame range {part!r}')
            video_ranges.append((int(bounds[0]), int(bounds[-1])))
        ranges.append(video_ranges)
    if not ranges:
        raise DataFormatError(f'{path} holds no gt_frame lines')
    return ranges


def read_range_mat(path):
    """Frame ranges per test video from a ``.mat`` whose ``gt`` is a cell of [start; end] columns."""
    try:
        cells = sio.loadmat(str(path))['gt']
    except Exception as error:
        raise DataFormatError(f'{path} has no readable variable gt ({type(error).__name__}: {error})') from None
    ranges = []
    for cell in cells.ravel():
        bounds = np.asarray(cell).astype(np.int64)  # stored as uint8 in ped2.mat: widen before use
        if bounds.ndim != 2 or bounds.shape[0] != 2:
            raise DataFormatError(f'{path}: each gt cell must be a 2 x K array of [start; end] ranges')
        ranges.append([(int(s), int(e)) for s, e in bounds.T])
    return ranges


def _labels_from_masks(mask_root, test_videos):
    for k, video in enumerate(test_videos, start=1):
        folder = Path(mask_root) / f'Test{k:03d}_gt'
        if not folder.is_dir():
            raise DataFormatError(f'mask folder {folder} does not exist (--masks {mask_root})')
        video.masks = mask_files(folder)
        video.labels = labels_of_masks(video.masks)


def _labels_from_ranges(ranges, test_videos, origin):
    if len(ranges) != len(test_videos):
        raise DataFormatError(f'{origin} annotates {len(ranges)} test videos but the source has {len(test_videos)}')
    for video, video_ranges in zip(test_videos, ranges):
        video.labels = ranges_to_labels(video_ranges, video.num_frames)


def _ucsd_original(src, labels):
    train = _videos(_numbered_subfolders(src / 'Train', r'Train\d+'), 'Train')
    test_folders = _numbered_subfolders(src / 'Test', r'Test\d+')
    test = _videos(test_folders, 'Test')
    mask_folders = [folder.with_name(folder.name + '_gt') for folder in test_folders]
    have_masks = all(folder.is_dir() for folder in mask_folders)
    for video, folder in zip(test, mask_folders):  # Ped1 has masks for some videos: kept for those
        if folder.is_dir():
            video.masks = mask_files(folder)
    m_files = sorted((src / 'Test').glob('UCSDped*.m'))
    if labels == 'masks' or (labels == 'auto' and have_masks):
        for video, folder in zip(test, mask_folders):
            if not folder.is_dir():
                raise DataFormatError(f'mask folder {folder} does not exist (use --labels ranges)')
            video.labels = labels_of_masks(video.masks)
        origin = 'pixel masks Test/TestNNN_gt'
    else:
        if not m_files:
            raise DataFormatError(f'{src / "Test"} has neither a mask folder for every test video nor a UCSDped*.m '
                                  f'file to take frame labels from')
        _labels_from_ranges(parse_ucsd_m_file(m_files[0]), test, m_files[0].name)
        origin = f'frame ranges of {m_files[0].name}'
    return Source('ucsd_original', train, test, origin)


def _jpeg_redistribution(src, labels):
    train = _videos(_numbered_subfolders(src / 'training' / 'frames', r'\d+'), 'Train')
    test = _videos(_numbered_subfolders(src / 'testing' / 'frames', r'\d+'), 'Test')
    if labels == 'masks':
        raise DataFormatError(f'{src} holds no pixel masks; pass --masks DIR or use --labels ranges')
    mat_files = sorted(src.glob('*.mat'))
    if not mat_files:
        raise DataFormatError(f'{src} has no .mat file with the test frame ranges (variable gt), e.g. ped2.mat')
    _labels_from_ranges(read_range_mat(mat_files[0]), test, mat_files[0].name)
    return Source('jpeg_redistribution', train, test, f'frame ranges of {mat_files[0].name}')


def _only_automatic_labels(labels, layout):
    if labels != 'auto':
        raise DataFormatError(f'--labels {labels} does not apply to {layout}, whose labels come with it')


def _avenue_official(src, labels):
    _only_automatic_labels(labels, 'CUHK Avenue as released')
    train = _movies(src / 'training_videos', 'Train')
    test = _movies(src / 'testing_videos', 'Test')
    mask_folder = src / 'ground_truth_demo' / 'testing_label_mask'
    for k, video in enumerate(test, start=1):
        path = mask_folder / f'{k}_label.mat'
        try:
            masks = sio.loadmat(str(path))['volLabel']
        except Exception as error:
            raise DataFormatError(f'{path} has no readable variable volLabel ({type(error).__name__}: {error})') \
                from None
        video.masks = [np.asarray(mask) for mask in masks.ravel()]
        video.labels = labels_of_masks(video.masks)
    return Source('avenue_official', train, test, f'per-frame masks in {mask_folder}')


def read_npy(path, what, ndim, mmap_mode=None):
    """A numeric ``ndim``-D array from a ``.npy`` file; anything else is one sentence naming the file."""
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except Exception as error:  # missing, truncated, a pickle, foreign bytes
        raise DataFormatError(f'{path} is not a readable {what} ({type(error).__name__}: {error})') from None
    if array.ndim != ndim or array.dtype.kind not in 'buif':
        raise DataFormatError(f'{path} is not a {what}: a {ndim}-D array of numbers, found {array.dtype} of shape '
                              f'{array.shape}')
    return array


def _shanghaitech(src, labels):
    _only_automatic_labels(labels, 'ShanghaiTech')
    train = _movies(src / 'training' / 'videos', 'Train')
    test_folders = sorted((p for p in (src / 'testing' / 'frames').iterdir() if p.is_dir()),
                          key=lambda p: natural_key(p.name))
    test = _videos(test_folders, 'Test')
    for folder, video in zip(test_folders, test):
        path = src / 'testing' / 'test_frame_mask' / f'{folder.name}.npy'
        video.labels = (read_npy(path, 'frame mask', 1).ravel() > 0).astype(np.int64)
        pixel_masks = src / 'testing' / 'test_pixel_mask' / f'{folder.name}.npy'
        if pixel_masks.is_file():  # frames x H x W, read frame by frame when the masks are written
            video.masks = list(read_npy(pixel_masks, 'pixel mask', 3, mmap_mode='r'))
    return Source('shanghaitech', train, test, 'frame masks testing/test_frame_mask/<video>.npy')


# (marker folders, layout name, reader) of each supported source layout, tried in this order
SOURCE_LAYOUTS = (
    (('Train', 'Test'), 'original UCSD', _ucsd_original),
    (('training_videos', 'testing_videos'), 'CUHK Avenue', _avenue_official),
    (('training/videos', 'testing/frames'), 'ShanghaiTech', _shanghaitech),
    (('training/frames', 'testing/frames'), 'JPEG re-distribution', _jpeg_redistribution),
)


def known_layout(folder):
    """The entry of SOURCE_LAYOUTS whose marker folders ``folder`` has, or None."""
    return next((layout for layout in SOURCE_LAYOUTS if all((folder / m).is_dir() for m in layout[0])), None)


def detect_source(src, labels='auto'):
    """The videos and labels of a source folder, whichever supported layout it has."""
    src = Path(src)
    if not src.is_dir():
        raise DataFormatError(f'--src {src} is not a folder')
    layout = known_layout(src)
    if layout is not None:
        return layout[2](src, labels)
    peds = sorted(p.name for p in src.glob('UCSDped*') if p.is_dir())
    if peds:
        raise DataFormatError(f"--src {src} is the UCSD release's root; pass one of its data sets: "
                              f"{', '.join(str(src / p) for p in peds)}")
    below = [(child, found[1]) for child in sorted(p for p in src.iterdir() if p.is_dir())
             if (found := known_layout(child)) is not None]
    if below:
        raise DataFormatError(f'--src {src} holds a known layout one level down: '
                              + ', '.join(f'{child} ({name})' for child, name in below) + '; pass that folder')
    expected = ', '.join(f"{' and '.join(f'{m}/' for m in markers)} ({name})" for markers, name, _ in SOURCE_LAYOUTS)
    raise DataFormatError(f'--src {src} is not a known source layout: expected {expected}')


def clip_starts(num_frames, clip_len, stride):
    """1-based first frames of the clips: 1, 1 + stride, ... while the clip fits in the video."""
    return list(range(1, num_frames - clip_len + 2, stride))


def write_prepared_frame(image, target, size, channels):
    replace_atomically(target, lambda file: save_prepared_frame(image, file, size, channels))


def _convert_file(job):
    source, targets, size, channels = job
    with Image.open(source) as image:
        write_prepared_frame(image, targets[0], size, channels)


def _convert_movie(job):
    """Decode a video file once, converting every frame; its frame count must be the one counted before."""
    movie, targets, size, channels = job
    decoded = 0
    for decoded, image in enumerate(movie_frames(movie), start=1):
        if decoded > len(targets):
            break
        write_prepared_frame(image, targets[decoded - 1], size, channels)
    if decoded != len(targets):
        raise DataFormatError(f'{movie}: decoded {decoded} frames, but its packets counted {len(targets)}')
    return len(targets)


STAGING = '.preparing.{pid}.tmp'  # inside --dst while a preparation runs


def _check_output(dst, overwrite):
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        if not overwrite:
            raise DataFormatError(f'--dst {dst} is not empty; pass --overwrite to replace its prepared data')
        for stale in dst.glob(STAGING.format(pid='*')):  # left by a killed preparation (SIGKILL, a power cut)
            shutil.rmtree(stale, ignore_errors=True)
    return make_folder(dst)


def _remove_outputs(folder):
    for path in [folder / name for name in OUTPUT_FOLDERS + ('prepare.json',)]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def prepared_mask(mask, size):
    """A pixel mask at the prepared frame size (H, W) as uint8 0 / 255: nearest-neighbour resizing keeps it
    binary (an interpolating filter would blur its edge into grey levels that no threshold maps back)."""
    image = Image.fromarray(mask_array(mask).astype(np.uint8) * 255)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return image


def in_threads(function, jobs, workers, when_done=lambda job: None):
    """``function(job)`` for every job on ``workers`` threads, then ``when_done(job)`` in job order. An error or an
    interrupt cancels the jobs not started yet, instead of waiting for all of them to finish."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for job, _ in zip(jobs, pool.map(function, jobs)):
            when_done(job)
    finally:
        pool.shutdown(cancel_futures=True)


def write_masks(dst, videos, size, workers):
    """``testing_masks/<video>/NNN.png`` (named as the video's frames) for the videos with pixel masks; returns
    their names."""
    jobs = []
    for video in videos:
        if video.masks is None:
            continue
        folder = make_new_folder(dst / MASK_FOLDER / video.name)
        width = max(3, len(str(video.num_frames)))
        jobs += [(mask, folder / f'{n:0{width}d}.png') for n, mask in enumerate(video.masks, start=1)]
    in_threads(lambda job: save_image(prepared_mask(job[0], size), job[1]), jobs, workers)
    return [video.name for video in videos if video.masks is not None]


def write_split(dst, folder, videos, size, channels, clip_len, stride, workers, progress):
    """Frames and index files of one split; returns the number of clips written. Frame files are converted one
    job each; a video file is one job (it is decoded in order)."""
    jobs = []
    num_clips = 0
    for video in videos:
        frame_dir = make_new_folder(dst / folder / video.name)
        index_dir = make_new_folder(dst / f'{folder}_idx' / video.name)
        width = max(3, len(str(video.num_frames)))
        targets = [frame_dir / f'{n:0{width}d}.jpg' for n in range(1, video.num_frames + 1)]
        if video.movie is not None:
            jobs.append((_convert_movie, (video.movie, targets, size, channels), len(targets)))
        else:
            jobs += [(_convert_file, (source, [target], size, channels), 1)
                     for source, target in zip(video.frames, targets)]
        starts = clip_starts(video.num_frames, clip_len, stride)
        index_width = max(3, len(str(len(starts))))
        for j, start in enumerate(starts, start=1):
            write_index(index_dir / f'{video.name}_i{j:0{index_width}d}.mat', video.name,
                        np.arange(start, start + clip_len))
        num_clips += len(starts)
    with tqdm(total=sum(n for *_, n in jobs), desc=f'{folder} frames', unit='frame', disable=not progress) as bar:
        in_threads(lambda job: job[0](job[1]), jobs, workers, lambda job: bar.update(job[2]))
    return num_clips


def prepare(src, dst, size=(256, 256), clip_len=16, stride=1, channels=1, labels='auto', masks=None,
            overwrite=False, workers=4, progress=True):
    """Prepare SRC into DST; returns the summary also written to ``DST/prepare.json``."""
    if clip_len < 1 or stride < 1:
        raise DataFormatError('--clip-len and --stride must be at least 1')
    source = detect_source(src, labels)
    if masks is not None:
        _labels_from_masks(masks, source.test)
        source.label_origin = f'pixel masks in {masks}'
    for video in source.test:
        if len(video.labels) != video.num_frames:
            raise DataFormatError(f'{video.name} ({video.source}): {len(video.labels)} frame labels '
                                  f'({source.label_origin}) for {video.num_frames} frames')
        if video.masks is not None and len(video.masks) != video.num_frames:
            raise DataFormatError(f'{video.name} ({video.source}): {len(video.masks)} pixel masks for '
                                  f'{video.num_frames} frames')
    dst = _check_output(dst, overwrite)
    # Written into a hidden folder inside DST and moved into place when complete: an interrupt, a full disk or a
    # bad frame leaves DST as it was (an earlier preparation included), never a half-prepared data set.
    staging = make_folder(dst / STAGING.format(pid=os.getpid()))
    try:
        summary = _write_prepared(source, staging, src, size, clip_len, stride, channels, workers, progress)
        with writing(dst):
            _remove_outputs(dst)
            for path in staging.iterdir():
                path.rename(dst / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def make_new_folder(path):
    """A folder that must not exist yet (two source videos of one name would otherwise share it)."""
    if path.exists():
        raise DataFormatError(f'two source videos would both be prepared into {path}: rename one')
    return make_folder(path)


def _write_prepared(source, dst, src, size, clip_len, stride, channels, workers, progress):
    summary = {'src': str(src), 'layout': source.layout, 'label_origin': source.label_origin,
               'size': list(size), 'channels': channels, 'clip_len': clip_len, 'stride': stride,
               'jpeg_quality': JPEG_QUALITY}
    for folder, videos in (('training', source.train), ('testing', source.test)):
        summary[folder] = {
            'videos': len(videos),
            'frames': sum(v.num_frames for v in videos),
            'clips': write_split(dst, folder, videos, size, channels, clip_len, stride, workers, progress),
        }
    make_folder(dst / 'testing_gt')
    for video in source.test:
        write_ground_truth(dst / 'testing_gt' / f'{video.name}.mat', video.labels)
    summary['testing']['anomalous_frames'] = int(sum(v.labels.sum() for v in source.test))
    summary['testing']['videos_with_pixel_masks'] = write_masks(dst, source.test, size, workers)
    summary['video_sources'] = {v.name: v.source for v in source.train + source.test}
    write_json(dst / 'prepare.json', summary)
    return summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--src', required=True, help='downloaded data set (see the module doc for layouts)')
    parser.add_argument('--dst', required=True, help='output folder, e.g. ./dataset/UCSD_P2_256')
    parser.add_argument('--size', type=int, nargs=2, default=(256, 256), metavar=('H', 'W'),
                        help='output frame size')
    parser.add_argument('--clip-len', type=int, default=16, help='frames per clip')
    parser.add_argument('--stride', type=int, default=1, help='frames between the starts of consecutive clips')
    parser.add_argument('--channels', type=int, choices=(1, 3), default=1, help='1 = grayscale, 3 = colour')
    parser.add_argument('--labels', choices=('auto', 'masks', 'ranges'), default='auto',
                        help='original UCSD layout: labels from pixel masks or from the .m frame ranges')
    parser.add_argument('--masks', default=None, help='folder of TestNNN_gt mask folders to take labels from')
    parser.add_argument('--workers', type=int, default=4, help='threads converting frames')
    parser.add_argument('--overwrite', action='store_true', help='replace prepared data already in --dst')
    return parser.parse_args(argv)


def describe(summary, dst):
    """A few lines on what was prepared; the whole record is in ``<dst>/prepare.json``."""
    train, test = summary['training'], summary['testing']
    return (f"prepared {dst} from {summary['src']} ({summary['layout']}; labels: {summary['label_origin']}):\n"
            f"  training: {train['videos']} videos, {train['frames']} frames, {train['clips']} clips\n"
            f"  testing: {test['videos']} videos, {test['frames']} frames ({test['anomalous_frames']} anomalous), "
            f"{test['clips']} clips; pixel masks for {len(test['videos_with_pixel_masks'])} videos\n"
            f"  {summary['size'][0]} x {summary['size'][1]}, {summary['channels']} channel(s); details in "
            f"{dst / 'prepare.json'}")


def main(argv=None):
    args = parse_args(argv)
    summary = prepare(args.src, args.dst, tuple(args.size), args.clip_len, args.stride, args.channels,
                      args.labels, args.masks, args.overwrite, args.workers)
    print(describe(summary, Path(args.dst)))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
