"""A small synthetic surveillance data set for the demo, in the prepared layout of :mod:`data.layout`.

    python -m data.synthetic --dst ./dataset/SyntheticDemo [--size 32] [--train-videos 8] [--test-videos 6]

A fixed camera looks at a lawn crossed by two horizontal walkways. Normal scenes: pedestrians (small, upright
blobs) walk steadily along the walkways, left or right, at walking speed. Each test video holds one anomalous
event, drawn in turn from three kinds: a cart (an object three times a pedestrian's size), a runner (a
pedestrian at four times walking speed) and a trespasser (a pedestrian crossing the lawn vertically). A frame is
anomalous while the anomalous object is in view; its pixel mask marks the object, as UCSD's masks do.

The videos are written as an original-UCSD-style source (``Train/``, ``Test/``, ``Test/TestNNN_gt`` masks) in a
temporary folder and converted by :func:`data.prepare_video.prepare`, so the result is exactly what real data
looks like after preparation (grayscale JPEG frames, index and ground-truth ``.mat`` files, ``prepare.json``).
"""
import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data.prepare_video import prepare
from utils.errors import InputError, run_cli
from utils.files import make_folder, save_image, write_json

WALKWAYS = (0.3, 0.72)         # walkway centres, as fractions of the frame height
PEDESTRIAN = (0.2, 0.09)       # blob height and width, as fractions of the frame size
WALK_SPEED = (0.010, 0.016)    # frame widths per frame
ANOMALIES = ('cart', 'runner', 'trespasser')


@dataclass
class Walker:
    y: float            # centre, in frame fractions
    x: float
    vy: float           # frame fractions per frame
    vx: float
    scale: float = 1.0  # size relative to a pedestrian


def background(size, rng):
    """Lawn texture, brighter walkways, a fixed vignette: the same camera for every video."""
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w] / size
    lawn = 70 + 20 * np.sin(9 * xx + 3 * yy) + rng.normal(0, 6, (h, w))
    for centre in WALKWAYS:
        lawn = np.where(np.abs(yy - centre) < 0.07, 125 + rng.normal(0, 3, (h, w)), lawn)
    return lawn - 25 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)


def draw(frame, mask, walker, size):
    """A soft-edged upright blob for a walker; where it is drawn, the mask is set if given."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    half_h, half_w = PEDESTRIAN[0] * walker.scale / 2, PEDESTRIAN[1] * walker.scale / 2
    blob = np.exp(-(((yy - walker.y) / half_h) ** 2 + ((xx - walker.x) / half_w) ** 2) ** 2)
    frame += (225 - frame) * blob
    if mask is not None:
        mask |= blob > 0.3


def new_pedestrian(rng, from_edge=True):
    direction = rng.choice((-1, 1))
    x = (-0.05 if direction > 0 else 1.05) if from_edge else rng.uniform(0, 1)
    return Walker(rng.choice(WALKWAYS) + rng.normal(0, 0.01), x, 0.0, direction * rng.uniform(*WALK_SPEED))


def anomalous_walker(kind, rng):
    """The anomalous object of a test video, entering from an edge."""
    walker = new_pedestrian(rng)
    if kind == 'cart':
        walker.scale = 3.0
    elif kind == 'runner':
        walker.vx *= 4
    else:  # trespasser: crosses the lawn from top to bottom, at walking speed
        walker.x, walker.y, walker.vx, walker.vy = rng.uniform(0.2, 0.8), -0.1, 0.0, rng.uniform(*WALK_SPEED)
    return walker


def in_view(walker):
    return -0.1 < walker.x < 1.1 and -0.15 < walker.y < 1.15


def render_video(size, num_frames, rng, scene, anomaly=None, anomaly_start=0):
    """Frames (uint8, T x H x W) and masks (bool) of one video; ``anomaly`` enters at frame ``anomaly_start``."""
    walkers = [new_pedestrian(rng, from_edge=False) for _ in range(rng.integers(1, 4))]
    odd = None
    frames, masks = [], []
    for t in range(num_frames):
        if anomaly and t == anomaly_start:
            odd = anomalous_walker(anomaly, rng)
        if rng.random() < 0.04 and len(walkers) < 4:
            walkers.append(new_pedestrian(rng))
        frame = scene.copy()
        mask = np.zeros((size, size), dtype=bool)
        for walker in walkers:
            draw(frame, None, walker, size)
        if odd is not None and in_view(odd):
            draw(frame, mask, odd, size)
        frames.append(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
        masks.append(mask)
        for walker in walkers + ([odd] if odd is not None else []):
            walker.x += walker.vx
            walker.y += walker.vy
        walkers = [w for w in walkers if in_view(w)]
    return np.stack(frames), np.stack(masks)


def write_frames(folder, images, mask_folder=None, masks=None):
    make_folder(folder)
    for t, image in enumerate(images, start=1):
        save_image(Image.fromarray(image), folder / f'{t:03d}.png')
    if mask_folder is not None:
        make_folder(mask_folder)
        for t, mask in enumerate(masks, start=1):
            save_image(Image.fromarray(mask.astype(np.uint8) * 255), mask_folder / f'{t:03d}.png')


def write_source(src, size, train_videos, test_videos, num_frames, seed):
    """The videos as an original-UCSD-style source folder; returns the anomaly kind of each test video."""
    rng = np.random.default_rng(seed)
    scene = background(size, rng)
    for k in range(1, train_videos + 1):
        write_frames(src / 'Train' / f'Train{k:03d}', render_video(size, num_frames, rng, scene)[0])
    kinds = []
    for k in range(1, test_videos + 1):
        kind = ANOMALIES[(k - 1) % len(ANOMALIES)]
        start = int(rng.integers(num_frames // 4, num_frames // 2))
        frames, masks = render_video(size, num_frames, rng, scene, kind, start)
        write_frames(src / 'Test' / f'Test{k:03d}', frames, src / 'Test' / f'Test{k:03d}_gt', masks)
        kinds.append(kind)
    return kinds


def make_synthetic(dst, size=32, train_videos=8, test_videos=6, num_frames=96, seed=0, overwrite=False,
                   progress=True):
    """Write the data set into ``dst`` (``<DataRoot>/<Dataset>``); returns the preparation summary."""
    if size % 16:
        raise InputError(f"--size {size} is no multiple of 16, which the video autoencoder needs")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / 'Synthetic'
        kinds = write_source(src, size, train_videos, test_videos, num_frames, seed)
        summary = prepare(src, dst, size=(size, size), labels='masks', overwrite=overwrite, progress=progress)
    # The source was a temporary folder, now deleted: name what made the videos instead of paths into it.
    summary.update(src='synthetic (data/synthetic.py)', seed=seed, anomaly_kinds=kinds,
                   label_origin='masks of the rendered anomalous objects',
                   video_sources={name: f'synthetic ({kind})' for name, kind in _video_kinds(summary, kinds)})
    write_json(Path(dst) / 'prepare.json', summary)
    return summary


def _video_kinds(summary, kinds):
    """(video name, what it shows) for every video of the summary, in its order."""
    for name in summary['video_sources']:
        yield name, kinds[int(name[len('Test'):]) - 1] if name.startswith('Test') else 'pedestrians only'


def describe(summary, dst):
    """One line on what was written, for the console (the details are in prepare.json)."""
    return (f"synthetic data set: {summary['training']['videos']} training videos ({summary['training']['clips']} "
            f"clips), {summary['testing']['videos']} test videos ({summary['testing']['clips']} clips, "
            f"{summary['testing']['anomalous_frames']} anomalous frames) -> {dst} (details: prepare.json)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--dst', required=True, help='output folder, e.g. ./dataset/SyntheticDemo')
    parser.add_argument('--size', type=int, default=32, help='frame height and width (a multiple of 16)')
    parser.add_argument('--train-videos', type=int, default=8)
    parser.add_argument('--test-videos', type=int, default=6)
    parser.add_argument('--frames', type=int, default=96, help='frames per video')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true', help='replace a data set already in --dst')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    summary = make_synthetic(args.dst, args.size, args.train_videos, args.test_videos, args.frames, args.seed,
                             args.overwrite)
    print(describe(summary, args.dst))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
