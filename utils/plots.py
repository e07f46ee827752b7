"""Figures of a video test run (``script_testing.py --Plots True``), as PNG files under ``<res_path>/plots/``:

* ``regularity_<video>.png``: the regularity score p of every clip against its centre frame, with the frames the
  ground truth marks anomalous shaded (the paper's Fig. 4 style);
* ``roc.png``: the ROC curve of the released protocol (all videos, anomalies positive, score 1 - p) and its AUC;
* ``error_maps.png``: for the clips with the highest normalised error, the centre frame, its reconstruction and
  the per-pixel error as a heat map;
* ``localization_roc.png`` (test sets with pixel masks): the ROC of the UCSD pixel-level criterion and the
  pixel-wise ROC (:mod:`utils.localization`), with the frame-level ROC for comparison;
* ``memory_usage.png`` (MemAE): the share of the addressing weight each memory slot received over the test set,
  slots sorted by share.

The usage figure draws what :class:`utils.memory_usage.SlotUsage` recorded while the test set was scored.

For one video of your own (``--Video``, :mod:`utils.single_video`): ``score_curve.png`` (regularity per frame) and
``most_anomalous.png`` (frames with their error heat map laid over them, :func:`heat_overlay`).
"""
from pathlib import Path

import numpy as np
import torch
from sklearn import metrics

from data.video_datasets import NORM_MEAN, NORM_STD
from utils.eval import regularity
from utils.files import make_folder, write_figure
from utils.scoring import centre_error_maps, reconstruction

ERROR_MAP_CLIPS = 4


def pyplot():
    """matplotlib's pyplot, drawing to files only (no display on servers)."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot
    return pyplot


def save_figure(plt, figure, path, dpi=110):
    """Lay out, write (whole or not at all) and close ``figure``."""
    try:
        figure.tight_layout()
        write_figure(figure, path, dpi=dpi)
    finally:
        plt.close(figure)


def label_roc_axes(axis, title):
    """The chance diagonal, the axis names and the title of an ROC figure."""
    axis.plot([0, 1], [0, 1], color='grey', lw=0.8, ls='--')
    axis.set_xlabel('false positive rate')
    axis.set_ylabel('true positive rate')
    axis.set_title(title, fontsize=9)


def shaded_spans(frame_labels):
    """1-based inclusive (start, end) frame ranges where ``frame_labels`` is 1."""
    padded = np.concatenate([[0], np.asarray(frame_labels).ravel() > 0, [0]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s) + 1, int(e)) for s, e in zip(edges[::2], edges[1::2])]


def plot_regularity(path, name, centre_frames, scores, frame_labels, auc=None):
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 2.6))
    for start, end in shaded_spans(frame_labels):
        axis.axvspan(start - 0.5, end + 0.5, color='tab:red', alpha=0.2, lw=0)
    axis.plot(np.asarray(centre_frames) + 1, regularity(scores), color='tab:blue', lw=1.2)
    axis.set_xlim(1, len(np.asarray(frame_labels).ravel()))
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel('frame')
    axis.set_ylabel('regularity score')
    title = name if auc is None or np.isnan(auc) else f'{name} (video AUC {auc:.3f})'
    axis.set_title(f'{title}; shaded: anomalous frames', fontsize=9)
    save_figure(plt, figure, path)


def plot_roc(path, labels, anomaly_scores, auc):
    plt = pyplot()
    fpr, tpr, _ = metrics.roc_curve(labels, anomaly_scores, pos_label=1)
    figure, axis = plt.subplots(figsize=(3.6, 3.6))
    axis.plot(fpr, tpr, color='tab:blue', label=f'AUC {auc:.4f}')
    label_roc_axes(axis, 'frame-level ROC')
    axis.legend(loc='lower right')
    save_figure(plt, figure, path)


def most_anomalous_clips(videos, count=ERROR_MAP_CLIPS):
    """(video name, clip index) of the ``count`` clips with the lowest regularity, one per video first."""
    ranked = sorted(((float(p), v.name, int(k)) for v in videos for k, p in enumerate(regularity(v.scores))))
    picks, seen = [], set()
    for _, name, k in ranked:  # the most anomalous clip of as many different videos as possible
        if name not in seen and len(picks) < count:
            picks.append((name, k))
            seen.add(name)
    for _, name, k in ranked:
        if len(picks) >= count:
            break
        if (name, k) not in picks:
            picks.append((name, k))
    return picks


def plot_error_maps(path, model, clips, titles, memory_model):
    """Centre frame | reconstruction | per-pixel L2 error, one row per clip (C x T x H x W, in [-1, 1]); the
    error maps of all rows share one colour scale (0 to the largest error in the figure), so rows compare."""
    plt = pyplot()
    device = next(model.parameters()).device
    batch = torch.stack(clips)
    with torch.inference_mode():
        recon = reconstruction(model(batch.to(device)), memory_model).float().cpu()
    errors = centre_error_maps(recon, batch.float())
    error_scale = max(float(errors.max()), 1e-6)
    figure, axes = plt.subplots(len(clips), 3, figsize=(6, 2.1 * len(clips)), squeeze=False)
    for row, (clip, rec, error, title) in enumerate(zip(clips, recon, errors, titles)):
        t = clip.shape[1] // 2
        frame, rebuilt = clip[:, t].float(), rec[:, t]
        panels = ((frame * NORM_STD + NORM_MEAN).clamp(0, 1), (rebuilt * NORM_STD + NORM_MEAN).clamp(0, 1))
        for col, image in enumerate(panels):
            axes[row, col].imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap='gray', vmin=0, vmax=1)
        heat = axes[row, 2].imshow(error, cmap='inferno', vmin=0, vmax=error_scale)
        figure.colorbar(heat, ax=axes[row, 2], fraction=0.046)
        axes[row, 0].set_ylabel(title, fontsize=8)
        for col, label in enumerate(('input', 'reconstruction', 'error (one scale)')):
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            if row == 0:
                axes[row, col].set_title(label, fontsize=9)
    save_figure(plt, figure, path)


def plot_localization_roc(path, localizer, frame_labels, frame_scores, frame_auc):
    """The ROC of the UCSD pixel-level criterion and the pixel-wise ROC (a :class:`LocalizationAccumulator`),
    beside the frame-level ROC of the released protocol."""
    plt = pyplot()
    result = localizer.result()
    labels, scores = localizer.labels_and_scores()
    figure, axis = plt.subplots(figsize=(4.2, 4.2))
    fpr, tpr, _ = metrics.roc_curve(frame_labels, frame_scores)
    axis.plot(fpr, tpr, color='tab:blue', label=f'frame level: AUC {frame_auc:.4f}')
    if 0 < labels.sum() < len(labels):
        fpr, tpr, _ = metrics.roc_curve(labels, scores)
        axis.plot(fpr, tpr, color='tab:red', label=f'pixel level (40 % rule): AUC {result.pixel_level_auc:.4f}')
    axis.plot(*localizer.pixel_roc(), color='tab:green', label=f'pixel-wise: AUROC {result.pixel_auroc:.4f}')
    label_roc_axes(axis, f'localization, {result.frames} frames of {len(result.videos)} videos with masks')
    axis.legend(loc='lower right', fontsize=8)
    save_figure(plt, figure, path)


def heat_overlay(frame, error_map, scale, opacity=0.65):
    """An RGB uint8 image: the frame (H x W x C uint8) with the error map (H x W) drawn over it in the 'inferno'
    colours, errors from 0 to ``scale`` shown from transparent to ``opacity``."""
    import matplotlib
    level = np.clip(np.asarray(error_map, dtype=np.float32) / scale, 0, 1)
    heat = matplotlib.colormaps['inferno'](level)[:, :, :3]
    grey = np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame
    alpha = opacity * level[:, :, None]
    return np.round((1 - alpha) * grey + alpha * 255 * heat).astype(np.uint8)


def plot_video_scores(path, name, regularity_per_frame, picks, clip_len):
    """Regularity against frame for one video, the picked frames marked; the first and last ``clip_len // 2``
    frames or so carry their nearest clip's value (dotted)."""
    plt = pyplot()
    values = np.asarray(regularity_per_frame)
    frames = np.arange(len(values))  # numbered from 0, as frame_scores.csv
    first, last = clip_len // 2, len(values) - (clip_len - 1 - clip_len // 2)
    figure, axis = plt.subplots(figsize=(7, 2.6))
    axis.plot(frames, values, color='tab:blue', lw=0.8, ls=':')
    axis.plot(frames[first:last], values[first:last], color='tab:blue', lw=1.2)
    axis.plot([p.frame for p in picks], [p.regularity for p in picks], 'o', color='tab:red', ms=4,
              label='most anomalous')
    axis.set_xlim(0, max(len(values) - 1, 1))
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel('frame')
    axis.set_ylabel('regularity score')
    axis.set_title(f'{name}: regularity (per-video min-max of the clip errors; dotted: nearest clip)', fontsize=9)
    axis.legend(loc='lower right', fontsize=8)
    save_figure(plt, figure, path)


def plot_decisions(path, name, statistic_per_frame, threshold, events, clip_len, rule='global'):
    """The decision rule's statistic (``global``: the raw error) against frame with the calibrated threshold and the
    events shaded (utils/calibration.py, utils/decision_rules.py)."""
    plt = pyplot()
    values = np.asarray(statistic_per_frame)
    figure, axis = plt.subplots(figsize=(7, 2.6))
    for k, (first, last) in enumerate(events):
        axis.axvspan(first - 0.5, last + 0.5, color='tab:red', alpha=0.2, lw=0, label='event' if k == 0 else None)
    axis.plot(np.arange(len(values)), values, color='tab:blue', lw=1.0)
    axis.axhline(threshold, color='tab:red', ls='--', lw=1.0, label='threshold')
    axis.set_xlim(0, max(len(values) - 1, 1))
    axis.set_xlabel('frame')
    axis.set_ylabel('clip error' if rule == 'global' else f'error / {rule} baseline')
    axis.set_title(f'{name}: error of the clip centred on each frame ({clip_len} frames), calibrated threshold',
                   fontsize=9)
    axis.legend(loc='upper right', fontsize=8)
    save_figure(plt, figure, path)


def plot_anomalous_frames(path, picks):
    """One row per picked frame: the frame, and the frame with its error heat map over it."""
    plt = pyplot()
    figure, axes = plt.subplots(len(picks), 2, figsize=(5, 2.5 * len(picks)), squeeze=False)
    for row, pick in enumerate(picks):
        for col, image in enumerate((pick.image, pick.overlay)):
            axes[row, col].imshow(image.squeeze(-1) if image.shape[2] == 1 else image, cmap='gray', vmin=0, vmax=255)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
        axes[row, 0].set_ylabel(f'frame {pick.frame}\nregularity {pick.regularity:.3f}', fontsize=8)
    axes[0, 0].set_title('frame', fontsize=9)
    axes[0, 1].set_title('reconstruction error', fontsize=9)
    save_figure(plt, figure, path)


def plot_slot_usage(path, usage):
    """The share of each used slot, most used first (slots never used are counted in the title only)."""
    plt = pyplot()
    shares = np.sort(usage.shares())[::-1]
    used = usage.slots_used
    shown = shares[:max(used, 1)]
    figure, axis = plt.subplots(figsize=(5, 3))
    axis.bar(np.arange(1, len(shown) + 1), shown, width=0.9, color='tab:purple')
    if shown.max() > 0:  # a memory that no query addressed has nothing to show on a log scale
        axis.set_yscale('log')
    axis.set_xlabel('memory slot, most used first')
    axis.set_ylabel('share of addressing weight')
    axis.set_title(f'{used} of {len(shares)} slots used; {usage.nonzero_per_query:.2f} non-zero weights per query',
                   fontsize=9)
    save_figure(plt, figure, path)


def write_test_plots(res_path, videos, frame_labels, centre_frames, datasets, evaluation, model, memory_model,
                     usage=None, localizer=None):
    """Every figure of the module docstring; returns the folder. ``frame_labels``, ``centre_frames`` and
    ``datasets`` map video names to the per-frame ground truth, the clips' 0-based centre frames and the clip
    dataset; ``usage`` is the :class:`SlotUsage` recorded while scoring (MemAE), ``localizer`` the
    :class:`LocalizationAccumulator` (test sets with pixel masks)."""
    folder = write_score_plots(res_path, videos, frame_labels, centre_frames, evaluation)
    if localizer is not None:
        plot_localization_roc(folder / 'localization_roc.png', localizer, np.concatenate([v.labels for v in videos]),
                              np.concatenate([1 - regularity(v.scores) for v in videos]), evaluation.auc)
    picks = most_anomalous_clips(videos)
    clips = [datasets[name][k][1] for name, k in picks]
    titles = [f'{name} frame {centre_frames[name][k] + 1}' for name, k in picks]
    plot_error_maps(folder / 'error_maps.png', model, clips, titles, memory_model)
    if usage is not None and usage.queries:
        plot_slot_usage(folder / 'memory_usage.png', usage)
    return folder


def write_score_plots(res_path, videos, frame_labels, centre_frames, evaluation):
    """The figures drawn from the scores alone (no model): regularity curves and the ROC; returns the folder."""
    folder = make_folder(Path(res_path) / 'plots')
    for video in videos:
        plot_regularity(folder / f'regularity_{video.name}.png', video.name, centre_frames[video.name],
                        video.scores, frame_labels[video.name], evaluation.per_video_auc.get(video.name))
    labels = np.concatenate([v.labels for v in videos])
    if 0 < labels.sum() < len(labels):
        plot_roc(folder / 'roc.png', labels, np.concatenate([1 - regularity(v.scores) for v in videos]),
                 evaluation.auc)
    return folder
