"""Localization (pixel-level) evaluation of video anomaly scores, for test sets with pixel masks.

The error map of a clip is the per-pixel L2 reconstruction error (over channels, on the [-1, 1] frames) of its
centre frame (position T // 2: the frame whose label the clip takes in the frame-level protocol), at the prepared
resolution. The frames evaluated are the clips' centre frames of the test videos that have masks
(``testing_masks/``, written by ``data.prepare_video``), as the frame-level AUC evaluates exactly those frames; a
frame is anomalous when its prepared mask has a pixel. Two measures:

* **the UCSD pixel-level criterion** (Mahadevan et al., CVPR 2010): at a threshold t every pixel whose error is at
  least t is flagged; an anomalous frame counts as detected (a true positive) when at least 40 % of its mask's
  pixels are flagged, a normal frame counts as a false positive when any of its pixels is flagged. Sweeping t
  gives an ROC, of which we report the AUC and the equal error rate. Each frame reduces to one number: an
  anomalous frame is detected exactly when t <= its k-th largest error inside the mask (k = ceil(0.4 n) of its n
  mask pixels), a normal frame is flagged exactly when t <= its largest error; so the criterion's ROC is the
  ordinary ROC of those per-frame numbers, computed exactly (no threshold grid).
* **pixel-wise AUROC**: every pixel of every evaluated frame, mask pixels positive, scored by its error. Pixels are
  counted in histograms over the errors' float32 bit patterns (their top bits: bins 2^-11 wide relative to the
  value), so memory does not grow with the test set; a positive and a negative pixel in the same bin count one
  half, and ``pixel_auroc_bin_bound`` is the most that rule can move the AUROC.
"""
import math
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
from sklearn import metrics

from data.readers import DataFormatError, frame_files, load_image
from utils.errors import InputError
from utils.eval import equal_error_rate
from utils.scoring import MODEL_OVERFLOW

DETECTED_SHARE = Fraction(2, 5)  # the UCSD criterion: 40 % of an anomalous frame's mask pixels flagged
BIN_SHIFT = 12                   # float32 bits dropped: 1 sign (always 0) + 8 exponent + 11 mantissa bits remain
NUM_BINS = 1 << (31 - BIN_SHIFT)


@dataclass
class Localization:
    pixel_level_auc: float        # AUC of the UCSD pixel-level criterion's ROC
    pixel_level_eer: float        # its equal error rate
    pixel_auroc: float            # every pixel, mask pixels positive
    pixel_auroc_bin_bound: float  # the largest change the histogram's within-bin half counting can make
    frames: int
    anomalous_frames: int
    pixels: int
    anomalous_pixels: int
    videos: list


def criterion_scores(error_maps, masks):
    """Per frame, the largest threshold at which the UCSD criterion fires: for a frame whose mask has n > 0
    pixels, the k-th largest error inside the mask (k = ceil(0.4 n)); for a frame with an empty mask, its largest
    error. ``error_maps`` N x H x W, ``masks`` N x H x W bool."""
    scores = np.empty(len(error_maps), dtype=np.float64)
    for i, (errors, mask) in enumerate(zip(error_maps, masks)):
        inside = errors[mask]
        if inside.size:
            k = math.ceil(inside.size * DETECTED_SHARE)
            scores[i] = np.partition(inside, inside.size - k)[inside.size - k]
        else:
            scores[i] = errors.max()
    return scores


def bin_keys(errors):
    """Histogram bins of non-negative float32 errors: the top bits of their bit patterns, which order as the
    values do."""
    errors = np.ascontiguousarray(errors, dtype=np.float32)
    if not np.all(errors >= 0):  # also False for NaN
        raise ValueError('error maps must be non-negative numbers (a NaN means the model diverged)')
    return errors.view(np.uint32) >> BIN_SHIFT


class LocalizationAccumulator:
    """Collects error maps and masks frame by frame; :meth:`result` gives the :class:`Localization`."""

    def __init__(self):
        self.scores, self.anomalous, self.videos = [], [], []
        self.positives = np.zeros(NUM_BINS, dtype=np.int64)
        self.negatives = np.zeros(NUM_BINS, dtype=np.int64)

    def add(self, error_maps, masks):
        """Error maps (N x H x W float) and masks (N x H x W bool) of N frames."""
        error_maps, masks = np.asarray(error_maps), np.asarray(masks, dtype=bool)
        if error_maps.shape != masks.shape:
            raise DataFormatError(f'pixel masks of {masks.shape[1]} x {masks.shape[2]} pixels do not fit error maps '
                                  f'of {error_maps.shape[1]} x {error_maps.shape[2]}: the masks must have the '
                                  f'prepared frame size')
        keys = bin_keys(error_maps)
        self.positives += np.bincount(keys[masks], minlength=NUM_BINS)
        self.negatives += np.bincount(keys[~masks], minlength=NUM_BINS)
        self.scores.append(criterion_scores(error_maps, masks))
        self.anomalous.append(masks.any(axis=(1, 2)))

    def video(self, name, centre_frames, mask_folder):
        """A callable taking a video's error maps in clip order (as :func:`utils.scoring.score_video` hands them
        over) and adding them with the masks of the clips' centre frames (0-based) from ``mask_folder``."""
        self.videos.append(name)
        paths = frame_files(mask_folder)
        queue = list(centre_frames)

        def mask(frame, size):
            if frame + 1 not in paths:
                raise DataFormatError(f'{mask_folder} has no mask for frame {frame + 1} of {name}')
            pixels = load_image(paths[frame + 1], 'L', 'mask')[:, :, 0] > 0
            if pixels.shape != size:
                raise DataFormatError(f'mask {paths[frame + 1]} is {pixels.shape[1]} x {pixels.shape[0]} pixels, but '
                                      f'the frames of {name} are {size[1]} x {size[0]}: masks must have the '
                                      f'prepared frame size')  # width x height, as the frame readers say it
            return pixels

        def add_maps(error_maps):
            frames, queue[:] = queue[:len(error_maps)], queue[len(error_maps):]
            odd = np.flatnonzero(~np.isfinite(error_maps).all(axis=(1, 2)))
            if odd.size:
                raise InputError(f'test video {name}: the error map of the clip centred on frame {frames[odd[0]] + 1} '
                                 f'is not finite; {MODEL_OVERFLOW}')
            self.add(error_maps, np.stack([mask(frame, error_maps.shape[1:]) for frame in frames]))
        return add_maps

    def labels_and_scores(self):
        """Per evaluated frame: 1 if anomalous (a non-empty mask), and the criterion's score."""
        return np.concatenate(self.anomalous).astype(np.int64), np.concatenate(self.scores)

    def pixel_roc(self):
        """(false positive rates, true positive rates) of the pixel-wise ROC, one point per occupied bin,
        thresholds from the highest bin down."""
        occupied = (self.positives + self.negatives) > 0
        tpr = np.cumsum(self.positives[occupied][::-1]) / max(self.positives.sum(), 1)
        fpr = np.cumsum(self.negatives[occupied][::-1]) / max(self.negatives.sum(), 1)
        return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])

    def pixel_auroc(self):
        """(AUROC, bound): positives above negatives from lower bins, plus half the pairs that share a bin."""
        positives, negatives = self.positives.astype(np.float64), self.negatives.astype(np.float64)
        pairs = positives.sum() * negatives.sum()
        if pairs == 0:
            return float('nan'), float('nan')
        below = np.cumsum(negatives) - negatives
        shared = float(np.dot(positives, negatives))
        return float((np.dot(positives, below) + 0.5 * shared) / pairs), 0.5 * shared / pairs

    def result(self):
        labels, scores = self.labels_and_scores()
        both = 0 < labels.sum() < len(labels)
        auroc, bound = self.pixel_auroc()
        return Localization(
            pixel_level_auc=float(metrics.roc_auc_score(labels, scores)) if both else float('nan'),
            pixel_level_eer=equal_error_rate(labels, scores) if both else float('nan'),
            pixel_auroc=auroc, pixel_auroc_bin_bound=bound,
            frames=int(len(labels)), anomalous_frames=int(labels.sum()),
            pixels=int(self.positives.sum() + self.negatives.sum()), anomalous_pixels=int(self.positives.sum()),
            videos=list(self.videos))

    def as_dict(self):
        return asdict(self.result())
