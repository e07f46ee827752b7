"""Causal decision rules: what a clip's error is compared with when its frames are decided (beyond the paper;
docs/DEPLOYMENT.md, *Decision rules*).

A live stream has no future and no whole-video min-max. And the level of the raw clip error is a property of the
footage (camera, encoding, lighting) as much as of its events: on UCSD Ped2 (the 64 x 64 CPU recipe), a threshold
that 1 % of the held-out training videos' normal clips exceed was exceeded by 96 % of the normal test clips. A rule
turns the clip errors e_1, e_2, ... of one stream, in their order, into statistics s_t that use e_1 .. e_t only:

* ``global``: s_t = e_t; the calibration's raw errors set the threshold;
* ``warmup``: s_t = e_t / b_t, b_t the median of the stream's errors before t, up to its first ``W``: the stream's
  first ``W`` clips (its warm-up) set its level, which then stays;
* ``running``: the same through the warm-up; from then on b_t is the median of the last ``W`` accepted errors before
  t: the level follows slow drift (lighting over a day).

The warm-up is taken as normal footage: its clips all enter the baseline, flagged or not (a stream that starts
inside an event measures against the event; the out-of-calibration warning of utils/calibration.py names such a
start). After it, a clip is *accepted* into the running baseline only when it is not flagged, so a sustained
anomaly is not absorbed into the level it is measured against. A stream's first clip is its own baseline (s_1 =
1). ``W`` is ``--BaselineClips``.

The calibration (utils/calibration.py) keeps the quantiles of each rule's statistic over its normal videos, each
read from its start as a stream, every clip accepted (normal footage); the threshold for a false-alarm rate r is
their (1 - r) quantile. A ratio rule therefore keeps its promise on footage whose errors differ from the
calibration's by a factor; ``global`` only on footage at the calibration's level.
"""
import bisect
from collections import deque

import numpy as np

from utils.errors import InputError

RULES = ('global', 'warmup', 'running')
BASELINE_RULES = ('warmup', 'running')
SMALLEST_BASELINE = 1e-12  # a baseline of zero errors (a constant image reconstructed exactly) divides by this


class CausalRule:
    """The statistic of each clip error of one stream, in order (see the module docstring)."""

    def __init__(self, name, baseline_clips):
        if name not in RULES:
            raise InputError(f'unknown decision rule {name!r}; the rules are {", ".join(RULES)}')
        self.name, self.baseline_clips = name, baseline_clips
        self.accepted = deque()  # the baseline's errors, oldest first
        self.ordered = []        # the same, sorted: the median in constant time, a day-long stream at no extra cost
        self.seen = 0            # clips settled

    def baseline(self):
        """The median of the accepted errors (NumPy's: the mean of the middle two of an even count)."""
        middle = len(self.ordered) // 2
        return self.ordered[middle] if len(self.ordered) % 2 else (self.ordered[middle - 1] + self.ordered[middle]) / 2

    def statistic(self, error):
        """s_t for the next clip's ``error``, from the clips accepted before it."""
        if self.name == 'global':
            return float(error)
        baseline = self.baseline() if self.ordered else float(error)
        return float(error) / max(baseline, SMALLEST_BASELINE)

    def settle(self, error, flagged):
        """The clip's decision is made: during the warm-up every clip joins the baseline; after it, under
        ``running``, an unflagged one replaces the oldest."""
        self.seen += 1
        if self.name == 'global' or (self.seen > self.baseline_clips and (self.name == 'warmup' or flagged)):
            return
        if len(self.accepted) == self.baseline_clips:
            self.ordered.pop(bisect.bisect_left(self.ordered, self.accepted.popleft()))
        self.accepted.append(float(error))
        bisect.insort(self.ordered, float(error))


def exceeds(statistic, threshold):
    """The one decision rule of ``--Video``, ``--Stream`` and a test set's calibrated.json: a clip is anomalous when
    its statistic lies above the threshold (one equal to it is normal)."""
    return statistic > threshold


def rule_statistics(name, baseline_clips, errors, threshold=None):
    """The statistics of one stream's clip ``errors`` (in order) under rule ``name``, and whether each exceeds
    ``threshold`` (None: nothing is flagged and every clip is accepted, as for normal calibration footage)."""
    rule = CausalRule(name, baseline_clips)
    statistics, flagged = [], []
    for error in np.asarray(errors, dtype=np.float64).tolist():
        value = rule.statistic(error)
        above = threshold is not None and exceeds(value, threshold)
        rule.settle(error, above)
        statistics.append(value)
        flagged.append(above)
    return np.asarray(statistics, dtype=np.float64), np.asarray(flagged, dtype=bool)


def pooled_statistics(name, baseline_clips, videos):
    """The statistics of several normal videos' clip errors, each read from its start, pooled."""
    return np.concatenate([rule_statistics(name, baseline_clips, errors)[0] for errors in videos])
