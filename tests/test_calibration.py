"""Calibrated decisions (utils/calibration.py): thresholds, tail probabilities, refusals and events."""
import json

import numpy as np
import pytest

from utils.calibration import QUANTILES, Calibration, anomaly_events, calibration_path
from utils.errors import InputError

SIGNATURE = {'setting': 'MemAE_x', 'score': 'l2', 'FrameNum': 16, 'ImgChnNum': 1, 'frame_size': [32, 32],
             'AMP': 'none'}


def calibration(errors, signature=SIGNATURE, sha='a' * 64):
    return Calibration.from_errors(errors, 'normal.mp4', signature, sha)


def test_the_threshold_is_the_quantile_and_holds_its_false_alarm_rate_on_new_normal_data():
    rng = np.random.default_rng(0)
    normal = rng.gamma(2.0, 1.0, 20000)
    fitted = calibration(normal)
    for rate in (0.01, 0.05, 0.2):
        assert fitted.threshold(rate) == pytest.approx(np.quantile(normal, 1 - rate), rel=1e-9)
        fresh = rng.gamma(2.0, 1.0, 200000)  # more footage like the calibration's
        assert np.mean(fresh > fitted.threshold(rate)) == pytest.approx(rate, rel=0.1)
    assert (fitted.quantiles[0], fitted.quantiles[-1], fitted.clips) == (normal.min(), normal.max(), 20000)


def test_the_tail_probability_is_the_share_of_normal_errors_at_or_above():
    normal = np.arange(1, 1001, dtype=float)  # 1 .. 1000
    fitted = calibration(normal)
    errors = np.array([0.0, 1.0, 250.75, 500.5, 999.0, 1000.0, 5000.0])
    expected = [np.mean(normal >= e) for e in errors]
    assert fitted.tail_probability(errors) == pytest.approx(expected, abs=1.5e-3)
    assert fitted.tail_probability([5000.0])[0] == 0.0 and fitted.tail_probability([-1.0])[0] == 1.0
    # equal normal errors: half the normal clips have error 2, so the share at or above 2 is one half
    tied = calibration(np.repeat([1.0, 2.0], 500))
    assert tied.tail_probability([1.0, 2.0]) == pytest.approx([1.0, 0.5], abs=1.5e-3)


def test_a_rate_finer_than_the_calibration_resolves_is_refused():
    few = calibration(np.arange(10.0))  # 10 clips: nothing finer than 1 in 10
    assert few.resolution == 0.1 and few.threshold(0.1) == pytest.approx(np.quantile(np.arange(10.0), 0.9))
    with pytest.raises(InputError, match=r'--FalseAlarmRate 0.05 is outside what this calibration resolves: from '
                                         r'0.1 \(10 normal clips'):
        few.threshold(0.05)
    with pytest.raises(InputError, match=r'--FalseAlarmRate 1.0 is outside .* to below 1$'):
        few.threshold(1.0)  # every clip flagged: no threshold
    assert calibration(np.arange(100000.0)).resolution == 1 / (QUANTILES - 1)
    with pytest.raises(InputError, match='at least two finite clip errors'):
        calibration([1.0, np.nan])


def test_a_calibration_is_refused_for_other_weights_options_or_a_damaged_file(tmp_path):
    path = tmp_path / 'model_calibration.json'
    calibration(np.arange(50.0)).save(path)
    assert Calibration.load(path, SIGNATURE, 'a' * 64).quantiles[-1] == 49.0
    with pytest.raises(InputError, match=r'calibrates other weights \(sha256 aaaaaaaaaaaa'):
        Calibration.load(path, SIGNATURE, 'b' * 64)
    with pytest.raises(InputError, match=r"made with frame_size = \[32, 32\], but this run has \[64, 64\]"):
        Calibration.load(path, {**SIGNATURE, 'frame_size': [64, 64]}, 'a' * 64)
    stored = json.loads(path.read_text())
    quantiles = stored['quantiles']
    for change in ({'quantiles': None}, {'quantiles': quantiles[:-1]}, {'signature': [1]}, {'rules': [quantiles]},
                   {'rules': {'running': quantiles[:3]}, 'baseline_clips': 10}, {'extra': 1}):
        path.write_text(json.dumps({key: value for key, value in {**stored, **change}.items() if value is not None}))
        with pytest.raises(InputError, match=f'^{path} is not a calibration file of this version'):
            Calibration.load(path, SIGNATURE, 'a' * 64)
    path.write_text('[1, 2]')
    with pytest.raises(InputError, match=rf'^{path} \(a calibration\) is damaged: not a JSON object'):
        Calibration.load(path, SIGNATURE, 'a' * 64)
    assert calibration_path(tmp_path / 'w' / 'MemAE_x.pt') == tmp_path / 'w' / 'MemAE_x_calibration.json'


@pytest.mark.parametrize('flags, min_frames, gap, events', [
    ('0011100011', 1, 0, [(2, 4), (8, 9)]),
    ('0011100011', 3, 0, [(2, 4)]),               # the run of two is too short
    ('0011100011', 1, 3, [(2, 9)]),               # three normal frames between: merged
    ('0011100011', 1, 2, [(2, 4), (8, 9)]),       # a gap of three is more than 2
    ('1010100000', 4, 1, [(0, 4)]),               # merged first, then long enough
    ('0000000000', 1, 5, []),
    ('1111111111', 1, 0, [(0, 9)]),
])
def test_events_are_runs_of_anomalous_frames_merged_then_filtered(flags, min_frames, gap, events):
    assert anomaly_events([c == '1' for c in flags], min_frames, gap) == events


def test_calibration_flags_are_checked_naming_the_flag(capsys):
    from options import TestOptions as EvalOptions  # a Test* name would be collected by pytest
    assert EvalOptions().parse(['--Calibrate', 'True', '--HoldOutVideos', '2'], is_print=False).HoldOutVideos == 2
    for flags, message in [(['--Calibrate', 'True'], '--Calibrate True scores normal footage the model was not '
                                                     'trained on: give --Video PATH, or --HoldOutVideos N'),
                           (['--HoldOutVideos', '-1'], '--HoldOutVideos must not be negative'),
                           (['--HoldOutVideos', '1', '--Dataset', 'MNIST'], '--HoldOutVideos holds out training '
                                                                            'videos; --Dataset MNIST is not a video'),
                           (['--FalseAlarmRate', '1'], '--FalseAlarmRate must lie between 0 and 1, got 1.0'),
                           (['--EventMergeGap', '-1'], '--EventMinFrames must be at least 1 and --EventMergeGap')]:
        with pytest.raises(SystemExit):
            EvalOptions().parse(flags, is_print=False)
        assert message in capsys.readouterr().err


def test_the_decision_report_counts_false_alarms_clips_and_events_against_the_labels():
    from utils.calibration import decision_report
    from utils.eval import VideoResult
    # video a: clips 2-4 anomalous; flagged 3-4 (a detection) and 8 (a false-alarm event)
    # video b: all normal; flagged 1 and 2 (one false-alarm event, merged from two flagged clips)
    a = VideoResult('a', np.array([0, 0, 0, 5, 5, 0, 0, 0, 5, 0.0]), np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 0]))
    b = VideoResult('b', np.array([0, 5, 5, 0, 0.0]), np.zeros(5, int))
    report = decision_report([a, b], threshold=1.0, false_alarm_rate=0.1, min_frames=1, merge_gap=0)
    # 12 normal clips, 3 of them flagged; 3 anomalous clips, 2 flagged
    rate = report['false_alarm_rate']
    assert (rate['requested'], rate['realised']) == (0.1, 3 / 12)
    # resampling two videos: the extremes are a twice (1 of 7 normal clips flagged) and b twice (2 of 5), each
    # drawn with probability 1/4, so the 2.5 % and 97.5 % quantiles are they
    assert rate['interval_95'] == pytest.approx([1 / 7, 2 / 5])
    assert report['clips']['precision'] == pytest.approx(2 / 5) and report['clips']['recall'] == pytest.approx(2 / 3)
    # the run 2-4 is first flagged at clip 3: one clip late
    assert report['events'] == {'anomalous_runs': 1, 'detected': 1, 'false_alarms': 2,
                                'false_alarms_per_1000_normal_clips': 1000 * 2 / 12,
                                'detection_delay_clips': {'median': 1.0, 'max': 1}}
    # the global rule's statistic is the raw error: the AUC is the share of (anomalous, normal) pairs ordered
    # right, ties counted half
    anomalous, normal = [0, 5, 5], [0, 0, 0, 0, 0, 5, 0] + [0, 5, 5, 0, 0]
    pairs = [(x > y) + 0.5 * (x == y) for x in anomalous for y in normal]
    assert report['auc_of_rule_statistic'] == pytest.approx(sum(pairs) / len(pairs))
    assert report['per_video']['a']['false_alarm_events'] == [(8, 8)]
    assert report['per_video']['b']['events'] == [(1, 2)]
    # a longer minimum drops the one-clip false alarm of video a and the detection's run stays (two clips)
    strict = decision_report([a, b], 1.0, 0.1, min_frames=2, merge_gap=0)
    assert strict['events']['false_alarms'] == 1 and strict['events']['detected'] == 1


@pytest.mark.parametrize('change, message', [
    (lambda c: c.update(quantiles=[float('nan')] * QUANTILES), '"quantiles" holds NaN or infinite values'),
    (lambda c: c.update(quantiles=c['quantiles'][::-1]), '"quantiles" are not in ascending order'),
    (lambda c: c.update(quantiles=['1'] * QUANTILES), '"quantiles" holds something other than numbers'),
    (lambda c: c.update(quantiles=[[0.0]] * (QUANTILES - 1) + [[1.0, 2.0]]), '"quantiles" holds something other'),
    (lambda c: c.update(clips=0), '"clips" must be a whole number of at least 2, not 0'),
    (lambda c: c.update(clips=2.5), '"clips" must be a whole number'),
    (lambda c: c.update(rules={'median': c['quantiles']}, baseline_clips=10),
     '"rules" must name rules among warmup, running, with "baseline_clips" a whole number of at least 1; '),
    (lambda c: c.update(rules={'running': c['quantiles']}, baseline_clips=0), '"rules" must name rules among'),
])
def test_a_calibration_whose_content_cannot_hold_is_refused_naming_the_field(tmp_path, change, message):
    """What parses is not yet trusted: NaN quantiles would never alarm, descending ones always, 0 clips divide."""
    path = tmp_path / 'model_calibration.json'
    calibration(np.arange(50.0)).save(path)
    stored = json.loads(path.read_text().replace('NaN', 'null'))
    change(stored)
    path.write_text(json.dumps(stored))
    with pytest.raises(InputError, match=f'{path} is damaged: {message}'):
        Calibration.load(path, SIGNATURE, 'a' * 64)


def test_the_smallest_calibration_and_baseline_and_equal_errors_load(tmp_path):
    """Two clips and one baseline clip are the least that the content check lets through; equal errors give
    equal quantiles, which are in ascending order too."""
    path = tmp_path / 'model_calibration.json'
    Calibration.from_errors([np.array([1.0, 2.0])], 'n', SIGNATURE, 'a' * 64, baseline_clips=1).save(path)
    loaded = Calibration.load(path, SIGNATURE, 'a' * 64, 'running', 1)
    assert (loaded.clips, loaded.baseline_clips, sorted(loaded.rules)) == (2, 1, ['running', 'warmup'])
    Calibration.from_errors([np.array([1.0, 1.0, 2.0])], 'n', SIGNATURE, 'a' * 64).save(path)
    assert Calibration.load(path, SIGNATURE, 'a' * 64).quantiles[:2] == [1.0, 1.0]


def test_events_and_labelled_runs_that_share_one_frame_at_either_edge_overlap():
    """A flagged event meeting a labelled run in its first or last frame detects it; one frame apart does not."""
    from utils.calibration import decision_report
    from utils.eval import VideoResult
    labels = np.array([0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1])  # runs 2-3, 7-8, 12, 14 (one normal between)
    scores = np.array([0, 5, 5, 0, 0, 0, 0, 0, 5, 5, 0, 0, 0, 0, 0.0])  # events 1-2 (touches 2), 8-9 (touches 8)
    report = decision_report([VideoResult('v', scores, labels)], 1.0, 0.1, min_frames=1, merge_gap=0)
    assert report['per_video']['v']['anomalous_runs'] == [(2, 3), (7, 8), (12, 12), (14, 14)]  # not merged
    assert report['per_video']['v']['events'] == [(1, 2), (8, 9)]
    assert report['events']['detected'] == 2 and report['events']['false_alarms'] == 0
    shifted = decision_report([VideoResult('v', np.roll(scores, -1), labels)], 1.0, 0.1, 1, 0)  # events 0-1, 7-8
    assert shifted['events']['false_alarms'] == 1 and shifted['events']['detected'] == 1


def test_a_report_with_nothing_flagged_or_no_normal_clip_says_so():
    from utils.calibration import decision_report
    from utils.eval import VideoResult
    quiet = decision_report([VideoResult('v', np.zeros(6), np.array([0, 0, 1, 1, 0, 0]))], 1.0, 0.1, 1, 0)
    assert quiet['clips']['precision'] == 0.0 and quiet['clips']['recall'] == 0.0  # nothing flagged: no precision
    allbad = decision_report([VideoResult('v', np.full(4, 5.0), np.ones(4, int))], 1.0, 0.1, 1, 0)
    assert allbad['false_alarm_rate']['realised'] is None and allbad['clips']['normal'] == 0
    # an AUC needs both kinds of clip: none (not NaN) with one kind only, a number from one clip of a kind on
    calm = decision_report([VideoResult('v', np.arange(4.0), np.zeros(4, int))], 1.0, 0.1, 1, 0)
    assert allbad['auc_of_rule_statistic'] is None and calm['auc_of_rule_statistic'] is None
    one = decision_report([VideoResult('v', np.array([0, 0, 5, 0.0]), np.array([0, 0, 1, 0]))], 1.0, 0.1, 1, 0)
    assert one['auc_of_rule_statistic'] == 1.0


def test_one_normal_clip_falsely_flagged_is_a_thousand_false_alarms_per_thousand():
    from utils.calibration import decision_report
    from utils.eval import VideoResult
    # clip 0 is the only normal clip and is flagged alone (an event apart from the run 1-3, which is caught late)
    report = decision_report([VideoResult('v', np.array([5, 0, 5, 5.0]), np.array([0, 1, 1, 1]))], 1.0, 0.1, 1, 0)
    assert report['events']['false_alarms'] == 1 and report['clips']['normal'] == 1
    assert report['events']['false_alarms_per_1000_normal_clips'] == 1000.0


def test_an_event_reported_before_its_labelled_run_began_has_no_delay():
    from utils.calibration import detection_delays
    # the event 1-3 is reported at its first clip (min_frames 1), before the run 2-3 begins; with min_frames 3
    # at clip 3, one clip into the run
    assert detection_delays([(1, 3)], [(2, 3)], 1) == [0]
    assert detection_delays([(1, 3)], [(2, 3)], 3) == [1]


def test_the_video_bootstrap_skips_draws_without_normal_clips_and_repeats_itself():
    from utils.calibration import video_bootstrap_interval
    # video 0 has no normal clip: a draw of it alone has no rate and is skipped (not 0/0); video 1 has one, flagged
    assert video_bootstrap_interval([0, 1], [0, 1]) == [1.0, 1.0]
    rng = np.random.default_rng(5)
    counts = rng.integers(5, 50, 30)
    flagged = rng.binomial(counts, rng.uniform(0, 0.3, 30))
    first = video_bootstrap_interval(flagged, counts)
    assert video_bootstrap_interval(flagged, counts) == first  # a report is reproducible: its draws are seeded
    assert video_bootstrap_interval(flagged, counts, seed=1) != first
    assert first[0] < flagged.sum() / counts.sum() < first[1]


def test_errors_above_every_normal_one_have_no_tail_even_where_the_top_quantiles_repeat():
    """Normal errors whose upper half are all 9: an error above 9 is rarer than every normal one (tail 0), one
    below the smallest commoner than all (tail 1)."""
    normal = calibration(np.concatenate([np.linspace(0, 8, 50), np.full(50, 9.0)]))
    assert normal.tail_probability([10.0, -1.0]).tolist() == [0.0, 1.0]
