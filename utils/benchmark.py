"""Throughput of the video paths, measured side by side in one process on the same data and weights.

    python -m utils.benchmark test    [--DataRoot DIR --Dataset NAME] [--clips 48] [--batch 4] [--window 16]
    python -m utils.benchmark windows --DataRoot DIR [--clips 8]
    python -m utils.benchmark train   [--DataRoot DIR --Dataset NAME] [--steps 6] [--batch 10]
    python -m utils.benchmark oneclass --DataRoot DIR [--kdd-runs 2] [--kdd-epochs 20] [--mnist-class 3]
    python -m utils.benchmark lockstep --DataRoot DIR [--kdd-runs 20] [--kdd-epochs 2] [--mnist-epochs 2]

``test`` scores the same clips of the first test video three ways: (a) as the released test loop did (batch 1;
each clip's index ``.mat`` read twice and its 16 frames decoded and transformed one by one, every time), (b) by
``script_testing.py``'s per-clip path (``--ClipWindow 0``: index files read once per video, each frame decoded
once, batches of ``--batch``, ``torch.inference_mode``; ``--preload`` and ``--channels-last`` as its
``--PreloadFrames`` and ``--ChannelsLast``), (c) by its default window path (``--window`` clips per window,
models/clip_overlap.py). ``windows`` checks (b) against (c) on every test video (its first and last ``--clips``
clips). ``train`` times optimisation steps fed (a) by the released per-clip loading and (b) by ours. Every path
prints clips per second, the ratio to the first path, its FLOPs per clip (``torch.utils.flop_counter``), the
fraction of this machine's measured float32 matrix-multiply rate that it reaches, and (test) the largest relative
difference between its scores and the released loop's. The model has random weights, with batch-norm statistics
from a few training clips. Without ``--DataRoot`` a synthetic 256 x 256 data set is written to a temporary
folder (data/synthetic.py; ``--size`` for smaller frames). ``oneclass`` times the image and KDDCUP99 commands
against a minimal loop over the same model, data and epochs (utils/experiments/oneclass_benchmark.py; real data
needed). ``lockstep`` times ``bash train.sh kdd`` and ``bash train.sh mnist`` one unit after another against
``--Lockstep True`` (utils/lockstep.py) at 2 and 1 threads, idle and beside one competing busy process, with each
command's FLOP floor. Ratios measured in one run are
what to compare: absolute speeds move with the load of a shared machine.
"""
import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import scipy.io as sio
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.flop_counter import FlopCounterMode

from data.layout import VideoLayout, list_index_files
from data.synthetic import make_synthetic
from data.video_datasets import PreloadedVideo, VideoDataset, VideoDatasetOneDir, frame_to_tensor
from models import AutoEncoderCov3DMem, weights_init
from models.clip_overlap import ClipWindowModel
from utils.errors import run_cli
from utils.files import write_json
from utils.experiments.oneclass_benchmark import lockstep_benchmark, oneclass_benchmark
from utils.runtime import memory_layout
from utils.scoring import WINDOW_BATCH_MIN, clip_batches, l2_scores, score_clips, score_windows
from utils.training import LossSettings, training_step

SGEMM_SIZE = 2048


class ReleasedStyleClips(Dataset):
    """Clips loaded the way the released ``VideoDatasetOneDir`` loaded them: per item, the index file is read
    (twice) and every frame is decoded and transformed anew."""

    def __init__(self, index_files, frame_folder_of):
        self.index_files = list(index_files)
        self.frame_folder_of = frame_folder_of

    def __len__(self):
        return len(self.index_files)

    def __getitem__(self, item):
        path = str(self.index_files[item])
        v_name = str(sio.loadmat(path)['v_name'][0])
        frames = sio.loadmat(path)['idx'][0, :].astype(int)
        folder = self.frame_folder_of(v_name)
        tensors = [frame_to_tensor(np.array(Image.open(folder / f'{n:03d}.jpg'))[:, :, None]) for n in frames]
        return item, torch.stack(tensors, dim=1)


def sgemm_gflops(repeats=10):
    """This machine's float32 matrix-multiply rate (GFLOP/s), the floor against which the model is measured."""
    a, b = torch.randn(SGEMM_SIZE, SGEMM_SIZE), torch.randn(SGEMM_SIZE, SGEMM_SIZE)
    torch.mm(a, b)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * SGEMM_SIZE ** 3 * repeats / (time.perf_counter() - started) / 1e9


def flops_per_clip(model, clip, backward=False):
    """FLOPs of ``model`` (MemAE or AE) on one clip, forward and, with ``backward``, backward (torch's counter,
    from the layer shapes)."""
    counter = FlopCounterMode(display=False)
    with counter:
        if backward:
            output = model(clip[None])
            (output['output'] if isinstance(output, dict) else output).sum().backward()
        else:
            with torch.inference_mode():
                model(clip[None])
    return counter.get_total_flops()


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def released_scores(model, dataset):
    scores = []
    with torch.no_grad():
        for _, clip in DataLoader(dataset, batch_size=1):
            scores += l2_scores(model(clip)['output'], clip)
    return np.asarray(scores)


def our_scores(model, dataset, args):
    """script_testing.py's per-clip loop (``--ClipWindow 0``: ``clip_batches``, ``score_clips``): ``--preload`` as
    its ``--PreloadFrames``, ``--channels-last`` as its ``--ChannelsLast``, ``--batch`` as its ``--BatchSize``."""
    opt = SimpleNamespace(PreloadFrames=args.preload, BatchSize=args.batch, NumWorker=args.workers)
    memory_format = memory_layout(args.channels_last)
    model = copy.deepcopy(model).to(memory_format=memory_format)
    cpu = torch.device('cpu')
    with torch.inference_mode():
        return score_clips(model, clip_batches(dataset, opt, cpu), 'l2', cpu, True, memory_format)


def window_scores(model, dataset, args):
    """script_testing.py's default loop (``--ClipWindow``): windows of overlapping clips, the first encoder layers
    computed once per window (models/clip_overlap.py); the per-clip layers in ``--channels-last`` if given."""
    video = PreloadedVideo(dataset, torch.device('cpu'))
    with torch.inference_mode():
        return score_windows(ClipWindowModel(model), video.windows(args.window), video.rows.shape[1], 'l2', True,
                             max(args.batch, WINDOW_BATCH_MIN), memory_layout(args.channels_last))


def window_flops_per_clip(model, dataset, args):
    """FLOPs per clip of the window path, counted over its first window."""
    video = PreloadedVideo(dataset, torch.device('cpu'))
    positions, frames = next(video.windows(args.window))
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        ClipWindowModel(model)(frames, video.rows.shape[1], batch_size=len(positions))
    return counter.get_total_flops() / len(positions)


def largest_relative_difference(scores, reference):
    return float(np.max(np.abs(scores - reference) / np.abs(reference)))


def test_benchmark(layout, args, model):
    """The released loop, our per-clip loop with the benchmark's flags and our default window loop on the same
    clips, one after the other; each path's seconds, FLOPs per clip and largest score difference to the released
    loop's."""
    video = layout.videos('test')[0]
    index_files = list_index_files(layout.index_dir('test') / video)[:args.clips]
    frames = layout.frames_dir('test') / video
    released = ReleasedStyleClips(index_files, lambda v_name: frames)
    ours = VideoDatasetOneDir(layout.index_dir('test') / video, frames)
    ours.clips = ours.clips[:len(index_files)]
    released_result, released_seconds = timed(lambda: released_scores(model, released))
    clip_flops = flops_per_clip(model, ours[0][1])
    paths = {'released loop': (released_seconds, released_result, clip_flops)}
    per_clip, per_clip_seconds = timed(lambda: our_scores(model, ours, args))
    paths['ours, per clip (--ClipWindow 0)'] = (per_clip_seconds, per_clip, clip_flops)
    if args.window:
        windowed, window_seconds = timed(lambda: window_scores(model, ours, args))
        paths[f'ours, --ClipWindow {args.window} (default 16)'] = (window_seconds, windowed,
                                                                   window_flops_per_clip(model, ours, args))
    return len(index_files), [
        {'path': name, 'seconds': seconds, 'gflop_per_clip': flops / 1e9,
         'largest_relative_score_difference': largest_relative_difference(scores, released_result)}
        for name, (seconds, scores, flops) in paths.items()]


def calibrate_batch_norm(model, layout, clips=4):
    """Set the batch norms' running statistics from a few training clips (as training would), so that the random
    weights give activations of a trained network's scale rather than the vanishing ones of fresh statistics
    (a score comparison between paths then means something); the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calibration batches
    dataset = Subset(VideoDataset(layout.index_dir('train'), layout.frames_dir('train')), range(clips))
    with torch.no_grad():
        for _, batch in DataLoader(dataset, batch_size=2):
            model.train()(batch)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return model.eval()


def windows_check(layout, args, model):
    """Every test video: its first and last ``--clips`` clips (all of them when it has no more than twice that)
    scored by the per-clip path (batch ``--batch``) and by the window path; the largest relative score
    difference per video and both paths' total seconds."""
    rows, seconds = [], {'per clip': 0.0, 'windows': 0.0}
    for video in layout.videos('test'):
        dataset = VideoDatasetOneDir.in_layout(layout, 'test', video)
        if len(dataset.clips) > 2 * args.clips:
            dataset.clips = dataset.clips[:args.clips] + dataset.clips[-args.clips:]
        per_clip, per_clip_seconds = timed(lambda: our_scores(model, dataset, args))
        windowed, window_seconds = timed(lambda: window_scores(model, dataset, args))
        seconds['per clip'] += per_clip_seconds
        seconds['windows'] += window_seconds
        difference = largest_relative_difference(windowed, per_clip)
        rows.append({'video': video, 'clips': len(dataset.clips), 'largest_relative_score_difference': difference})
        print(f'  {video}: {len(dataset.clips)} clips, largest relative score difference {difference:.1e}', flush=True)
    return {'mode': 'windows', 'window': args.window, 'videos': rows, 'seconds': seconds,
            'largest_relative_score_difference': max(row['largest_relative_score_difference'] for row in rows)}


def train_benchmark(layout, args, model):
    clips = args.steps * args.batch
    index_files = [f for v in layout.videos('train') for f in list_index_files(layout.index_dir('train') / v)]
    released = ReleasedStyleClips(index_files[:clips], lambda v_name: layout.frames_dir('train') / v_name)
    ours = Subset(VideoDataset(layout.index_dir('train'), layout.frames_dir('train'), cache_frames=64),
                  range(clips))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = LossSettings('MemAE', 'released', entropy_weight=0.0002)

    def steps(dataset, workers):  # the same optimisation step for both: only the loading differs
        for _, batch in DataLoader(dataset, batch_size=args.batch, num_workers=workers):
            training_step(model, batch, optimizer, losses)
    _, released_seconds = timed(lambda: steps(released, 0))
    _, our_seconds = timed(lambda: steps(ours, args.workers))
    flops = flops_per_clip(model, ours[0][1], backward=True)
    return clips, [{'path': 'released loading', 'seconds': released_seconds, 'gflop_per_clip': flops / 1e9},
                   {'path': f'ours ({args.workers} workers)', 'seconds': our_seconds, 'gflop_per_clip': flops / 1e9}]


def write_result(path, result):
    """Write ``result`` to ``--out`` when given; the exit status 0."""
    if path:
        write_json(path, result)
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('mode', choices=('test', 'train', 'windows', 'oneclass', 'lockstep'))
    parser.add_argument('--DataRoot', default=None, help='prepared data (default: synthetic 256 x 256 videos)')
    parser.add_argument('--Dataset', default='UCSD_P2_256')
    parser.add_argument('--clips', type=int, default=48, help='test: clips of the first test video to score; '
                        'windows: clips at each end of every test video')
    parser.add_argument('--steps', type=int, default=6, help='train: optimisation steps per path')
    parser.add_argument('--batch', type=int, default=None, help='our batch size (test: 4; train: 10, as released)')
    parser.add_argument('--workers', type=int, default=0, help='our DataLoader workers')
    parser.add_argument('--preload', action='store_true', help='test: our per-clip path from preloaded frames')
    parser.add_argument('--window', type=int, default=16, help='test: clips per window of our default path (0: '
                        'time only the released and the per-clip loops)')
    parser.add_argument('--channels-last', action='store_true', help='test: our per-clip layers in channels_last_3d')
    parser.add_argument('--MemDim', type=int, default=2000)
    parser.add_argument('--size', type=int, default=256, help='frame size of the synthetic data (a multiple of 16)')
    parser.add_argument('--kdd-runs', type=int, default=2, help='oneclass: KDD runs of each command')
    parser.add_argument('--kdd-epochs', type=int, default=20, help='oneclass: KDD training epochs')
    parser.add_argument('--mnist-class', type=int, default=3, help='oneclass: the MNIST normal class trained')
    parser.add_argument('--mnist-epochs', type=int, default=10, help='oneclass: MNIST training epochs')
    parser.add_argument('--out', type=Path, default=None, help='also write the numbers to this JSON file')
    args = parser.parse_args(argv)
    if args.mode in ('oneclass', 'lockstep') and args.DataRoot is None:
        parser.error(f'{args.mode} needs --DataRoot, the folder of the real KDDCUP99 and MNIST files')
    if args.mode == 'windows' and args.window < 1:
        parser.error('windows compares the window path with the per-clip path: --window must be at least 1')
    args.batch = args.batch or (4 if args.mode == 'test' else 10)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.mode == 'lockstep':
        return write_result(args.out, lockstep_benchmark(args.DataRoot, args.kdd_runs, args.kdd_epochs,
                                                         args.mnist_epochs))
    if args.mode == 'oneclass':
        table = oneclass_benchmark(args.DataRoot, args.kdd_runs, args.kdd_epochs, args.mnist_class, args.mnist_epochs)
        return write_result(args.out, table)
    torch.manual_seed(0)
    model = AutoEncoderCov3DMem(1, args.MemDim)
    model.apply(weights_init)
    with tempfile.TemporaryDirectory() as tmp:
        if args.DataRoot is None:
            root = Path(tmp) / args.Dataset
            make_synthetic(root, size=args.size, train_videos=2, test_videos=1, num_frames=max(64, args.clips + 15),
                           progress=False)
        else:
            root = Path(args.DataRoot) / args.Dataset
        layout = VideoLayout(root)
        if args.mode == 'windows':
            result = windows_check(layout, args, calibrate_batch_norm(model, layout))
            clips = sum(row['clips'] for row in result['videos'])
            print(f"windows: {len(result['videos'])} test videos, {clips} clips: largest relative score difference "
                  f"{result['largest_relative_score_difference']:.1e}; per-clip path "
                  f"{result['seconds']['per clip']:.0f} s, windows {result['seconds']['windows']:.0f} s")
            return write_result(args.out, result)
        clips, paths = (test_benchmark(layout, args, calibrate_batch_norm(model, layout)) if args.mode == 'test'
                        else train_benchmark(layout, args, model.train()))
    gflops = sgemm_gflops()
    for path in paths:
        path['clips_per_second'] = clips / path['seconds']
        path['speedup'] = path['clips_per_second'] / paths[0]['clips_per_second']
        path['fraction_of_floor'] = path['clips_per_second'] * path['gflop_per_clip'] / gflops
    result = {'mode': args.mode, 'clips': clips, 'batch': args.batch, 'workers': args.workers,
              'preload': args.preload, 'channels_last': args.channels_last, 'window': args.window,
              'threads': torch.get_num_threads(), 'sgemm_gflops': gflops, 'paths': paths}
    print(f"{args.mode}: {clips} clips{' (forward and backward)' if args.mode == 'train' else ''}, sgemm "
          f"{gflops:.0f} GFLOP/s ({torch.get_num_threads()} threads); batch {args.batch}"
          f"{', preloaded frames' if args.preload else f', {args.workers} workers'}"
          f"{', channels_last_3d' if args.channels_last else ''}")
    for path in paths:
        difference = path.get('largest_relative_score_difference')
        print(f"  {path['path']:<40} {path['clips_per_second']:7.3f} clips/s  {path['speedup']:5.2f}x  "
              f"{path['gflop_per_clip']:6.1f} GFLOP/clip  {path['fraction_of_floor']:4.0%} of the floor"
              + ('' if difference is None else f'  score difference {difference:.1e}'))
    return write_result(args.out, result)


if __name__ == '__main__':
    sys.exit(run_cli(main))
