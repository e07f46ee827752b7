"""The one-class evaluation protocols of the paper's image and KDDCUP99 experiments, explicit and seeded.

Images (Sec. 4.1): each class c in turn is "normal", the other classes are anomalies.

* ``standard``: train on the class-c images of the training split; test on every class-c image of the test
  split plus images of the other classes drawn at random (without replacement, from the test split) so that
  anomalies make ``anomaly_ratio`` (30 %) of the test set.
* ``pooled``, for data that comes as one split: all available images together; a random 2/3 of the class-c
  images train, the remaining third plus anomalies drawn as above from the other classes make the test set.

KDDCUP99 (Sec. 4.3, following DAGMM): a random 50/50 split of all records; the model trains on the "normal"
(label 0, attack) records of the first half only and is tested on the whole second half.

Every function takes a seed; the same seed gives the same split.
"""
from dataclasses import dataclass

import numpy as np

from utils.errors import InputError

PROTOCOLS = ('auto', 'standard', 'pooled')
POOLED_TRAIN_FRACTION = 2 / 3


@dataclass
class OneClassSplit:
    """Training samples (all normal) and test samples with labels (1 = anomaly)."""
    train_x: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    description: str


def resolve_protocol(protocol, splits):
    """'auto' -> 'standard' when a training and a test split exist, else 'pooled'."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown --Protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    both = 'train' in splits and 'test' in splits
    if protocol == 'auto':
        return 'standard' if both else 'pooled'
    if protocol == 'standard' and not both:
        raise InputError('--Protocol standard needs a training and a test split; this data set has only '
                         f"{', '.join(splits)}: use --Protocol pooled")
    return protocol


def _with_anomalies(normal_x, other_x, anomaly_ratio, rng):
    """Normal test samples plus randomly drawn anomalies making ``anomaly_ratio`` of the result."""
    if not 0 < anomaly_ratio < 1:
        raise InputError(f'--AnomalyRatio must lie strictly between 0 and 1, got {anomaly_ratio}')
    wanted = int(round(len(normal_x) * anomaly_ratio / (1 - anomaly_ratio)))
    if wanted > len(other_x):
        raise InputError(f'{wanted} anomalies are needed for --AnomalyRatio {anomaly_ratio} but only {len(other_x)} '
                         f'samples of other classes exist')
    anomalies = other_x[rng.choice(len(other_x), size=wanted, replace=False)]
    test_x = np.concatenate([normal_x, anomalies])
    test_y = np.concatenate([np.zeros(len(normal_x), np.int64), np.ones(wanted, np.int64)])
    return test_x, test_y


def image_split(splits, normal_class, protocol, anomaly_ratio, seed):
    """The split for one normal class; ``splits`` maps 'train'/'test' to (images, labels)."""
    rng = np.random.default_rng(seed)
    if protocol == 'standard':
        train_x, train_y = splits['train']
        test_x, test_y = splits['test']
        normal_train = train_x[train_y == normal_class]
        x, y = _with_anomalies(test_x[test_y == normal_class], test_x[test_y != normal_class], anomaly_ratio, rng)
        description = 'standard: class-c training images; class-c test images + drawn test anomalies'
    else:
        pool_x = np.concatenate([x for x, _ in splits.values()])
        pool_y = np.concatenate([y for _, y in splits.values()])
        normal = pool_x[pool_y == normal_class][rng.permutation(int((pool_y == normal_class).sum()))]
        cut = int(round(len(normal) * POOLED_TRAIN_FRACTION))
        normal_train = normal[:cut]
        x, y = _with_anomalies(normal[cut:], pool_x[pool_y != normal_class], anomaly_ratio, rng)
        description = 'pooled: 2/3 of the class-c images train; the rest + drawn anomalies test'
    if len(normal_train) == 0:
        raise InputError(f'--NormalClass {normal_class} has no training images')
    return OneClassSplit(normal_train, x, y, description)


def kdd_halves(num_records, seed):
    """Indices of the random training and test halves of split ``seed``."""
    order = np.random.default_rng(seed).permutation(num_records)
    return order[:num_records // 2], order[num_records // 2:]


KDD_DESCRIPTION = 'DAGMM: random 50/50 split; train on the attack ("normal") records of the first half'


def kdd_indices(y, seed):
    """(training indices: the label-0 records of the first half, test indices: the whole second half)."""
    train, test = kdd_halves(len(y), seed)
    return train[y[train] == 0], test


def kdd_split(x, y, seed):
    """Random halves; train on the label-0 records of the first half, test on the whole second half."""
    train, test = kdd_indices(y, seed)
    return OneClassSplit(x[train], x[test], y[test], KDD_DESCRIPTION)
