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

With a causal decision rule other than ``global`` (``--DecisionRule``, utils/decision_rules.py) the same holds for
the rule's statistic (the error relative to the stream's own level) instead of the raw error: the calibration
keeps the quantiles of each rule's statistic too.

The calibration file (JSON) records what it came from (and what kind of footage: frame images or a video file),
the options its errors depend on (``signature``) and the sha256 of the weights; it is refused, with one sentence,
for other weights or options. Footage that does not look like the calibration's (:func:`calibration_mismatch`)
is scored, with a warning.
"""
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn import metrics

from utils.decision_rules import BASELINE_RULES, pooled_statistics, rule_statistics
from utils.errors import InputError
from utils.files import read_json, write_json

QUANTILES = 1001  # probabilities 0, 0.001, ..., 1: a false-alarm rate is resolved to 0.001
PROBABILITIES = np.linspace(0, 1, QUANTILES)  # those probabilities
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
    # Added with the causal rules (files written before them hold none of these, and decide with 'global' only):
    rules: dict = None       # rule name -> the quantiles of its statistic at the same probabilities
    baseline_clips: int = None  # the rules' --BaselineClips
    source_kind: str = None  # 'frame images' or '<suffix> video file': what kind of footage was scored

    @classmethod
    def from_errors(cls, errors, source, signature, sha256, baseline_clips=None, source_kind=None):
        """From the clip errors of normal footage: one array, or a list of one array per video (each read from its
        start by the rules); with ``baseline_clips`` the quantiles of every rule's statistic too."""
        videos = [np.asarray(video, dtype=np.float64).ravel() for video in
                  (errors if isinstance(errors, list) else [errors])]
        errors = np.concatenate(videos)
        if errors.size < 2 or not np.all(np.isfinite(errors)):
            raise InputError(f'calibration needs at least two finite clip errors; {source} gave {errors.size}')
        rules = None if baseline_clips is None else {
            rule: quantiles_of(pooled_statistics(rule, baseline_clips, videos)) for rule in BASELINE_RULES}
        return cls(quantiles_of(errors), int(errors.size), str(source), dict(signature), sha256, rules,
                   baseline_clips, source_kind)

    def content_problem(self):
        """What makes a parsed calibration unusable, in a few words (its field named), or None: quantiles that are
        not finite numbers in ascending order (NaN would never alarm, a descending list always), a count of clips
        that is no positive whole number, rules' quantiles without their number of baseline clips."""
        lists = {'"quantiles"': self.quantiles,
                 **{f'"rules" {rule!r}': values for rule, values in (self.rules or {}).items()}}
        for field, values in lists.items():
            problem = quantiles_problem(values)
            if problem:
                return f'{field} {problem}'
        if not is_whole(self.clips, 2):
            return f'"clips" must be a whole number of at least 2, not {self.clips!r}'
        if self.rules is not None and not (set(self.rules) <= set(BASELINE_RULES) and is_whole(self.baseline_clips, 1)):
            return (f'"rules" must name rules among {", ".join(BASELINE_RULES)}, with "baseline_clips" a whole number '
                    f'of at least 1')
        return None

    @property
    def resolution(self):
        """The smallest false-alarm rate the calibration can resolve."""
        return max(1 / (QUANTILES - 1), 1 / self.clips)

    def rule_quantiles(self, rule):
        """The quantiles of rule ``rule``'s statistic over the normal clips (``global``: of their raw errors)."""
        return self.quantiles if rule == 'global' else self.rules[rule]

    def threshold(self, false_alarm_rate, rule='global'):
        """The statistic of ``rule`` (``global``: the clip error) above which a clip is anomalous at
        ``false_alarm_rate`` (the (1 - rate) quantile)."""
        if not self.resolution <= false_alarm_rate < 1:
            raise InputError(f'--FalseAlarmRate {false_alarm_rate} is outside what this calibration resolves: '
                             f'from {self.resolution:g} ({self.clips} normal clips, {QUANTILES} quantiles) to below 1')
        return float(self.value_at(1 - false_alarm_rate, rule))

    def value_at(self, probability, rule='global'):
        """The statistic of ``rule`` at ``probability`` (one or several) of the normal clips' distribution."""
        return np.interp(probability, PROBABILITIES, self.rule_quantiles(rule))

    def tail_probability(self, errors, rule='global'):
        """The share of normal clips whose statistic under ``rule`` (``global``: error) is at or above each of
        ``errors`` (interpolated; 0 above the largest)."""
        # the quantiles repeat where normal errors are equal: each distinct value at the lowest probability it has
        values, first = np.unique(self.rule_quantiles(rule), return_index=True)
        below = np.interp(np.asarray(errors, dtype=np.float64), values, PROBABILITIES[first],
                          left=0.0, right=1.0)
        return 1 - below

    def save(self, path):
        write_json(path, asdict(self), sort_keys=True)

    @classmethod
    def load(cls, path, signature, sha256, rule='global', baseline_clips=None):
        """The calibration in ``path``, refused unless it was made with these options and weights, and holds the
        quantiles of ``rule`` for ``baseline_clips``."""
        stored = read_json(path, 'a calibration')
        try:
            calibration = cls(**stored)
            if (len(calibration.quantiles) != QUANTILES or not isinstance(calibration.signature, dict)
                    or not isinstance(calibration.rules, (dict, type(None)))
                    or any(len(values) != QUANTILES for values in (calibration.rules or {}).values())):
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
        if rule != 'global' and (rule not in (calibration.rules or {}) or calibration.baseline_clips != baseline_clips):
            made = ('before the decision rules' if calibration.rules is None
                    else f'with --BaselineClips {calibration.baseline_clips}')
            raise InputError(f'{path} was made {made} and has no quantiles for --DecisionRule {rule} with '
                             f'--BaselineClips {baseline_clips}: calibrate again with these options')
        return calibration


def quantiles_of(values):
    return np.quantile(np.asarray(values, dtype=np.float64), PROBABILITIES).tolist()


def is_whole(value, least):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def quantiles_problem(values):
    """What is wrong with a stored list of quantiles, in a few words, or None."""
    values = np.asarray(values, dtype=object)
    if values.ndim != 1 or not all(isinstance(q, (int, float)) and not isinstance(q, bool) for q in values):
        return 'holds something other than numbers'
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        return 'holds NaN or infinite values'
    if np.any(np.diff(values) < 0):
        return 'are not in ascending order'
    return None


FRAME_IMAGES = 'frame images'  # the kind of footage of a folder of frames (a prepared data set's videos are such)
LEVEL_QUANTILES = (0.05, 0.95)  # a stream whose first clips' median error lies outside these is unlike the calibration


def source_kind(path):
    """What kind of footage ``path`` is, as a calibration records it: 'frame images' (a folder) or '<suffix> video
    file' (a file, a URL, a device)."""
    path = Path(path)
    return FRAME_IMAGES if path.is_dir() else f"{path.suffix.lower() or 'suffix-less'} video file"


def calibration_mismatch(calibration, first_errors, kind):
    """Why footage of kind ``kind`` whose first clips have the raw ``first_errors`` looks unlike the calibration's
    normal footage (a list of reasons; empty when nothing does): another kind of footage than the calibration
    recorded, or a median error outside the calibration's central 90 %."""
    reasons = []
    if calibration.source_kind is not None and kind != calibration.source_kind:
        reasons.append(f'it is {kind}, the calibration was made on {calibration.source_kind}')
    level = float(np.median(first_errors))
    low, high = calibration.value_at(LEVEL_QUANTILES)
    if not low <= level <= high:
        side, share, bound = ('above', 'the highest', high) if level > high else ('below', 'the lowest', low)
        reasons.append(f'the median error of its first {len(first_errors)} clips, {level:.4g}, lies {side} the '
                       f'calibration\'s normal clips but for {share} 5 % ({bound:.4g})')
    return reasons


def mismatch_warning(what, calibration_file, reasons, rule):
    """The one-sentence warning for footage unlike its calibration."""
    holds = ('the threshold is relative to its own first clips\' level, which absorbs a change of level but not of '
             'noise' if rule in BASELINE_RULES else 'the requested false-alarm rate will not hold')
    return (f'{what} looks unlike the normal footage of {calibration_file}: {"; ".join(reasons)}. If it is normal '
            f'footage, it likely comes from another camera, encoding or lighting, and {holds}: calibrate on normal '
            f'footage from this source (--Video PATH --Calibrate True)')


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


BOOTSTRAP_RESAMPLES = 2000  # of the videos, for the interval of a realised false-alarm rate


def video_bootstrap_interval(flagged_normal, normal_counts, seed=0):
    """The 95 % percentile-bootstrap interval of a pooled rate over videos: ``flagged_normal[v]`` of
    ``normal_counts[v]`` normal clips of video v flagged; the videos are resampled, because the clips of one video
    are not independent (its level moves them together). None without normal clips."""
    flagged_normal, normal_counts = np.asarray(flagged_normal, float), np.asarray(normal_counts, float)
    if normal_counts.sum() == 0:
        return None
    draws = np.random.default_rng(seed).integers(0, len(normal_counts), (BOOTSTRAP_RESAMPLES, len(normal_counts)))
    totals = normal_counts[draws].sum(axis=1)
    rates = flagged_normal[draws].sum(axis=1)[totals > 0] / totals[totals > 0]
    return [float(q) for q in np.quantile(rates, [0.025, 0.975])]


def detection_delays(events, truth, min_frames):
    """Per labelled run of anomalous clips that an event touches: the clips from the run's first to the clip at
    which that event was reported (its ``min_frames``-th flagged clip; 0 if it was reported before the run)."""
    delays = []
    for first, last in truth:
        touching = [event for event in events if overlaps(event, [(first, last)])]
        if touching:
            delays.append(max(0, touching[0][0] + min_frames - 1 - first))
    return delays


def decision_report(videos, threshold, false_alarm_rate, min_frames, merge_gap, rule='global', baseline_clips=None):
    """Whether the threshold holds on labelled videos (:class:`utils.eval.VideoResult`: clip scores and clip labels,
    1 = anomalous), each video read from its start as a stream by the causal ``rule`` (utils/decision_rules.py):
    the realised false-alarm rate on normal clips (with a video-bootstrap interval), precision / recall / F1 of the
    anomalous clips, events (runs of flagged clips, :func:`anomaly_events`) against the runs of anomalous clips,
    their detection delays, and the AUC of the rule's statistic (a score that never sees the future)."""
    statistics, flagged = {}, {}
    for video in videos:
        statistics[video.name], flagged[video.name] = rule_statistics(rule, baseline_clips, video.scores, threshold)
    labels = np.concatenate([np.asarray(video.labels, dtype=int) for video in videos])
    decided = np.concatenate([flagged[video.name] for video in videos])
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(labels, decided.astype(int), average='binary',
                                                                       zero_division=0)
    per_video, detected, truths, false_alarms, delays = {}, 0, 0, 0, []
    for video in videos:
        events = anomaly_events(flagged[video.name], min_frames, merge_gap)
        truth = anomaly_events(np.asarray(video.labels) == 1, 1, 0)
        false = [event for event in events if not overlaps(event, truth)]
        detected += sum(overlaps(run, events) for run in truth)
        truths, false_alarms = truths + len(truth), false_alarms + len(false)
        delays += detection_delays(events, truth, min_frames)
        normal_here = np.asarray(video.labels) == 0
        per_video[video.name] = {'events': events, 'false_alarm_events': false, 'anomalous_runs': truth,
                                 'normal_clips': int(normal_here.sum()),
                                 'normal_clips_flagged': int(flagged[video.name][normal_here].sum())}
    normal = labels == 0
    statistic = np.concatenate([statistics[video.name] for video in videos])
    return {'rule': rule, 'baseline_clips': baseline_clips, 'threshold': threshold,
            'false_alarm_rate': {
                'requested': false_alarm_rate,
                'realised': float(decided[normal].mean()) if normal.any() else None,
                'interval_95': video_bootstrap_interval([v['normal_clips_flagged'] for v in per_video.values()],
                                                        [v['normal_clips'] for v in per_video.values()]),
                'interval_from': f'{BOOTSTRAP_RESAMPLES} resamples of the videos'},
            'clips': {'precision': float(precision), 'recall': float(recall), 'f1': float(f1),
                      'normal': int(normal.sum()), 'anomalous': int((~normal).sum())},
            'events': {'anomalous_runs': truths, 'detected': detected, 'false_alarms': false_alarms,
                       'false_alarms_per_1000_normal_clips': 1000 * false_alarms / max(int(normal.sum()), 1),
                       'detection_delay_clips': {'median': float(np.median(delays)), 'max': int(max(delays))}
                       if delays else None},
            'auc_of_rule_statistic': float(metrics.roc_auc_score(labels, statistic))
            if 0 < labels.sum() < len(labels) else None,
            'per_video': per_video}
