"""The causal decision rules (utils/decision_rules.py) and what the calibration keeps of them: on synthetic streams
whose normal error level shifts or drifts, and with a sustained anomaly, the realised false-alarm rates are checked
against the requested one with bounds from the binomial arithmetic; the streamed decisions equal the offline ones;
footage unlike its calibration is named."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import norm

from utils.calibration import (Calibration, QUANTILES, calibration_mismatch, decision_report, mismatch_warning,
                               source_kind)
from utils.decision_rules import CausalRule, rule_statistics
from utils.errors import InputError
from utils.eval import VideoResult
from utils.live_stream import LiveDecisions
from utils.single_video import CheckedCalibration, decide, frame_clips

W = 30
SIGNATURE = {'setting': 's'}
RATE = 0.05
SIGMA = 0.1     # the log-normal spread of the synthetic normal errors
CLIPS = 300     # per stream
STREAMS = 100   # in a calibration, and in a test


def normal_stream(rng, level, clips=CLIPS):
    """Clip errors of normal footage at ``level``: lognormal around it (errors are positive, their noise relative)."""
    return level * rng.lognormal(0.0, SIGMA, clips)


def calibrated(rng, videos=STREAMS):
    return Calibration.from_errors([normal_stream(rng, 1.0) for _ in range(videos)], 'normal', SIGNATURE, 'a' * 64,
                                   baseline_clips=W, source_kind='frame images')


def realised(calibration, rule, streams, rate=RATE):
    threshold = calibration.threshold(rate, rule)
    return float(np.mean(np.concatenate([rule_statistics(rule, W, s, threshold)[1] for s in streams])))


def rate_tolerance(rule, test_streams=STREAMS, test_clips=STREAMS * CLIPS, lag=0.0):
    """How far a realised rate may lie from RATE, from the arithmetic of these streams: four standard deviations
    plus the known biases.

    The log of a statistic is the clip's noise (SIGMA) plus, under a baseline rule, the baseline's error: the
    median of W log-normal errors is off by 1.2533 SIGMA / sqrt(W) in log (a sample median's asymptotic spread),
    shared by a warm-up's clips, so the effective count is the number of streams. A rate moves with the log
    threshold at slope pdf(z) / (total log spread). Both the calibration's quantile and the test's share carry a
    binomial error. Biases: the running baseline leaves the flagged share out, which lowers its median to the
    (1 - RATE) / 2 quantile of the normal errors; a baseline that trails a drift by ``lag`` in log."""
    between = 0.0 if rule == 'global' else 1.2533 * SIGMA / np.sqrt(W)
    slope = norm.pdf(norm.ppf(1 - RATE)) / np.hypot(SIGMA, between)
    variance = ((slope * between) ** 2 * (1 / STREAMS + 1 / test_streams)
                + RATE * (1 - RATE) * (1 / (STREAMS * CLIPS) + 1 / test_clips))
    bias = slope * (-SIGMA * norm.ppf((1 - RATE) / 2) + lag) if rule == 'running' else 0.0
    return 4 * np.sqrt(variance) + bias


@pytest.mark.parametrize('rule', ['global', 'warmup', 'running'])
def test_every_rule_keeps_its_rate_on_footage_like_the_calibration(rule):
    rng = np.random.default_rng(1)
    calibration = calibrated(rng)
    like = [normal_stream(rng, 1.0) for _ in range(STREAMS)]
    assert abs(realised(calibration, rule, like) - RATE) < rate_tolerance(rule)


def test_a_shifted_level_breaks_the_global_threshold_and_not_the_baseline_rules():
    """Another camera or encoding: every normal error 1.6 times the calibration's (Ped2's test videos lie up to
    0.084 / 0.053 = 1.6 times above the held-out training videos)."""
    rng = np.random.default_rng(2)
    calibration = calibrated(rng)
    shifted = [normal_stream(rng, 1.6) for _ in range(STREAMS)]
    assert realised(calibration, 'global', shifted) > 0.99
    for rule in ('warmup', 'running'):
        assert abs(realised(calibration, rule, shifted) - RATE) < rate_tolerance(rule)


def test_a_running_baseline_follows_a_slow_drift_and_a_warm_up_does_not():
    """The level doubles over 3,000 clips (lighting over a day): measured against its first clips a warm-up
    alarms on most of the second half; the running baseline keeps near the requested rate."""
    rng = np.random.default_rng(3)
    calibration = calibrated(rng)
    drifting = [np.linspace(1.0, 2.0, 3000) * rng.lognormal(0.0, SIGMA, 3000) for _ in range(4)]
    # the running median trails the drift by about W / 2 clips; its windows are nearly independent of each other
    trail = W / 2 * np.log(2.0) / 3000
    tolerance = rate_tolerance('running', test_streams=4 * 3000 // W, test_clips=4 * 3000, lag=trail)
    assert abs(realised(calibration, 'running', drifting) - RATE) < tolerance
    threshold = calibration.threshold(RATE, 'warmup')
    assert np.mean([rule_statistics('warmup', W, s, threshold)[1][1500:] for s in drifting]) > 0.9


def test_a_sustained_anomaly_is_not_absorbed_into_the_running_baseline():
    """100 normal clips, 300 at twice the level (a long event), 100 normal: flagged clips stay out of the
    baseline, so the whole event is flagged, and the normal clips after it are decided against the level before
    it. A baseline that took flagged clips in would reach the event's level after W of its clips."""
    rng = np.random.default_rng(4)
    calibration = calibrated(rng)
    stream = np.concatenate([normal_stream(rng, 1.0, 100), normal_stream(rng, 2.0, 300), normal_stream(rng, 1.0, 100)])
    _, flagged = rule_statistics('running', W, stream, calibration.threshold(0.01, 'running'))
    assert flagged[100:400].mean() == 1.0
    assert flagged[400:].mean() < 0.1 and flagged[:100].mean() < 0.1


@pytest.mark.parametrize('rule', ['global', 'warmup', 'running'])
def test_a_statistic_depends_on_the_past_only(rule):
    rng = np.random.default_rng(5)
    stream = normal_stream(rng, 1.0, 200)
    changed = stream.copy()
    changed[120:] *= 3.0
    for errors in (stream, changed):
        statistics, flagged = rule_statistics(rule, W, errors, 1.2)
        if errors is stream:
            before = statistics[:120], flagged[:120]
    assert np.array_equal(statistics[:120], before[0]) and np.array_equal(flagged[:120], before[1])


def test_the_first_clip_is_its_own_baseline_and_a_warm_up_stops_growing():
    rule = CausalRule('warmup', 3)
    assert rule.statistic(0.0) == 0.0 and rule.statistic(5.0) == 1.0  # a zero error divides by nothing
    for error in (2.0, 4.0, 6.0, 100.0):
        rule.settle(error, flagged=False)
    assert list(rule.accepted) == [2.0, 4.0, 6.0] and rule.statistic(8.0) == 2.0
    running = CausalRule('running', 3)
    for error in (2.0, 4.0, 6.0, 100.0):
        running.settle(error, flagged=False)
    running.settle(1000.0, flagged=True)
    assert list(running.accepted) == [4.0, 6.0, 100.0]  # the flagged 1000 stays out
    starting = CausalRule('running', 3)
    starting.settle(7.0, flagged=True)  # inside the warm-up, taken as normal
    assert list(starting.accepted) == [7.0]
    with pytest.raises(InputError, match="unknown decision rule 'median'; the rules are global, warmup, running"):
        CausalRule('median', 3)


def test_streamed_decisions_under_a_baseline_rule_equal_the_offline_ones():
    rng = np.random.default_rng(6)
    calibration = calibrated(rng)
    errors = np.concatenate([normal_stream(rng, 1.3, 60), normal_stream(rng, 3.0, 20), normal_stream(rng, 1.3, 40)])
    checked = CheckedCalibration('c.json', calibration, RATE, calibration.threshold(RATE, 'running'), 'running', W)
    live = LiveDecisions(16, checked, min_frames=2, merge_gap=1)
    decided = [d for e in errors for d in live.add_clip(e)]
    decided += live.finish(len(errors) + 15)
    offline = decide(SimpleNamespace(EventMinFrames=2, EventMergeGap=1), checked, errors,
                     frame_clips(len(errors) + 15, len(errors), 16))
    assert [d.anomalous for d in decided] == offline.anomalous.tolist()
    assert [d.statistic for d in decided] == offline.statistic.tolist()
    assert 0 < offline.anomalous.sum() < len(decided)


def test_the_calibration_keeps_each_rule_and_refuses_another_window_or_an_older_file(tmp_path):
    rng = np.random.default_rng(7)
    videos = [normal_stream(rng, level) for level in (0.8, 1.0, 1.2)]
    calibration = Calibration.from_errors(videos, 'normal', SIGNATURE, 'a' * 64, baseline_clips=W,
                                          source_kind='frame images')
    expected = np.concatenate([rule_statistics('running', W, v)[0] for v in videos])
    assert calibration.rules['running'] == pytest.approx(np.quantile(expected, np.linspace(0, 1, QUANTILES)).tolist())
    one = Calibration.from_errors(videos[0], 'normal', SIGNATURE, 'a' * 64, baseline_clips=W)  # one array: one video
    assert one.rules == Calibration.from_errors(videos[:1], 'normal', SIGNATURE, 'a' * 64, baseline_clips=W).rules
    # the pooled raw errors spread with the three levels; the ratios do not
    spread = {rule: calibration.threshold(0.05, rule) / calibration.threshold(0.5, rule)
              for rule in ('global', 'running')}
    assert spread['global'] > spread['running']
    path = tmp_path / 'm_calibration.json'
    calibration.save(path)
    loaded = Calibration.load(path, SIGNATURE, 'a' * 64, 'running', W)
    assert loaded.threshold(0.05, 'running') == calibration.threshold(0.05, 'running')
    with pytest.raises(InputError, match=f'{path} was made with --BaselineClips 30 and has no quantiles for '
                                         '--DecisionRule warmup with --BaselineClips 60'):
        Calibration.load(path, SIGNATURE, 'a' * 64, 'warmup', 60)
    stored = json.loads(path.read_text())
    older = {key: stored[key] for key in ('quantiles', 'clips', 'source', 'signature', 'weights_sha256')}
    path.write_text(json.dumps(older))
    assert Calibration.load(path, SIGNATURE, 'a' * 64).threshold(0.05) == calibration.threshold(0.05)
    with pytest.raises(InputError, match='made before the decision rules'):
        Calibration.load(path, SIGNATURE, 'a' * 64, 'running', W)
    stored['rules']['running'] = stored['rules']['running'][::-1]
    path.write_text(json.dumps(stored))
    with pytest.raises(InputError, match='is damaged: "rules" \'running\' are not in ascending order'):
        Calibration.load(path, SIGNATURE, 'a' * 64, 'running', W)


def test_footage_unlike_the_calibration_is_named_with_its_cause(tmp_path):
    rng = np.random.default_rng(8)
    calibration = calibrated(rng)
    assert calibration_mismatch(calibration, normal_stream(rng, 1.0, W), 'frame images') == []
    low, high = calibration.value_at([0.05, 0.95])  # the central 90 % of the normal clips, bounds included
    assert calibration_mismatch(calibration, [low] * 3, 'frame images') == []
    assert calibration_mismatch(calibration, [high] * 3, 'frame images') == []
    (above,) = calibration_mismatch(calibration, normal_stream(rng, 1.6, W), 'frame images')
    assert 'the median error of its first 30 clips' in above and \
        f"lies above the calibration's normal clips but for the highest 5 % ({high:.4g})" in above
    (below,) = calibration_mismatch(calibration, normal_stream(rng, 0.6, W), 'frame images')
    assert f"lies below the calibration's normal clips but for the lowest 5 % ({low:.4g})" in below
    (kind,) = calibration_mismatch(calibration, normal_stream(rng, 1.0, W), '.mp4 video file')
    assert kind == 'it is .mp4 video file, the calibration was made on frame images'
    assert [source_kind(tmp_path), source_kind('walk.MP4'), source_kind('/dev/video0')] == [
        'frame images', '.mp4 video file', 'suffix-less video file']
    # the warning joins the reasons and says what the rule can and cannot absorb
    assert mismatch_warning('--Video x.mp4', 'c.json', [kind, above], 'global') == (
        f'--Video x.mp4 looks unlike the normal footage of c.json: {kind}; {above}. If it is normal footage, it '
        'likely comes from another camera, encoding or lighting, and the requested false-alarm rate will not hold: '
        'calibrate on normal footage from this source (--Video PATH --Calibrate True)')
    for rule in ('warmup', 'running'):
        assert ("the threshold is relative to its own first clips' level, which absorbs a change of level but not "
                'of noise: calibrate') in mismatch_warning('--Video x.mp4', 'c.json', [kind], rule)


def test_the_test_set_report_reads_each_video_by_the_rule():
    """A normal video at 1.6 times the calibration's level and one whose event lies 1.5 times above its own
    level: the running rule flags the event and few normal clips, and its statistic ranks the clips better than
    the raw error, which puts the shifted normal video above the event."""
    rng = np.random.default_rng(9)
    calibration = calibrated(rng)
    shifted = VideoResult('shifted', normal_stream(rng, 1.6, 200), np.zeros(200, int))
    event = VideoResult('event', np.concatenate([normal_stream(rng, 1.0, 100), normal_stream(rng, 1.5, 50)]),
                        np.r_[np.zeros(100, int), np.ones(50, int)])
    report = {rule: decision_report([shifted, event], calibration.threshold(RATE, rule), RATE, 1, 0, rule, W)
              for rule in ('global', 'running')}
    assert (report['running']['rule'], report['running']['baseline_clips']) == ('running', W)
    assert report['running']['false_alarm_rate']['interval_from'] == '2000 resamples of the videos'
    assert report['global']['per_video']['shifted']['normal_clips_flagged'] == 200
    assert report['running']['false_alarm_rate']['realised'] < 2 * RATE
    assert report['running']['events']['detected'] == 1
    _, flagged = rule_statistics('running', W, event.scores, calibration.threshold(RATE, 'running'))
    first = int(np.flatnonzero(flagged[100:])[0])
    assert report['running']['events']['detection_delay_clips'] == {'median': float(first), 'max': first}
    assert report['running']['auc_of_rule_statistic'] > 0.9 > report['global']['auc_of_rule_statistic']
