"""The localization measures of utils/localization.py against hand-worked cases and a direct implementation of the
UCSD pixel-level rule (threshold by threshold, pixel by pixel)."""
import numpy as np
import pytest
from PIL import Image
from sklearn import metrics

from data.readers import DataFormatError
from utils.localization import Localization, LocalizationAccumulator, criterion_scores


def flagged_rule_roc(error_maps, masks):
    """The UCSD pixel-level criterion applied literally at every threshold that matters (every distinct error and
    one above the largest): (FPR, TPR) points from the strictest threshold down."""
    anomalous = masks.any(axis=(1, 2))
    points = []
    for t in np.concatenate([[np.inf], np.unique(error_maps)[::-1]]):
        flagged = error_maps >= t
        detected = [(f & m).sum() >= 0.4 * m.sum() for f, m in zip(flagged[anomalous], masks[anomalous])]
        false_alarms = [f.any() for f in flagged[~anomalous]]
        points.append((np.mean(false_alarms), np.mean(detected)))
    return np.array(points)


def random_case(seed, frames=12, size=6):
    rng = np.random.default_rng(seed)
    errors = rng.random((frames, size, size)).astype(np.float32)
    masks = np.zeros((frames, size, size), dtype=bool)
    for i in range(0, frames, 2):  # every other frame anomalous, with a mask of 1 to 9 pixels of raised error
        h, w = rng.integers(1, 4, size=2)
        y, x = rng.integers(0, size - 2, size=2)
        masks[i, y:y + h, x:x + w] = True
        errors[i][masks[i]] += rng.random(h * w).astype(np.float32)
    return errors, masks


def test_an_anomalous_frame_is_detected_once_40_percent_of_its_mask_is_flagged():
    errors = np.zeros((1, 4, 4), dtype=np.float32)
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, 0, :] = mask[0, 1, 0] = True  # 5 mask pixels: 40 % is 2 of them
    errors[0][mask[0]] = [0.9, 0.8, 0.1, 0.1, 0.1]
    errors[0, 3, 3] = 5.0  # outside the mask: does not count for an anomalous frame
    assert criterion_scores(errors, mask)[0] == pytest.approx(0.8)  # flagged at 0.8: 2 of 5; at 0.85: 1 of 5
    ten = np.arange(1, 11, dtype=np.float32).reshape(1, 2, 5)  # 10 mask pixels: 40 % is exactly 4 of them
    assert criterion_scores(ten, np.ones_like(ten, dtype=bool))[0] == 7.0
    # a normal frame is a false alarm as soon as any pixel is flagged: its largest error
    assert criterion_scores(errors, np.zeros_like(mask))[0] == 5.0


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_pixel_level_roc_equals_the_rule_applied_threshold_by_threshold(seed):
    errors, masks = random_case(seed)
    accumulator = LocalizationAccumulator()
    accumulator.add(errors[:5], masks[:5])  # in two parts, as videos come
    accumulator.add(errors[5:], masks[5:])
    result = accumulator.result()
    points = flagged_rule_roc(errors, masks)
    assert result.pixel_level_auc == pytest.approx(np.trapezoid(points[:, 1], points[:, 0]), abs=1e-12)
    assert (result.frames, result.anomalous_frames) == (12, 6)
    labels, scores = accumulator.labels_and_scores()
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    assert {tuple(p) for p in points} >= set(zip(fpr, tpr))  # every corner of our ROC is a point of the rule's


def test_pixel_level_equal_error_rate_on_a_hand_worked_case():
    # two anomalous frames (scores 0.8 and 0.3 under the rule) and two normal ones (largest errors 0.5 and 0.1)
    errors = np.array([[[0.8, 0.0]], [[0.3, 0.0]], [[0.5, 0.0]], [[0.1, 0.0]]], dtype=np.float32)
    masks = np.array([[[True, False]], [[True, False]], [[False, False]], [[False, False]]])
    accumulator = LocalizationAccumulator()
    accumulator.add(errors, masks)
    result = accumulator.result()
    # thresholds 0.8 / 0.5 / 0.3: (FPR, TPR) = (0, 0.5), (0.5, 0.5), (0.5, 1): AUC 0.75, FPR = FNR = 0.5
    assert result.pixel_level_auc == pytest.approx(0.75)
    assert result.pixel_level_eer == pytest.approx(0.5)


def test_pixel_auroc_is_sklearns_within_its_bin_bound():
    errors, masks = random_case(3, frames=20, size=16)
    accumulator = LocalizationAccumulator()
    accumulator.add(errors, masks)
    result = accumulator.result()
    exact = metrics.roc_auc_score(masks.ravel(), errors.ravel())
    assert 0 < result.pixel_auroc_bin_bound < 1e-3
    assert abs(result.pixel_auroc - exact) <= result.pixel_auroc_bin_bound
    assert (result.pixels, result.anomalous_pixels) == (errors.size, int(masks.sum()))
    fpr, tpr = accumulator.pixel_roc()  # one point per bin with a pixel in it (many hold just one here)
    bins = np.unique(errors.view(np.uint32) >> 12)  # float32 bits: sign, exponent and 11 mantissa bits
    assert (fpr[-1], tpr[-1]) == (1, 1) and len(fpr) == len(bins) + 1
    ties = np.round(errors * 4) / 4  # only exact ties share a bin: the histogram count is exact
    tied = LocalizationAccumulator()
    tied.add(ties, masks)
    result = tied.result()
    assert result.pixel_auroc == pytest.approx(metrics.roc_auc_score(masks.ravel(), ties.ravel()), abs=1e-12)
    values, positives = np.unique(ties[masks], return_counts=True)
    negatives = np.array([(ties[~masks] == v).sum() for v in values])
    tied_pairs = (positives * negatives).sum() / (masks.sum() * (~masks).sum())
    assert result.pixel_auroc_bin_bound == pytest.approx(0.5 * tied_pairs)  # half of the tied pairs, at most
    fpr, tpr = tied.pixel_roc()
    reference_fpr, reference_tpr, _ = metrics.roc_curve(masks.ravel(), ties.ravel())
    assert np.allclose(fpr, reference_fpr) and np.allclose(tpr, reference_tpr)


def test_the_smallest_cases_and_other_dtypes():
    # one anomalous frame with one mask pixel, one normal frame: every measure is defined, and perfect here
    errors = np.array([[[0.9, 0.1]], [[0.2, 0.3]]], dtype=np.float32)
    masks = np.array([[[True, False]], [[False, False]]])
    accumulator = LocalizationAccumulator()
    accumulator.add(errors, masks)
    result = accumulator.result()
    assert (result.pixel_level_auc, result.pixel_level_eer, result.pixel_auroc) == (1.0, 0.0, 1.0)
    fpr, tpr = accumulator.pixel_roc()
    assert fpr.tolist() == [0, 0, 1 / 3, 2 / 3, 1] and tpr.tolist() == [0, 1, 1, 1, 1]
    single = LocalizationAccumulator()  # one positive and one negative pixel
    single.add(np.array([[[0.5, 0.4]]], dtype=np.float32), np.array([[[True, False]]]))
    assert single.pixel_auroc() == (1.0, 0.0) and [a.tolist() for a in single.pixel_roc()] == [[0, 0, 1], [0, 1, 1]]
    # float64 maps and 0 / 255 masks count as float32 maps and boolean masks do
    errors, masks = random_case(6)
    reference = LocalizationAccumulator()
    reference.add(errors, masks)
    other = LocalizationAccumulator()
    other.add(errors.astype(np.float64), masks.astype(np.uint8) * 255)
    assert other.result() == reference.result()


def test_a_test_set_of_one_class_gives_nan_rather_than_a_number():
    errors, masks = random_case(4)
    accumulator = LocalizationAccumulator()
    accumulator.add(errors[1::2], masks[1::2])  # the normal frames only: no anomalous frame, no mask pixel
    result = accumulator.result()
    assert np.isnan(result.pixel_level_auc) and np.isnan(result.pixel_level_eer)
    assert np.isnan(result.pixel_auroc) and np.isnan(result.pixel_auroc_bin_bound)
    everything_anomalous = LocalizationAccumulator()
    everything_anomalous.add(errors[::2], masks[::2])
    assert np.isnan(everything_anomalous.result().pixel_level_auc)
    assert not np.isnan(everything_anomalous.result().pixel_auroc)  # their other pixels are negatives


def test_video_reads_the_mask_of_each_clips_centre_frame(tmp_path):
    errors, masks = random_case(5, frames=6)
    for t in range(1, 10):  # masks of frames 1..9; the clips' centre frames are 3..8 (0-based 2..7)
        mask = masks[t - 3] if 3 <= t <= 8 else np.ones((6, 6), dtype=bool)
        Image.fromarray(mask.astype(np.uint8)).save(tmp_path / f'{t:03d}.png')  # 0 / 1: any non-zero pixel counts
    streamed = LocalizationAccumulator()
    add_maps = streamed.video('Test007', np.arange(2, 8), tmp_path)
    add_maps(errors[:4])  # in batches, as the scoring loop hands them over
    add_maps(errors[4:])
    direct = LocalizationAccumulator()
    direct.add(errors, masks)
    assert streamed.result() == Localization(**{**direct.as_dict(), 'videos': ['Test007']})
    (tmp_path / '008.png').unlink()
    with pytest.raises(DataFormatError, match='has no mask for frame 8 of Test007'):
        streamed.video('Test007', np.arange(2, 8), tmp_path)(errors)


def test_masks_of_another_size_or_nan_errors_are_refused():
    accumulator = LocalizationAccumulator()
    with pytest.raises(DataFormatError, match='must have the prepared frame size'):
        accumulator.add(np.zeros((1, 4, 4)), np.zeros((1, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match='non-negative'):
        accumulator.add(np.full((1, 2, 2), np.nan), np.zeros((1, 2, 2), dtype=bool))
