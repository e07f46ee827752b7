"""utils/scoring.py against hand-worked numbers: the two released clip scores, the choice between them, and the
batching of a test video's clips (in process, so that mutation testing sees these functions)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from data.layout import VideoLayout
from data.video_datasets import VideoDatasetOneDir
from utils.scoring import (SCORE_TYPES, clip_batches, clip_scores, l2_scores, model_scores, mse_scores,
                           resolve_score_type, score_clips)


def test_l2_score_is_the_mean_over_pixels_of_the_channel_norm():
    clips = torch.zeros(2, 2, 1, 1, 2)  # B x C x T x H x W
    recon = torch.zeros_like(clips)
    recon[0, :, 0, 0, 0] = torch.tensor([3.0, 4.0])  # clip 0: norms 5 and 0 -> 2.5
    recon[1, 0, 0, 0, :] = torch.tensor([1.0, -2.0])  # clip 1: norms 1 and 2 -> 1.5
    assert l2_scores(recon, clips) == pytest.approx([2.5, 1.5])
    assert l2_scores(clips + 1, clips + 1) == [0.0, 0.0]
    images, recon_images = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)  # one channel: the mean absolute error
    assert l2_scores(recon_images, images) == pytest.approx((recon_images - images).abs().mean((1, 2, 3)).tolist())


def test_mse_score_unnormalises_frames_and_leaves_images_alone():
    clips = -torch.ones(2, 1, 2, 1, 1)
    recon = clips.clone()
    recon[0] = 1.0                # [-1, 1] frames: 0 vs 1 in [0, 1] -> squared error 1 everywhere
    recon[1, 0, 0] = 0.0          # one of two values off by 0.5 after un-normalising -> 0.125
    assert mse_scores(recon, clips) == pytest.approx([1.0, 0.125])
    assert mse_scores(recon, clips, normalised=False) == pytest.approx([4.0, 0.5])  # raw differences 2 and 1
    assert clip_scores(recon, clips, 'mse', normalised=False) == pytest.approx([4.0, 0.5])
    assert clip_scores(recon, clips, 'mse') == pytest.approx([1.0, 0.125])  # video frames by default
    assert clip_scores(recon, clips, 'l2') == pytest.approx([2.0, 0.5])


def test_released_score_is_l2_for_the_video_memae_and_mse_for_everything_else():
    assert resolve_score_type('released', 'MemAE') == 'l2'
    assert resolve_score_type('released', 'AE') == 'mse' and resolve_score_type('released', 'AEL1') == 'mse'
    for family in ('image', 'tabular'):
        assert resolve_score_type('released', 'MemAE', family) == 'mse'
    assert resolve_score_type('l2', 'AE', 'image') == 'l2' and resolve_score_type('mse', 'MemAE') == 'mse'
    with pytest.raises(ValueError, match='released, l2, mse'):
        resolve_score_type('L2', 'MemAE')
    assert SCORE_TYPES == ('released', 'l2', 'mse')


class Shift(torch.nn.Module):
    """A 'model' whose reconstruction is its input plus one: every MSE score of [0, 1] data is exactly 1."""

    def __init__(self, memory):
        super().__init__()
        self.memory = memory

    def forward(self, x):
        return {'output': x + 1, 'att': None} if self.memory else x + 1


def test_model_scores_reads_the_memae_output_entry():
    batch = torch.rand(3, 4)
    for memory in (True, False):
        assert model_scores(Shift(memory), batch, 'mse', memory, normalised=False) == pytest.approx([1.0] * 3)
        # l2: the norm over the 4 values of a sample (its "channels") of a difference of 1 each
        assert model_scores(Shift(memory), batch, 'l2', memory, normalised=False) == pytest.approx([2.0] * 3)


def test_scored_clips_come_back_in_clip_order_whatever_the_batching(prepared_root):
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    name = layout.videos('test')[0]
    dataset = VideoDatasetOneDir(layout.index_dir('test') / name, layout.frames_dir('test') / name)
    # The reconstruction 0 is grey (0.5) after un-normalising, so the MSE of clip x is the mean of (x / 2)^2 and its
    # L2 score the mean of |x|: scores that differ from clip to clip, so that an order mix-up would show.
    reference = {'mse': [float(((dataset[i][1] * 0.5) ** 2).mean()) for i in range(len(dataset))],
                 'l2': [float(dataset[i][1].abs().mean()) for i in range(len(dataset))]}
    assert len(set(np.round(reference['l2'], 6))) == len(dataset) > 2

    class Grey(torch.nn.Module):
        def forward(self, x):
            return {'output': torch.zeros_like(x), 'att': None}

    device = torch.device('cpu')
    for preload in (False, True):
        for batch_size in (1, 2, len(dataset)):
            opt = SimpleNamespace(PreloadFrames=preload, BatchSize=batch_size, NumWorker=0)
            sizes = [len(clips) for _, clips in clip_batches(dataset, opt, device)]
            assert sizes == [min(batch_size, len(dataset) - start) for start in range(0, len(dataset), batch_size)]
            for score in ('mse', 'l2'):
                scores = score_clips(Grey(), clip_batches(dataset, opt, device), score, device, True)
                assert scores.dtype == np.float64
                np.testing.assert_allclose(scores, reference[score], rtol=1e-6)
