"""Calibrated anomaly decisions from normal data (beyond the paper; docs/DEPLOYMENT.md).

The paper's score is the per-video min-max regularity: it needs the whole video, and every video's least regular
frame gets 0, a normal video's included. A deployment needs a fixed rule instead. Calibration scores footage that
the user says is normal and keeps the distribution of its raw per-clip errors (:data:`QUANTILES` quantiles). Then:

* the **threshold** for a false-alarm rate r is the (1 - r) quantile of the normal errors: a clip of normal
  footage like the calibration's exceeds it with probability r;
* a clip's **tail probability** is the share of normal errors at or above its error (interpolated between the
  stored quantiles; 0 above the largest normal error): small means unlike the normal footage;
* a frame is **anomalous** when its error (that of the clip centred on it, as the frame scores of
  utils/single_video.py) exceeds the threshold; **events** are runs of anomalous frames, runs closer than a gap
  merged and runs shorter than a minimum dropped.

On a labelled test set (``script_testing.py`` with a calibration), :func:`decision_report` says whether the
threshold holds: the realised false-alarm rate on the normal test clips against the requested one, clip-level
precision, recall and F1 at the threshold, and event-level counts (anomalous events detected; false-alarm events,
which touch no anomalous clip, per 1,000 normal clips).

The calibration file (JSON) records what it came from, the options its errors depend on (``signature``) and the
sha256 of the weights; it is refused, with one sentence, for other weights or options.
"""
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn import metrics

from utils.errors import InputError
from utils.files import read_json, write_json

QUANTILES = 1001  # probabilities 0, 0.001, ..., 1: a false-alarm rate is resolved to 0.001
CALIBRATION_SUFFIX = '_calibration.json'


def weights_sha256(path):
    digest = hashlib.sha256()
    with Path(path).open('rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def calibration_path(weights):
    """Where the calibration of a weights file lives: beside it, ``<weights stem>_calibration.json``."""
    weights = Path(weights)
    return weights.with_name(weights.stem + CALIBRATION_SUFFIX)


@dataclass
class Calibration:
    quantiles: list          # the normal clip errors at probabilities 0, 1 / (QUANTILES - 1), ..., 1
    clips: int               # how many normal clips
    source: str              # what was scored
    signature: dict          # the options the errors depend on
    weights_sha256: str

    @classmethod
    def from_errors(cls, errors, source, signature, sha256):
        errors = np.asarray(errors, dtype=np.float64)
        if errors.size < 2 or not np.all(np.isfinite(errors)):
            raise InputError(f'calibration needs at least two finite clip errors; {source} gave {errors.size}')
        return cls(np.quantile(errors, np.linspace(0, 1, QUANTILES)).tolist(), int(errors.size), str(source),
                   dict(signature), sha256)

    def content_problem(self):
        """What makes a parsed calibration unusable, in a few words (its field named), or None: quantiles that are
        not finite numbers in ascending order (NaN would never alarm, a descending list always), a count of clips
        that is no positive whole number."""
        quantiles = np.asarray(self.quantiles, dtype=object)
        if not all(isinstance(q, (int, float)) and not isinstance(q, bool) for q in quantiles):
            return '"quantiles" holds something other than numbers'
        quantiles = quantiles.astype(np.float64)
        if not np.all(np.isfinite(quantiles)):
            return '"quantiles" holds NaN or infinite values'
        if np.any(np.diff(quantiles) < 0):
            return '"quantiles" are not in ascending order'
        if not isinstance(self.clips, int) or isinstance(self.clips, bool) or self.clips < 2:
            return f'"clips" must be a whole number of at least 2, not {self.clips!r}'
        return None

    @property
    def resolution(self):
        """The smallest false-alarm rate the calibration can resolve."""
        return max(1 / (QUANTILES - 1), 1 / self.clips)

    def threshold(self, false_alarm_rate):
        """The clip error above which a clip is anomalous at ``false_alarm_rate`` (the (1 - rate) quantile)."""
        if not self.resolution <= false_alarm_rate < 1:
            raise InputError(f'--FalseAlarmRate {false_alarm_rate} is outside what this calibration resolves: '
                             f'from {self.resolution:g} ({self.clips} normal clips, {QUANTILES} quantiles) to below 1')
        return float(np.interp(1 - false_alarm_rate, np.linspace(0, 1, QUANTILES), self.quantiles))

    def tail_probability(self, errors):
        """The share of normal clip errors at or above each of ``errors`` (interpolated; 0 above the largest)."""
        # the quantiles repeat where normal errors are equal: each distinct value at the lowest probability it has
        values, first = np.unique(self.quantiles, return_index=True)
        below = np.interp(np.asarray(errors, dtype=np.float64), values, np.linspace(0, 1, QUANTILES)[first],
                          left=0.0, right=1.0)
        return 1 - below

    def save(self, path):
        write_json(path, asdict(self), sort_keys=True)

    @classmethod
    def load(cls, path, signature, sha256):
        """The calibration in ``path``, refused unless it was made with these options and weights."""
        stored = read_json(path, 'a calibration')
        try:
            calibration = cls(**stored)
            if len(calibration.quantiles) != QUANTILES or not isinstance(calibration.signature, dict):
                raise ValueError
        except (TypeError, ValueError):
            raise InputError(f'{path} is not a calibration file of this version (script_testing.py --Calibrate '
                             'True writes one)') from None
        problem = calibration.content_problem()
        if problem:
            raise InputError(f'{path} is damaged: {problem}; calibrate again with --Calibrate True')
        if calibration.weights_sha256 != sha256:
            raise InputError(f'{path} calibrates other weights (sha256 {calibration.weights_sha256[:12]}..., these '
                             f'are {sha256[:12]}...): calibrate these weights with --Calibrate True')
        differing = sorted(key for key in {**signature, **calibration.signature}
                           if signature.get(key) != calibration.signature.get(key))
        if differing:
            key = differing[0]
            raise InputError(f'{path} was made with {key} = {calibration.signature.get(key)!r}, but this run has '
                             f'{signature.get(key)!r}: the errors would not be comparable; calibrate again with '
                             'these options')
        return calibration


def is_anomalous(errors, threshold):
    """Whether each clip error is anomalous at ``threshold``: above it (an error equal to it is normal). The one
    rule of ``--Video``, ``--Stream`` and a test set's calibrated.json."""
    return np.asarray(errors, dtype=np.float64) > threshold


def anomaly_events(anomalous, min_frames, merge_gap):
    """Runs of True in ``anomalous`` (one bool per frame) as (first, last) frame pairs, inclusive: runs separated
    by at most ``merge_gap`` normal frames merged, then runs shorter than ``min_frames`` dropped."""
    flags = np.asarray(anomalous, dtype=bool)
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    runs = []
    for start, end in zip(starts.tolist(), ends.tolist()):
        if runs and start - runs[-1][1] - 1 <= merge_gap:
            runs[-1][1] = end
        else:
            runs.append([start, end])
    return [(start, end) for start, end in runs if end - start + 1 >= min_frames]


def chosen_calibration(calibration_flag, weights):
    """The calibration file to decide with: ``--Calibration`` (which must exist), else the one beside the weights if
    there is one, else None (no decisions)."""
    if calibration_flag:
        if not Path(calibration_flag).is_file():
            raise InputError(f'--Calibration {calibration_flag} does not exist; write one with --Calibrate True')
        return Path(calibration_flag)
    beside = calibration_path(weights)
    return beside if beside.is_file() else None


def overlaps(run, runs):
    return any(first <= run[1] and run[0] <= last for first, last in runs)


def decision_report(videos, threshold, false_alarm_rate, min_frames, merge_gap):
    """Whether the threshold holds on labelled videos (:class:`utils.eval.VideoResult`: clip scores and clip labels,
    1 = anomalous): the realised false-alarm rate on normal clips, precision / recall / F1 of the anomalous clips,
    and events (runs of flagged clips, :func:`anomaly_events`) against the runs of anomalous clips."""
    flagged = {video.name: is_anomalous(video.scores, threshold) for video in videos}
    labels = np.concatenate([np.asarray(video.labels, dtype=int) for video in videos])
    decided = np.concatenate([flagged[video.name] for video in videos])
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(labels, decided.astype(int), average='binary',
                                                                       zero_division=0)
    per_video, detected, truths, false_alarms = {}, 0, 0, 0
    for video in videos:
        events = anomaly_events(flagged[video.name], min_frames, merge_gap)
        truth = anomaly_events(np.asarray(video.labels) == 1, 1, 0)
        false = [event for event in events if not overlaps(event, truth)]
        detected += sum(overlaps(run, events) for run in truth)
        truths, false_alarms = truths + len(truth), false_alarms + len(false)
        per_video[video.name] = {'events': events, 'false_alarm_events': false, 'anomalous_runs': truth}
    normal = labels == 0
    return {'threshold': threshold, 'false_alarm_rate': {'requested': false_alarm_rate,
                                                         'realised': float(decided[normal].mean()) if normal.any()
                                                         else None},
            'clips': {'precision': float(precision), 'recall': float(recall), 'f1': float(f1),
                      'normal': int(normal.sum()), 'anomalous': int((~normal).sum())},
            'events': {'anomalous_runs': truths, 'detected': detected, 'false_alarms': false_alarms,
                       'false_alarms_per_1000_normal_clips': 1000 * false_alarms / max(int(normal.sum()), 1)},
            'per_video': per_video}
