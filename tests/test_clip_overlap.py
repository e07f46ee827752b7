"""The window path of video testing (models/clip_overlap.py, PreloadedVideo.windows, utils.scoring.score_windows)
against the per-clip forward pass of the model, clip by clip."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data.video_datasets import ClipDataset, PreloadedVideo, VideoDatasetOneDir
from data.layout import VideoLayout
from models import AutoEncoderCov3D, AutoEncoderCov3DMem, weights_init
from models.clip_overlap import ClipWindowModel, PerClipModel, image_layer_by_matmul
from utils.memory_usage import SlotUsage
from utils.scoring import score_clips, score_video, score_windows, video_scorer


def trained_looking(model, seed=0):
    """A model with random weights and batch-norm statistics far from the identity, so that a folding mistake
    (scale, shift, running mean or variance, eps) changes the output; in eval mode."""
    torch.manual_seed(seed)
    model.apply(weights_init)
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)):
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.3, 3.0)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.3, 0.3)
        norm.running_var[::7] = 2e-5  # channels where eps (1e-5) matters: a scale of 0.9 with it, 1.1 without
        norm.weight.data[::7] = 0.005
    for conv in (m for m in model.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))):
        conv.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def every_clip(frames, clip_len=16):
    """F x C x H x W -> the K = F - clip_len + 1 clips, K x C x T x H x W."""
    return frames.unfold(0, clip_len, 1).permute(0, 1, 4, 2, 3)


def close(window, reference):
    scale = reference.abs().max()
    return float((window - reference).abs().max() / scale)


@pytest.mark.parametrize('channels, frames_in_window', [(1, 16), (1, 21), (3, 18)])
def test_window_equals_the_model_on_every_clip(channels, frames_in_window):
    models = [trained_looking(AutoEncoderCov3DMem(channels, 30, shrink_thres=0.01)),
              trained_looking(AutoEncoderCov3D(channels), seed=1)]
    frames = torch.randn(frames_in_window, channels, 32, 48)
    for model in models:
        with torch.inference_mode():
            window = ClipWindowModel(model)(frames, 16, batch_size=3)
            reference = model(every_clip(frames))
        if isinstance(model, AutoEncoderCov3DMem):
            assert close(window['att'], reference['att']) < 1e-5
            window, reference = window['output'], reference['output']
        assert window.shape == reference.shape == (frames_in_window - 15, channels, 16, 32, 48)
        assert close(window, reference) < 1e-5


def test_per_clip_model_runs_every_clip_of_a_window_through_the_model_in_batches():
    frames = torch.randn(20, 1, 16, 16)
    for model in (trained_looking(AutoEncoderCov3DMem(1, 10)), trained_looking(AutoEncoderCov3D(1), seed=1)):
        with torch.inference_mode():
            batched = PerClipModel(model)(frames, 16, batch_size=2)  # 5 clips: batches of 2, 2, 1
            reference = model(every_clip(frames))
        if isinstance(model, AutoEncoderCov3DMem):
            assert torch.allclose(batched['att'], reference['att'], atol=1e-6)
            batched, reference = batched['output'], reference['output']
        assert batched.shape == (5, 1, 16, 16, 16) and torch.allclose(batched, reference, atol=1e-6)


def test_window_with_clips_of_eight_frames_and_channels_last():
    model = trained_looking(AutoEncoderCov3D(1))
    frames = torch.randn(12, 1, 16, 16)
    with torch.inference_mode():
        window = ClipWindowModel(model)(frames, 8, torch.channels_last_3d)
        reference = model(every_clip(frames, 8))
    assert close(window, reference) < 1e-5


def test_window_model_leaves_the_trained_model_alone_and_refuses_training_mode():
    model = trained_looking(AutoEncoderCov3DMem(1, 10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ClipWindowModel(model)(torch.randn(17, 1, 16, 16), 16)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match='eval mode'):
        ClipWindowModel(model.train())


def test_image_layer_by_matmul_equals_conv_transpose3d():
    torch.manual_seed(0)
    for out_channels in (1, 3):
        x = torch.randn(2, 5, 3, 4, 6)
        weight, bias = torch.randn(5, out_channels, 3, 3, 3), torch.randn(out_channels)
        expected = F.conv_transpose3d(x, weight, bias, (1, 2, 2), 1, (0, 1, 1))
        assert torch.allclose(image_layer_by_matmul(x, weight, bias), expected, atol=1e-5)


def test_memory_hooks_see_the_same_queries_as_in_the_per_clip_path():
    model = trained_looking(AutoEncoderCov3DMem(1, 12, shrink_thres=0.02))
    frames = torch.randn(20, 1, 16, 16)
    with torch.inference_mode(), SlotUsage(model.mem_rep) as windowed:
        ClipWindowModel(model)(frames, 16, batch_size=2)
    with torch.inference_mode(), SlotUsage(model.mem_rep) as plain:
        model(every_clip(frames))
    assert windowed.queries == plain.queries == 5 * 2 * 1 * 1
    assert torch.allclose(windowed.mass, plain.mass, atol=1e-5)


def video_with_a_gap(prepared_root):
    """Test001's five clips with the third left out (the clips no longer one run) and the last repeated."""
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    dataset = VideoDatasetOneDir(layout.index_dir('test') / 'Test001', layout.frames_dir('test') / 'Test001')
    clips = dataset.clips[:2] + dataset.clips[3:] + dataset.clips[-1:]
    return ClipDataset(clips)


def test_windows_follow_runs_of_consecutive_clips(prepared_root):
    video = PreloadedVideo(video_with_a_gap(prepared_root), torch.device('cpu'))
    assert [list(p) for p, _ in video.windows(2)] == [[0, 1], [2, 3], [4]]  # 2 clips at most
    windows = list(video.windows(3))
    assert [list(p) for p, _ in windows] == [[0, 1], [2, 3], [4]]  # cut at the gap and at the repeated clip
    clips = [clip for _, clip in video.batches(len(video))][0]
    for positions, frames in windows:
        assert torch.equal(every_clip(frames), clips[positions.start:positions.stop])


def test_window_scores_equal_per_clip_scores_on_a_video_with_a_gap(prepared_root):
    model = trained_looking(AutoEncoderCov3DMem(1, 20))
    dataset = video_with_a_gap(prepared_root)
    cpu = torch.device('cpu')
    with torch.inference_mode():
        per_clip = score_clips(model, PreloadedVideo(dataset, cpu).batches(1), 'l2', cpu, True)
        video = PreloadedVideo(dataset, cpu)
        for clips_per_window in (1, 3, 16):
            windowed = score_windows(ClipWindowModel(model), video.windows(clips_per_window), 16, 'l2', True, 4)
            assert np.allclose(windowed, per_clip, rtol=1e-6, atol=0)


def test_score_video_takes_the_window_path_unless_clip_window_is_0(prepared_root):
    model = trained_looking(AutoEncoderCov3D(1))
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    dataset = VideoDatasetOneDir(layout.index_dir('test') / 'Test001', layout.frames_dir('test') / 'Test001')
    cpu = torch.device('cpu')
    scores = {}
    for window in (0, 2):
        opt = SimpleNamespace(ClipWindow=window, Compile=False, BatchSize=1, PreloadFrames=False, NumWorker=0)
        scorer = video_scorer(model, opt)
        assert isinstance(scorer, ClipWindowModel) == bool(window)
        with torch.inference_mode():
            scores[window] = score_video(scorer, dataset, opt, 'mse', cpu, False)
    assert len(scores[0]) == len(dataset) and np.allclose(scores[2], scores[0], rtol=1e-5, atol=0)


@pytest.mark.parametrize('window', [0, 2])
def test_both_paths_hand_over_the_centre_error_maps_in_clip_order(prepared_root, window):
    model = trained_looking(AutoEncoderCov3DMem(1, 20))
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    dataset = VideoDatasetOneDir(layout.index_dir('test') / 'Test002', layout.frames_dir('test') / 'Test002')
    opt = SimpleNamespace(ClipWindow=window, Compile=False, BatchSize=2, PreloadFrames=False, NumWorker=0)
    handed = []
    with torch.inference_mode():
        scores = score_video(video_scorer(model, opt), dataset, opt, 'l2', torch.device('cpu'), True,
                             on_maps=handed.append)
        clips = torch.stack([dataset[i][1] for i in range(len(dataset))])
        r = model(clips)['output'] - clips
    expected = torch.sqrt(torch.sum(r[:, :, 8] ** 2, dim=1)).numpy()  # clip i's frame i + 8: its label's frame
    maps = np.concatenate(handed)
    assert maps.shape == (5, 32, 32) and np.allclose(maps, expected, rtol=1e-5, atol=1e-6)
    # and the scores beside them are the released MemAE score, the mean of the per-pixel L2 norm over the clip
    assert np.allclose(scores, torch.sqrt(torch.sum(r ** 2, dim=1)).mean(dim=(1, 2, 3)).numpy(), rtol=1e-5)


def test_frames_decoded_on_the_fly_are_scored_in_windows_unless_clip_window_is_0():
    """--Video and --Stream share their scorer: windows of clips with --ClipWindow > 0 (the faster path), each clip
    through the whole model with 0. Both give the same scores, so only the kind of scorer tells them apart."""
    from utils.scoring import frame_window_scorer
    model = AutoEncoderCov3D(1).eval()
    assert isinstance(frame_window_scorer(model, SimpleNamespace(ClipWindow=16, Compile=False),
                                          torch.contiguous_format), ClipWindowModel)
    assert isinstance(frame_window_scorer(model, SimpleNamespace(ClipWindow=0, Compile=False),
                                          torch.contiguous_format), PerClipModel)
