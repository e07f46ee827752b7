"""Throughput of the video paths, measured side by side in one process on the same data and weights.

    python -m utils.benchmark test  [--DataRoot DIR --Dataset NAME] [--clips 48] [--batch 4] [--workers 0]
    python -m utils.benchmark train [--DataRoot DIR --Dataset NAME] [--steps 6] [--batch 10]
    python -m utils.benchmark oneclass --DataRoot DIR [--kdd-runs 2] [--kdd-epochs 20] [--mnist-class 3]

``test`` scores the same clips twice: (a) as the released test loop did (batch 1; each clip's index ``.mat`` read
twice and its 16 frames decoded and transformed one by one, every time), (b) as ``script_testing.py`` does
(index files read once per video, each frame decoded once, batches, ``torch.inference_mode``). ``train`` times
optimisation steps fed (a) by the released per-clip loading and (b) by ours. Both print clips per second, their
ratio, the model's FLOPs per clip (``torch.utils.flop_counter``), this machine's measured float32 matrix-multiply
rate, and the fraction of that floor each path reaches; ``test`` also prints the largest relative difference
between the two paths' scores. Without ``--DataRoot`` a synthetic 256 x 256 data set is written to a temporary
folder (data/synthetic.py; ``--size`` for smaller frames). ``oneclass`` times the image and KDDCUP99 commands
against a minimal loop over the same model, data and epochs (utils/experiments/oneclass_benchmark.py; real data
needed). Ratios measured in one run are what to compare: absolute speeds move with the load of a shared machine.
"""
import argparse
import copy
import json
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
from data.video_datasets import VideoDataset, VideoDatasetOneDir, frame_to_tensor
from models import AutoEncoderCov3DMem, weights_init
from utils.errors import run_cli
from utils.experiments.oneclass_benchmark import oneclass_benchmark
from utils.runtime import memory_layout
from utils.scoring import clip_batches, l2_scores, score_clips
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
    counter = FlopCounterMode(display=False)
    with counter:
        if backward:
            model(clip[None])['output'].sum().backward()
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
    """script_testing.py's own loop (``clip_batches``, ``score_clips``): ``--preload`` as its ``--PreloadFrames``,
    ``--channels-last`` as its ``--ChannelsLast``."""
    opt = SimpleNamespace(PreloadFrames=args.preload, BatchSize=args.batch, NumWorker=args.workers)
    memory_format = memory_layout(args.channels_last)
    model = copy.deepcopy(model).to(memory_format=memory_format)
    cpu = torch.device('cpu')
    with torch.inference_mode():
        return score_clips(model, clip_batches(dataset, opt, cpu), 'l2', cpu, True, memory_format)


def test_benchmark(layout, args, model):
    video = layout.videos('test')[0]
    index_files = list_index_files(layout.index_dir('test') / video)[:args.clips]
    frames = layout.frames_dir('test') / video
    released = ReleasedStyleClips(index_files, lambda v_name: frames)
    ours = VideoDatasetOneDir(layout.index_dir('test') / video, frames)
    ours.clips = ours.clips[:len(index_files)]
    released_result, released_seconds = timed(lambda: released_scores(model, released))
    our_result, our_seconds = timed(lambda: our_scores(model, ours, args))
    difference = float(np.max(np.abs(our_result - released_result) / np.abs(released_result)))
    return {'clips': len(index_files), 'released_seconds': released_seconds, 'our_seconds': our_seconds,
            'largest_relative_score_difference': difference}, ours[0][1]


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
    return {'clips': clips, 'released_seconds': released_seconds, 'our_seconds': our_seconds}, ours[0][1]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('mode', choices=('test', 'train', 'oneclass'))
    parser.add_argument('--DataRoot', default=None, help='prepared data (default: synthetic 256 x 256 videos)')
    parser.add_argument('--Dataset', default='UCSD_P2_256')
    parser.add_argument('--clips', type=int, default=48, help='test: clips of the first test video to score')
    parser.add_argument('--steps', type=int, default=6, help='train: optimisation steps per path')
    parser.add_argument('--batch', type=int, default=None, help='our batch size (test: 4; train: 10, as released)')
    parser.add_argument('--workers', type=int, default=0, help='our DataLoader workers')
    parser.add_argument('--preload', action='store_true', help='test: our clips from preloaded frames')
    parser.add_argument('--channels-last', action='store_true', help='test: our model in channels_last_3d')
    parser.add_argument('--MemDim', type=int, default=2000)
    parser.add_argument('--size', type=int, default=256, help='frame size of the synthetic data (a multiple of 16)')
    parser.add_argument('--kdd-runs', type=int, default=2, help='oneclass: KDD runs of each command')
    parser.add_argument('--kdd-epochs', type=int, default=20, help='oneclass: KDD training epochs')
    parser.add_argument('--mnist-class', type=int, default=3, help='oneclass: the MNIST normal class trained')
    parser.add_argument('--mnist-epochs', type=int, default=10, help='oneclass: MNIST training epochs')
    parser.add_argument('--out', type=Path, default=None, help='also write the numbers to this JSON file')
    args = parser.parse_args(argv)
    if args.mode == 'oneclass' and args.DataRoot is None:
        parser.error('oneclass needs --DataRoot, the folder of the real KDDCUP99 and MNIST files')
    args.batch = args.batch or (4 if args.mode == 'test' else 10)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.mode == 'oneclass':
        table = oneclass_benchmark(args.DataRoot, args.kdd_runs, args.kdd_epochs, args.mnist_class, args.mnist_epochs)
        if args.out:
            args.out.write_text(json.dumps(table, indent=2) + '\n')
        return 0
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
        if args.mode == 'test':
            model.eval()
            result, clip = test_benchmark(layout, args, model)
            flops = flops_per_clip(model, clip)
        else:
            model.train()
            result, clip = train_benchmark(layout, args, model)
            flops = flops_per_clip(model, clip, backward=True)
    gflops = sgemm_gflops()
    floor_clips_per_second = gflops * 1e9 / flops
    result.update({
        'mode': args.mode, 'batch': args.batch, 'workers': args.workers, 'preload': args.preload,
        'channels_last': args.channels_last, 'threads': torch.get_num_threads(),
        'gflop_per_clip': flops / 1e9, 'sgemm_gflops': gflops, 'floor_clips_per_second': floor_clips_per_second,
        'released_clips_per_second': result['clips'] / result['released_seconds'],
        'our_clips_per_second': result['clips'] / result['our_seconds']})
    result['speedup'] = result['our_clips_per_second'] / result['released_clips_per_second']
    result['our_fraction_of_floor'] = result['our_clips_per_second'] / floor_clips_per_second
    result['released_fraction_of_floor'] = result['released_clips_per_second'] / floor_clips_per_second
    print(f"{args.mode}: {result['clips']} clips, {result['gflop_per_clip']:.1f} GFLOP per clip"
          f"{' (forward and backward)' if args.mode == 'train' else ''}, sgemm {gflops:.0f} GFLOP/s "
          f"({torch.get_num_threads()} threads) -> floor {floor_clips_per_second:.2f} clips/s")
    print(f"  released loop: {result['released_clips_per_second']:.3f} clips/s "
          f"({result['released_fraction_of_floor']:.0%} of the floor)")
    layout_note = (', preloaded frames' if args.preload else f', {args.workers} workers') + \
        (', channels_last_3d' if args.channels_last else '')
    print(f"  ours (batch {args.batch}{layout_note}): {result['our_clips_per_second']:.3f} clips/s "
          f"({result['our_fraction_of_floor']:.0%} of the floor)")
    print(f"  speed-up: {result['speedup']:.2f}x")
    if 'largest_relative_score_difference' in result:
        print(f"  largest relative difference between the two paths' scores: "
              f"{result['largest_relative_score_difference']:.2e}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
