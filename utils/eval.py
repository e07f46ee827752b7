"""Frame-level evaluation of video anomaly scores: the released protocol, plus a few extra metrics.

The released protocol (``utils/eval.py`` of the authors' code), for clips of 16 frames at stride 1:

1. per video, the clip reconstruction errors e are turned into regularity scores
   p = 1 - (e - min e) / (max e - min e);
2. each clip is labelled with the ground truth of its centre frame: clip k covers frames k..k+15 (0-based)
   and takes the label of frame k + 8, which for all clips of a video is ``gt[8:-7]``;
3. all videos are concatenated and one ROC AUC is computed with the *normal* frames as the positive class for
   p (the same number as the AUC of the anomaly labels against 1 - p).

For other clip lengths T and start strides s, clip k starts at frame k * s and takes the label of frame
k * s + T // 2 (the frame at position T // 2 of the clip), which gives back ``gt[8:-7]`` for T = 16, s = 1.
When the index files are at hand, :func:`centre_frames_from_clips` reads those positions from them instead.

A video whose scores are all equal would give 0 / 0 in step 1; we give all its clips p = 1 (perfectly regular,
i.e. a normalised error of 0) instead of NaN, and :func:`evaluate` reports which videos that happened to.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn import metrics

from utils.errors import InputError
from utils.files import save_mat, write_json, write_text


@dataclass
class VideoResult:
    """The clip scores of one test video and the frame labels aligned to them (1 = anomalous)."""
    name: str
    scores: np.ndarray
    labels: np.ndarray


@dataclass
class Evaluation:
    auc: float                       # the released protocol's AUC
    auc_unnormalised: float          # raw errors of all videos pooled, no per-video min-max normalisation
    mean_video_auc: float            # mean AUC over videos that hold both normal and anomalous clips
    aupr: float                      # average precision, anomalies positive, score 1 - p
    eer: float                       # equal error rate of the released protocol's ROC
    num_clips: int
    num_anomalous: int
    constant_score_videos: list = field(default_factory=list)
    per_video_auc: dict = field(default_factory=dict)

    def as_dict(self):
        return dict(vars(self))


def centre_frame_positions(num_clips, clip_len=16, stride=1):
    """0-based frame indices of the frames whose labels the clips take: k * stride + clip_len // 2."""
    return np.arange(num_clips) * stride + clip_len // 2


def centre_frames_from_clips(clip_frame_indices):
    """The same, read from the clips' own 1-based frame lists (one row per clip)."""
    clip_frame_indices = np.asarray(clip_frame_indices)
    return clip_frame_indices[:, clip_frame_indices.shape[1] // 2] - 1


def align_labels(frame_labels, centre_frames, video_name=''):
    """Frame labels (0/1 per frame) taken at the clips' centre frames."""
    frame_labels = np.asarray(frame_labels).ravel()
    centre_frames = np.asarray(centre_frames)
    if len(centre_frames) and (centre_frames.min() < 0 or centre_frames.max() >= len(frame_labels)):
        raise InputError(f'video {video_name}: the ground truth has {len(frame_labels)} frames, but its clips '
                         f'reach frame {centre_frames.max() + 1}')
    return (frame_labels[centre_frames] > 0).astype(np.int64)


def regularity(scores):
    """p = 1 - (e - min e) / (max e - min e); all ones when the scores are constant."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.min()
    span = shifted.max()
    if span == 0:
        return np.ones_like(scores)
    return 1.0 - shifted / span


def _roc_auc(labels, scores):
    """AUC of anomaly labels (1 positive) against scores; NaN where only one class is present."""
    if len(np.unique(labels)) < 2:
        return float('nan')
    return float(metrics.roc_auc_score(labels, scores))


def equal_error_rate(labels, scores):
    """The error rate where the false positive rate equals the miss rate (anomalies, label 1, positive), on the ROC
    curve with straight segments between its points: where no threshold gives FPR = FNR exactly, the crossing of
    the segment between the two thresholds that bracket it."""
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    gap = (1.0 - tpr) - fpr  # the miss rate minus the false positive rate: from 1 at (0, 0) down to -1 at (1, 1)
    i = int(np.flatnonzero(gap <= 0)[0])  # >= 1, as gap[0] = 1
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def top_fraction_threshold(scores, fraction):
    """The KDDCUP99 rule's threshold: the ``100 (1 - fraction)``-th percentile of ``scores`` (NumPy's linear
    interpolation); the records scoring above it are flagged."""
    return float(np.percentile(scores, 100 * (1 - fraction)))


def top_fraction_metrics(scores, labels, fraction, is_test=None):
    """The KDDCUP99 rule (DAGMM's, which the paper follows): flag the records whose score lies above the
    ``100 (1 - fraction)``-th percentile of ``scores`` (NumPy's linear interpolation); precision, recall and F1 of
    the anomaly class (label 1) over the records that ``is_test`` marks (all when None), and the threshold.
    Records tied at the threshold are not flagged."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    threshold = top_fraction_threshold(scores, fraction)
    chosen = slice(None) if is_test is None else np.asarray(is_test, bool)
    flagged = (scores[chosen] > threshold).astype(np.int64)
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(labels[chosen], flagged, average='binary',
                                                                       pos_label=1, zero_division=0)
    return {'precision': float(precision), 'recall': float(recall), 'f1': float(f1), 'threshold': threshold}


def evaluate(videos):
    """All metrics for a list of :class:`VideoResult`; ``auc`` is the released protocol's number."""
    if not videos:
        raise ValueError('no test videos to evaluate')
    for video in videos:
        if len(video.scores) != len(video.labels):
            raise ValueError(f'video {video.name}: {len(video.scores)} clip scores but {len(video.labels)} '
                             f'aligned labels')
    labels = np.concatenate([v.labels for v in videos]).astype(np.int64)
    regular = np.concatenate([regularity(v.scores) for v in videos])
    raw = np.concatenate([np.asarray(v.scores, dtype=np.float64) for v in videos])
    # Released: normal frames are the positive class for the regularity p. 1 - p against anomaly labels is the
    # same ROC mirrored, so one convention serves every metric below.
    anomaly_score = 1.0 - regular
    per_video = {v.name: _roc_auc(v.labels, v.scores) for v in videos}
    defined = [a for a in per_video.values() if not np.isnan(a)]
    return Evaluation(
        auc=_roc_auc(labels, anomaly_score),
        auc_unnormalised=_roc_auc(labels, raw),
        mean_video_auc=float(np.mean(defined)) if defined else float('nan'),
        aupr=float(metrics.average_precision_score(labels, anomaly_score)) if labels.any() else float('nan'),
        eer=equal_error_rate(labels, anomaly_score) if 0 < labels.sum() < len(labels) else float('nan'),
        num_clips=int(len(labels)),
        num_anomalous=int(labels.sum()),
        constant_score_videos=[v.name for v in videos if np.ptp(np.asarray(v.scores)) == 0],
        per_video_auc=per_video,
    )


def write_acc_txt(res_path, data_path, auc):
    """``acc.txt`` as released: the data path, then ``AUC: <value>``."""
    write_text(Path(res_path, 'acc.txt'), f'{data_path}\nAUC: {auc}\n')


def write_label_mats(res_path, videos):
    """The two ``.mat`` files the released evaluation left beside ``acc.txt``, named after the last video as
    released: ``<last>_gt_label.mat`` (``gt_labels_list``: that video's clip labels, 1 = anomalous; the released
    code saved only the last video's) and ``<last>_est_label.mat`` (``est_labels_list``: the regularity of every
    clip of every video, in order)."""
    last = videos[-1]
    save_mat(Path(res_path, f'{last.name}_gt_label.mat'), {'gt_labels_list': np.asarray(last.labels, dtype=np.float64)})
    save_mat(Path(res_path, f'{last.name}_est_label.mat'),
             {'est_labels_list': np.concatenate([regularity(v.scores) for v in videos])})


def write_results_json(res_path, evaluation, extra):
    """``results.json``: every metric of :class:`Evaluation` plus ``extra`` (options, timings, ...)."""
    payload = {'metrics': evaluation.as_dict(), **extra}
    write_json(Path(res_path, 'results.json'), payload, sort_keys=True, default=str)
