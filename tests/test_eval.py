import json
import warnings

import numpy as np
import pytest
import scipy.io as sio
from sklearn import metrics

from data.readers import write_ground_truth
from utils.eval import (VideoResult, align_labels, centre_frame_positions, centre_frames_from_clips, evaluate, regularity,
                        top_fraction_metrics, write_results_json)
from utils.saved_scores import eval_video


def released_protocol_auc(gt_per_video, scores_per_video):
    """The released evaluation re-derived step by step: gt[8:-7], per-video min-max regularity, labels 2 for
    normal and 1 for anomalous frames, ROC with positive label 2, trapezoid AUC."""
    labels, regularities = [], []
    for gt, scores in zip(gt_per_video, scores_per_video):
        gt = np.asarray(gt)[8:-7]
        shifted = scores - scores.min()
        regularities += list(1 - shifted / shifted.max())
        labels += list(1 - gt + 1)
    fpr, tpr, _ = metrics.roc_curve(np.array(labels), np.array(regularities), pos_label=2)
    return metrics.auc(fpr, tpr)


def mann_whitney_auc(anomalous, normal):
    """P(anomaly score > normal score) + 0.5 P(tie), counted over all pairs: the AUC's definition."""
    a = np.asarray(anomalous)[:, None]
    n = np.asarray(normal)[None, :]
    return float(((a > n).sum() + 0.5 * (a == n).sum()) / (a.size * n.size))


def random_videos(seed, num_videos=4):
    rng = np.random.default_rng(seed)
    gts, scores = [], []
    for _ in range(num_videos):
        num_frames = int(rng.integers(40, 90))
        gt = np.zeros(num_frames, dtype=np.int64)
        start = int(rng.integers(0, num_frames - 10))
        gt[start:start + int(rng.integers(5, num_frames - start))] = 1
        clip_labels = gt[8:-7]
        # anomalous clips score higher on average; the scale differs per video as it does for real videos
        s = rng.normal(size=num_frames - 15) + 1.5 * clip_labels
        gts.append(gt)
        scores.append(rng.uniform(0.5, 3) * (s - s.min() + 0.1))
    return gts, scores


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_auc_equals_the_released_protocol(seed):
    gts, scores = random_videos(seed)
    videos = [VideoResult(f'Test{k:03d}', s, align_labels(g, centre_frame_positions(len(s)), f'Test{k:03d}'))
              for k, (g, s) in enumerate(zip(gts, scores), start=1)]
    result = evaluate(videos)
    assert result.auc == pytest.approx(released_protocol_auc(gts, scores), abs=1e-12)
    anomaly = np.concatenate([1 - regularity(s) for s in scores])
    labels = np.concatenate([g[8:-7] for g in gts])
    assert result.auc == pytest.approx(mann_whitney_auc(anomaly[labels == 1], anomaly[labels == 0]), abs=1e-12)
    assert result.auc_unnormalised == pytest.approx(metrics.roc_auc_score(labels, np.concatenate(scores)))
    assert 0.5 < result.auc < 1


def test_released_alignment_is_the_centre_frame():
    gt = np.arange(100) % 2
    assert np.array_equal(align_labels(gt, centre_frame_positions(85)), gt[8:-7])
    clips = np.array([np.arange(k + 1, k + 17) for k in range(85)])  # 1-based frame lists of 16-frame clips
    assert np.array_equal(centre_frames_from_clips(clips), np.arange(8, 93))


def test_general_alignment_for_other_clip_lengths_and_strides():
    clips = np.array([np.arange(s, s + 8) for s in range(1, 40, 3)])  # 8-frame clips starting 1, 4, 7, ...
    assert np.array_equal(centre_frames_from_clips(clips), centre_frame_positions(len(clips), clip_len=8, stride=3))
    assert centre_frame_positions(3, clip_len=8, stride=3).tolist() == [4, 7, 10]


def test_clips_beyond_the_ground_truth_are_an_error():
    assert centre_frame_positions(3).tolist() == [8, 9, 10]  # 16-frame clips at stride 1 by default
    with pytest.raises(ValueError, match='Test007: the ground truth has 20 frames, but its clips reach frame 23'):
        align_labels(np.zeros(20), centre_frame_positions(15), 'Test007')
    # the first and the last frame are fair game; labels come back as 0/1 integers
    aligned = align_labels(np.array([2, 0, 0, 5]), np.array([0, 3]))
    assert aligned.tolist() == [1, 1] and aligned.dtype == np.int64
    with pytest.raises(ValueError, match='reach frame 5'):
        align_labels(np.zeros(4), np.array([0, 4]))


def test_constant_scores_give_regularity_one_not_nan():
    videos = [VideoResult('flat', np.full(10, 0.3), np.array([0] * 5 + [1] * 5)),
              VideoResult('varied', np.linspace(0, 1, 10), np.array([0] * 5 + [1] * 5))]
    result = evaluate(videos)
    assert np.array_equal(regularity(np.full(4, 2.0)), np.ones(4))
    flat_ints = regularity([2, 2])
    assert flat_ints.dtype == np.float64 and flat_ints.tolist() == [1.0, 1.0]
    assert regularity([1, 3, 5, 2]).tolist() == [1.0, 0.5, 0.0, 0.75]
    assert not np.isnan(result.auc)
    assert result.constant_score_videos == ['flat']


def test_metrics_that_need_both_kinds_of_clips_are_nan_without_them():
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # NaN by choice, not from an empty mean or an undefined metric
        normal = evaluate([VideoResult('a', [0.1, 0.5, 0.2], [0, 0, 0]), VideoResult('b', [0.3, 0.4], [0, 0])])
        anomalous = evaluate([VideoResult('a', [0.1, 0.5, 0.2], [1, 1, 1])])
    for result in (normal, anomalous):
        assert np.isnan(result.auc) and np.isnan(result.eer) and np.isnan(result.mean_video_auc)
    assert np.isnan(normal.aupr) and anomalous.aupr == 1.0 and normal.num_anomalous == 0
    one = evaluate([VideoResult('a', [0.1, 0.9, 0.2, 0.3], [0, 1, 0, 0])])  # a single anomalous clip is enough
    assert (one.auc, one.eer, one.mean_video_auc) == (1.0, 0.0, 1.0)


def test_extra_metrics_on_a_perfect_separation():
    result = evaluate([VideoResult('a', np.array([0.1, 0.2, 0.9, 1.0]), np.array([0, 0, 1, 1]))])
    assert (result.auc, result.aupr, result.eer, result.mean_video_auc) == (1.0, 1.0, 0.0, 1.0)


def test_extra_metrics_use_the_normalised_scores_and_skip_one_class_videos():
    videos = [VideoResult('a', np.array([0.1, 0.2, 0.9, 1.0]), np.array([0, 0, 1, 1])),
              VideoResult('b', np.array([0.5, 0.6, 0.7]), np.array([0, 0, 0]))]
    result = evaluate(videos)
    assert result.per_video_auc['a'] == 1.0 and np.isnan(result.per_video_auc['b'])
    assert result.mean_video_auc == 1.0
    labels = [0, 0, 1, 1, 0, 0, 0]
    anomaly = [0, 1 / 9, 8 / 9, 1, 0, 0.5, 1]  # 1 - p, per video
    assert result.aupr == pytest.approx(metrics.average_precision_score(labels, anomaly))
    # Thresholds on 1 - p: at 1, one of 5 normals and one of 2 anomalies flagged (FPR 1/5, FNR 1/2); at 8/9 both
    # anomalies (FPR 1/5, FNR 0). FNR falls past FPR on that vertical stretch of the ROC, at FPR = FNR = 1/5.
    assert result.eer == pytest.approx(0.2, abs=1e-12)
    assert (result.num_clips, result.num_anomalous) == (7, 2)


def test_eval_video_reads_npy_and_gt_and_writes_acc_txt(tmp_path):
    gts, scores = random_videos(3, num_videos=3)
    data = tmp_path / 'UCSD_P2_256'
    (data / 'testing_gt').mkdir(parents=True)
    res = tmp_path / 'res'
    res.mkdir()
    for k, (g, s) in enumerate(zip(gts, scores), start=1):
        write_ground_truth(data / 'testing_gt' / f'Test{k:03d}.mat', g)
        np.save(res / f'Test{k:03d}.npy', s)
    assert sio.loadmat(str(data / 'testing_gt' / 'Test001.mat'))['l'].shape == (1, len(gts[0]))
    auc = eval_video(data, res)
    assert isinstance(auc, float) and auc == pytest.approx(released_protocol_auc(gts, scores), abs=1e-12)
    assert (res / 'acc.txt').read_text() == f'{data}\nAUC: {auc}\n'
    # the released label files, named after the last video: its clip labels (doubles, as MATLAB reads them), and
    # every clip's regularity
    gt_labels = sio.loadmat(str(res / 'Test003_gt_label.mat'))['gt_labels_list']
    assert gt_labels.dtype == np.float64 and np.array_equal(gt_labels.ravel(), gts[2][8:-7])
    assert np.allclose(sio.loadmat(str(res / 'Test003_est_label.mat'))['est_labels_list'].ravel(),
                       np.concatenate([regularity(s) for s in scores]))


@pytest.mark.parametrize('labels, scores, eer', [
    # normals 0.1 0.2 0.3 0.6, anomalies 0.4 0.5 0.7 0.8: flagging >= 0.5 misses 1 of 4 anomalies and raises 1 of 4
    # false alarms, FPR = FNR = 1/4 at a threshold that lies on a straight stretch of the ROC
    ([0, 0, 0, 0, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8], 0.25),
    # all scores tied: the ROC is the diagonal from (0, 0) to (1, 1), which crosses FPR = FNR at 1/2
    ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),
    # normals 0 1 2, anomalies 1.5 3: at >= 3 FPR 0, FNR 1/2; at >= 2 FPR 1/3, FNR 1/2; at >= 1.5 FPR 1/3, FNR 0:
    # the crossing is on the vertical segment at FPR 1/3
    ([0, 0, 0, 1, 1], [0.0, 1.0, 2.0, 1.5, 3.0], 1 / 3),
    # normals 0 2 (tied with an anomaly) 2, anomalies 2 4: >= 4: FPR 0, FNR 1/2; >= 2: FPR 2/3, FNR 0. The segment
    # from (0, 1/2) to (2/3, 0) meets FPR = FNR where t * 2/3 = 1/2 - t / 2, t = 3/7: EER 2/7
    ([0, 0, 0, 1, 1], [0.0, 2.0, 2.0, 2.0, 4.0], 2 / 7),
    ([0, 0, 1, 1], [0.1, 0.2, 0.9, 1.0], 0.0),
])
def test_equal_error_rate_on_hand_worked_rocs(labels, scores, eer):
    from utils.eval import equal_error_rate
    assert equal_error_rate(np.array(labels), np.array(scores)) == pytest.approx(eer, abs=1e-12)


def test_kdd_metrics_flag_the_top_fraction():
    scores = np.arange(10, dtype=float)
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 1])
    result = top_fraction_metrics(scores, labels, 0.2)  # flags the two highest scores: 8 and 9
    assert (result['precision'], result['recall']) == (0.5, 0.5)
    assert result['f1'] == pytest.approx(metrics.f1_score(labels, scores >= 8))


@pytest.mark.parametrize('scores, labels, flagged', [
    # 80th percentile of 1 x 8, 2 x 2 (linear interpolation): 1.2; the two 2s are flagged
    ([1, 1, 1, 1, 1, 1, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1], [8, 9]),
    # the top three scores tie at the percentile (3): "above" flags none of them, as DAGMM's rule does
    ([0, 0, 0, 0, 0, 0, 0, 3, 3, 3], [0, 0, 0, 0, 0, 0, 0, 1, 1, 1], []),
    # duplicates below the threshold change nothing: 80th percentile of 0 x 5, 1 x 3, 5, 9 is 1.8
    ([0, 0, 0, 0, 0, 1, 1, 1, 5, 9], [0, 0, 0, 0, 0, 0, 1, 0, 1, 0], [8, 9]),
])
def test_kdd_rule_with_tied_scores(scores, labels, flagged):
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # nothing flagged is a precision of 0, without a warning about 0 / 0
        result = top_fraction_metrics(np.array(scores, dtype=float), np.array(labels), 0.2)
    predicted = np.isin(np.arange(len(scores)), flagged)
    assert result['threshold'] == pytest.approx(np.percentile(scores, 80))
    assert result['f1'] == pytest.approx(metrics.f1_score(labels, predicted, zero_division=0), abs=1e-12)
    assert result['precision'] == metrics.precision_score(labels, predicted, zero_division=0)
    assert result['recall'] == metrics.recall_score(labels, predicted, zero_division=0)


def test_kdd_rule_thresholds_over_every_score_and_counts_the_test_records_only():
    """dagmm_reimpl: the 80th percentile of training and test scores together, metrics over the test records."""
    scores = np.array([9.5, 1, 2, 3, 4, 5, 6, 7, 8, 9])   # threshold 8.2: records 0 (training) and 9 flagged
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1])
    is_test = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]               # a 0/1 list is a mask too
    result = top_fraction_metrics(scores, labels, 0.2, is_test)
    # test records 5..9: flagged 9 (an anomaly); anomalies 6, 7, 9 -> P 1, R 1/3
    assert result['threshold'] == pytest.approx(8.2)
    assert (result['precision'], result['recall'], result['f1']) == (1.0, pytest.approx(1 / 3), pytest.approx(0.5))
    everything = top_fraction_metrics(scores, labels, 0.2)   # the training record's false alarm counts here
    assert (everything['precision'], everything['recall']) == (0.5, pytest.approx(1 / 3))


def test_results_json_holds_every_metric_and_the_extras(tmp_path):
    evaluation = evaluate([VideoResult('Test001', [1.0, 3.0, 4.0, 5.0], [0, 1, 0, 1])])
    write_results_json(tmp_path, evaluation, {'setting': 'S', 'test_seconds': 1.5, 'root': tmp_path})
    text = (tmp_path / 'results.json').read_text()
    saved = json.loads(text)
    assert text.startswith('{\n  "metrics": {\n    "auc": ') and list(saved) == sorted(saved)  # for people too
    assert saved['metrics'] == json.loads(json.dumps(vars(evaluation)))
    assert saved['metrics']['auc'] == evaluation.auc == 0.75  # anomalies 3, 5 vs normals 1, 4: 3 of 4 pairs
    assert (saved['setting'], saved['test_seconds'], saved['root']) == ('S', 1.5, str(tmp_path))
