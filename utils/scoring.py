"""Per-clip reconstruction-error scores, as the released ``script_testing.py`` computes them.

Clips and reconstructions are normalised tensors (B x C x T x H x W, frames mapped to [-1, 1] by
Normalize(0.5, 0.5)). The released code scores the two models differently:

* ``l2`` (released for MemAE): r = reconstruction - input on the normalised tensors; the L2 norm of r over the
  channels at every pixel; the mean of that map over T x H x W.
* ``mse`` (released for AE): both tensors un-normalised to [0, 1] (x * 0.5 + 0.5), then the mean squared
  difference over C x T x H x W, in float32 NumPy as released. Up to a constant this is the paper's
  ||x - x^||^2 per clip, so it is also the paper's choice for MemAE.

``released`` picks the model's own score; per-video min-max normalisation in :mod:`utils.eval` makes any
constant factor irrelevant for the AUC.
"""
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from data.layout import VideoLayout
from data.video_datasets import NORM_MEAN, NORM_STD, PreloadedVideo, VideoDatasetOneDir
from models.clip_overlap import ClipWindowModel, PerClipModel
from utils.errors import InputError
from utils.interrupts import quiet_handover_in_worker
from utils.runtime import autocast, compile_model, memory_layout

SCORE_TYPES = ('released', 'l2', 'mse')
# The window path's per-clip layers run on at least this many clips at once: one clip at a time took 1.7x as long
# per clip (1.65 s against 0.95 s per 16 x 256 x 256 clip; 2026-11-29, one thread, the other core busy).
WINDOW_BATCH_MIN = 4
RELEASED_SCORE = {'MemAE': 'l2', 'AE': 'mse', 'AEL1': 'mse'}  # AE-l1 is an AE: scored as one


def resolve_score_type(score_type, model_name, family='video'):
    """The concrete score ('l2' or 'mse') for a ``--ScoreType`` value, a model and a data family. For images and
    records 'released' means the paper's squared error (the release has no such experiments)."""
    if score_type not in SCORE_TYPES:
        raise ValueError(f"unknown --ScoreType {score_type!r}; valid: {', '.join(SCORE_TYPES)}")
    if score_type != 'released':
        return score_type
    return RELEASED_SCORE[model_name] if family == 'video' else 'mse'


MODEL_OVERFLOW = "the model's output overflowed (with --AMP, try without) or its weights are damaged"


def finite_scores(scores, where, item='clip', cause=MODEL_OVERFLOW, first=0):
    """``scores`` if all are finite; else one sentence naming ``where`` (a video, a unit, a file) and the first
    ``item`` whose score is NaN or infinite, which would otherwise surface as an error inside scikit-learn's ROC
    code, or as a silently wrong AUC. ``first``: the number of the first score's item (a stream's scores come a
    batch at a time)."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(scores, dtype=np.float64)))
    if bad.size:
        raise InputError(f'{where}: the score of {item} {first + bad[0]} (0-based) is {scores[bad[0]]}, {bad.size} '
                         f'of {len(scores)} are not finite; {cause}')
    return scores


def l2_scores(recon, clips):
    """Mean over T x H x W of the per-pixel L2 norm over channels: one float per clip."""
    error_map = torch.sum((recon - clips) ** 2, dim=1) ** 0.5
    return torch.mean(error_map.reshape(error_map.shape[0], -1), dim=1).cpu().tolist()


def mse_scores(recon, clips, normalised=True):
    """Mean squared error per sample, after un-normalising [-1, 1] data to [0, 1] when ``normalised``."""
    if normalised:
        recon, clips = recon.float() * NORM_STD + NORM_MEAN, clips.float() * NORM_STD + NORM_MEAN
    difference = recon.cpu().numpy() - clips.cpu().numpy()
    # one NumPy reduction per row: the same pairwise float32 sums as a np.mean per sample (bit for bit)
    return np.mean((difference ** 2).reshape(len(difference), -1), axis=1).tolist()


def reconstruction(output, memory_model):
    """The reconstruction in a model's output (a MemAE returns it under 'output', with the addressing weights)."""
    return output['output'] if memory_model else output


def model_scores(model, batch, score, memory_model, normalised):
    """Run ``model`` on a batch and score each sample's reconstruction (``normalised``: see :func:`clip_scores`)."""
    return clip_scores(reconstruction(model(batch), memory_model), batch, score, normalised)


def centre_error_maps(recon, clips):
    """The per-pixel L2 error (over channels, on the normalised frames) of every clip's centre frame, position
    T // 2, the frame whose label the clip takes: B x H x W float32 NumPy."""
    t = clips.shape[2] // 2
    return torch.linalg.vector_norm((recon[:, :, t] - clips[:, :, t]).float(), dim=1).cpu().numpy()


def scored_batch(recon, clips, score, on_maps):
    """The scores of one batch; ``on_maps`` (if given) receives the batch's centre error maps."""
    if on_maps is not None:
        on_maps(centre_error_maps(recon, clips))
    return clip_scores(recon, clips, score)


def clip_scores(recon, clips, score, normalised=True):
    """Scores of a batch under the concrete score name ('l2' or 'mse'). ``normalised``: the data lies in [-1, 1]
    (video frames) rather than [0, 1] (images, records), which only the MSE un-normalises."""
    return l2_scores(recon, clips) if score == 'l2' else mse_scores(recon, clips, normalised)


def clip_batches(dataset, opt, device):
    """The clips of one video in batches of --BatchSize, in order: cut from its frames preloaded on the device
    (--PreloadFrames), or through a DataLoader."""
    if opt.PreloadFrames:
        return PreloadedVideo(dataset, device).batches(opt.BatchSize)
    return DataLoader(dataset, batch_size=opt.BatchSize, shuffle=False, num_workers=opt.NumWorker,
                      pin_memory=device.type == 'cuda', worker_init_fn=quiet_handover_in_worker)


def frame_window_scorer(model, opt, memory_format):
    """What scores windows of frames decoded on the fly (``--Video``, ``--Stream``): a :class:`ClipWindowModel` of
    the (eval-mode) model with ``--ClipWindow`` > 0, else a :class:`PerClipModel`; in ``memory_format``, compiled
    with ``--Compile``."""
    window_model = ClipWindowModel(model) if opt.ClipWindow else PerClipModel(model)
    return compile_model(window_model.to(memory_format=memory_format), opt.Compile)


def video_scorer(model, opt):
    """What scores the clips of a video: with ``--ClipWindow`` > 0 a :class:`ClipWindowModel` of the (eval-mode)
    model, else the model itself; compiled with ``--Compile``."""
    return compile_model(ClipWindowModel(model) if opt.ClipWindow else model, opt.Compile)


def score_video(scorer, dataset, opt, score, device, memory_model, memory_format=torch.contiguous_format,
                on_maps=None):
    """Per-clip scores of one video (a :class:`VideoDatasetOneDir`), in clip order, by the scorer of
    :func:`video_scorer`; ``on_maps``, if given, receives the clips' centre error maps in clip order."""
    if not opt.ClipWindow:
        return score_clips(scorer, clip_batches(dataset, opt, device), score, device, memory_model, memory_format,
                           on_maps)
    video = PreloadedVideo(dataset, device)
    return score_windows(scorer, video.windows(opt.ClipWindow), video.rows.shape[1], score, memory_model,
                         window_batch(opt), memory_format, on_maps)


def prepared_video_scorer(model, opt, score, device, memory_model):
    """``scores(dataset, where, on_maps=None)``: the per-clip scores of one prepared video (a
    :class:`VideoDatasetOneDir`) by ``model`` as the options lay it out (--ChannelsLast) and score it
    (--ClipWindow, --Compile), checked finite (``where`` names the video in the error). Call it under
    ``torch.inference_mode()`` and the options' autocast."""
    memory_format = memory_layout(opt.ChannelsLast)
    scorer = video_scorer(model.to(memory_format=memory_format), opt)

    def scores(dataset, where, on_maps=None):
        return finite_scores(score_video(scorer, dataset, opt, score, device, memory_model, memory_format, on_maps),
                             where)
    return scores


def held_out_clip_errors(opt, model, device, memory_model, score):
    """{name: the raw clip errors, in order} of each training video that --HoldOutVideos held out of training (normal
    footage the model has not seen: what calibrates decisions)."""
    layout = VideoLayout(Path(opt.DataRoot) / opt.Dataset)
    scores = prepared_video_scorer(model, opt, score, device, memory_model)
    errors = {}
    with torch.inference_mode(), autocast(device, opt.AMP):
        for name in layout.held_out(opt.HoldOutVideos):
            dataset = VideoDatasetOneDir.in_layout(layout, 'train', name, channels=opt.ImgChnNum,
                                                   frame_num=opt.FrameNum)
            errors[name] = scores(dataset, f'training video {name} ({layout.frames_dir("train") / name})')
    return errors


def window_batch(opt):
    """How many clips the window path's per-clip layers take at once."""
    return max(opt.BatchSize, WINDOW_BATCH_MIN)


def score_windows(window_model, windows, clip_len, score, memory_model, batch_size,
                  memory_format=torch.contiguous_format, on_maps=None):
    """Per-clip scores, in clip order, from windows of overlapping clips: ``windows`` yields ``(positions,
    frames)`` as :meth:`PreloadedVideo.windows` does, clip ``i`` of a window being its frames ``i .. i + clip_len
    - 1``."""
    scores = []
    for _, frames in windows:
        output = window_model(frames, clip_len, memory_format, batch_size)
        clips = frames.unfold(0, clip_len, 1).permute(0, 1, 4, 2, 3)  # K x C x T x H x W, views of the frames
        scores += scored_batch(reconstruction(output, memory_model), clips, score, on_maps)
    return np.asarray(scores, dtype=np.float64)


def score_clips(model, loader, score, device, memory_model, memory_format=torch.contiguous_format, on_maps=None):
    """Per-clip scores of one video, in clip order."""
    scores = []
    for _, clips in loader:
        clips = clips.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        scores += scored_batch(reconstruction(model(clips), memory_model), clips, score, on_maps)
    return np.asarray(scores, dtype=np.float64)
