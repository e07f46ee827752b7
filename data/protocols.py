"""The one-class evaluation protocols of the paper's image and KDDCUP99 experiments, explicit and seeded.

Images (Sec. 4.1): each class c in turn is "normal", the other classes are anomalies.

* ``standard``: train on the class-c images of the training split; test on every class-c image of the test
  split plus images of the other classes drawn at random (without replacement, from the test split) so that
  anomalies make ``anomaly_ratio`` (30 %) of the test set.
* ``pooled``, for data that comes as one split: all available images together; a random 2/3 of the class-c
  images train, the remaining third plus anomalies drawn as above from the other classes make the test set.

KDDCUP99 (Sec. 4.3, following DAGMM). Both protocols train on the "normal" (label 0, attack) records of the
first half of a random 50/50 split of all records, so one trained model serves both; the records scoring above
the 80th percentile of the *threshold pool* are flagged, and precision / recall / F1 of the anomaly class count
the *test* records:

* ``dagmm`` (DAGMM's text): test records = the whole second half; threshold pool = the test records.
* ``dagmm_reimpl`` (what the widely used public DAGMM re-implementation does): test records = the attack records of
  the second half plus *every* anomaly ('normal.') record, both halves; threshold pool = training and test
  records together. The re-implementation draws exactly half of the attack records for training; here the
  training half of ``dagmm`` serves, a uniformly random half of them too (its size varies by a few hundred).

Every function takes a seed; the same seed gives the same split.
"""
from dataclasses import dataclass

import numpy as np

from utils.errors import InputError

IMAGE_PROTOCOLS = ('standard', 'pooled')
KDD_PROTOCOLS = ('dagmm', 'dagmm_reimpl')
PROTOCOLS = ('auto', *IMAGE_PROTOCOLS, *KDD_PROTOCOLS)
POOLED_TRAIN_FRACTION = 2 / 3


@dataclass
class OneClassSplit:
    """Training samples (all normal) and test samples with labels (1 = anomaly)."""
    train_x: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    description: str


def resolve_protocol(protocol, splits):
    """Images: 'auto' -> 'standard' when a training and a test split exist, else 'pooled'."""
    if protocol not in ('auto', *IMAGE_PROTOCOLS):
        raise InputError(f"--Protocol {protocol} is no image protocol; valid: auto, {', '.join(IMAGE_PROTOCOLS)}")
    both = 'train' in splits and 'test' in splits
    if protocol == 'auto':
        return 'standard' if both else 'pooled'
    if protocol == 'standard' and not both:
        raise InputError('--Protocol standard needs a training and a test split; this data set has only '
                         f"{', '.join(splits)}: use --Protocol pooled")
    return protocol


def _anomaly_count(num_normal, num_available, anomaly_ratio):
    """How many anomalies make ``anomaly_ratio`` of a set with ``num_normal`` normal samples."""
    if not 0 < anomaly_ratio < 1:
        raise InputError(f'--AnomalyRatio must lie strictly between 0 and 1, got {anomaly_ratio}')
    wanted = int(round(num_normal * anomaly_ratio / (1 - anomaly_ratio)))
    if wanted > num_available:
        raise InputError(f'{wanted} anomalies are needed for --AnomalyRatio {anomaly_ratio} but only {num_available} '
                         f'samples of other classes exist')
    return wanted


@dataclass
class SplitRows:
    """A one-class image split as indices: training rows into ``train_source`` (images, labels), normal test rows
    and drawn anomaly rows into ``test_source`` (the same arrays under the pooled protocol)."""
    train_source: tuple
    train_rows: np.ndarray
    test_source: tuple
    normal_test_rows: np.ndarray
    anomaly_rows: np.ndarray
    description: str


def image_split_rows(splits, normal_class, protocol, anomaly_ratio, seed):
    """The :class:`SplitRows` of one normal class; ``splits`` maps 'train'/'test' to (images, labels)."""
    rng = np.random.default_rng(seed)
    if protocol == 'standard':
        train_source, test_source = splits['train'], splits['test']
        train_rows = np.flatnonzero(train_source[1] == normal_class)
        normal_test = np.flatnonzero(test_source[1] == normal_class)
        description = 'standard: class-c training images; class-c test images + drawn test anomalies'
    else:
        pool = (np.concatenate([x for x, _ in splits.values()]), np.concatenate([y for _, y in splits.values()]))
        train_source = test_source = pool
        normal = np.flatnonzero(pool[1] == normal_class)
        normal = normal[rng.permutation(len(normal))]
        cut = int(round(len(normal) * POOLED_TRAIN_FRACTION))
        train_rows, normal_test = normal[:cut], normal[cut:]
        description = 'pooled: 2/3 of the class-c images train; the rest + drawn anomalies test'
    if len(train_rows) == 0:
        raise InputError(f'--NormalClass {normal_class} has no training images')
    others = np.flatnonzero(test_source[1] != normal_class)
    wanted = _anomaly_count(len(normal_test), len(others), anomaly_ratio)
    anomalies = others[rng.choice(len(others), size=wanted, replace=False)]
    return SplitRows(train_source, train_rows, test_source, normal_test, anomalies, description)


def _labelled(x, normal_rows, anomaly_rows):
    """Normal samples then anomalies, with labels 0 and 1."""
    samples = np.concatenate([x[normal_rows], x[anomaly_rows]])
    labels = np.concatenate([np.zeros(len(normal_rows), np.int64), np.ones(len(anomaly_rows), np.int64)])
    return samples, labels


def image_split(splits, normal_class, protocol, anomaly_ratio, seed):
    """The split for one normal class; ``splits`` maps 'train'/'test' to (images, labels)."""
    rows = image_split_rows(splits, normal_class, protocol, anomaly_ratio, seed)
    test_x, test_y = _labelled(rows.test_source[0], rows.normal_test_rows, rows.anomaly_rows)
    return OneClassSplit(rows.train_source[0][rows.train_rows], test_x, test_y, rows.description)


# Validation data (choosing settings without test data): a share of the training samples held out as normals, and
# anomalies the test set does not hold, from a random stream of its own (not the split's).
VALIDATION_HELD_OUT = 0.2
VALIDATION_SEED_OFFSET = 10_000


def image_validation_split(splits, normal_class, protocol, anomaly_ratio, seed):
    """Training and validation data from the *training* images of the split of ``seed``: a random 20 % of the
    class-c training images are held out as validation normals (the model trains on the other 80 %), plus
    images of other classes that the unit's test set does not contain (standard: the training split's; pooled:
    pool images not drawn as test anomalies), drawn so that anomalies make ``anomaly_ratio`` of the validation
    set as in the test set."""
    rows = image_split_rows(splits, normal_class, protocol, anomaly_ratio, seed)
    rng = np.random.default_rng(seed + VALIDATION_SEED_OFFSET)
    train_rows = rows.train_rows[rng.permutation(len(rows.train_rows))]
    cut = int(round(len(train_rows) * VALIDATION_HELD_OUT))
    held_out, fit = train_rows[:cut], train_rows[cut:]
    x, y = rows.train_source
    others = np.flatnonzero(y != normal_class)
    if rows.train_source is rows.test_source:
        others = np.setdiff1d(others, rows.anomaly_rows)
    wanted = _anomaly_count(len(held_out), len(others), anomaly_ratio)
    check_validation_counts(f'class {normal_class} (seed {seed})', len(held_out), wanted, f'{len(train_rows)} training '
                            'images of the class')
    val_x, val_y = _labelled(x, held_out, others[rng.choice(len(others), size=wanted, replace=False)])
    return OneClassSplit(x[fit], val_x, val_y, f'validation from the training images ({rows.description})')


def kdd_halves(num_records, seed):
    """Indices of the random training and test halves of split ``seed``."""
    order = np.random.default_rng(seed).permutation(num_records)
    return order[:num_records // 2], order[num_records // 2:]


KDD_DESCRIPTIONS = {
    'dagmm': 'dagmm: random 50/50 split; train on the attack ("normal") records of the first half; test on the '
             'whole second half; threshold over the test scores',
    'dagmm_reimpl': 'dagmm_reimpl: train on the attack ("normal") records of the first half of a random 50/50 '
                    'split; test on the other attack records plus every anomaly record; threshold over training '
                    'and test scores',
}


def resolve_kdd_protocol(protocol):
    """KDDCUP99: 'auto' -> 'dagmm'."""
    if protocol not in ('auto', *KDD_PROTOCOLS):
        raise InputError(f"--Protocol {protocol} is no KDDCUP99 protocol; valid: auto, {', '.join(KDD_PROTOCOLS)}")
    return 'dagmm' if protocol == 'auto' else protocol


@dataclass
class KddRows:
    """The records of one KDDCUP99 run under a protocol: indices of the training records, indices of the records
    whose scores set the threshold (the pool), which of the pool are test records (a boolean mask), and (with
    validation; else None) the validation records."""
    train: np.ndarray
    pool: np.ndarray
    is_test: np.ndarray
    val: np.ndarray = None


def kdd_rows(y, seed, protocol, validation=False, anomaly_ratio=0.2):
    """The :class:`KddRows` of split ``seed`` under ``protocol`` (``dagmm`` or ``dagmm_reimpl``).

    With ``validation`` (--EarlyStopping) the run holds out its validation set (:func:`kdd_validation_rows`) and
    trains on the rest of its training records. The validation set comes from the training half, so ``dagmm``'s
    test records (the second half) never include it. ``dagmm_reimpl`` counts *every* anomaly record as a test
    record, the validation anomalies (first-half anomaly records) included: here they stay in its threshold pool,
    as the training records do, and are not counted as test records, so that no record that chose the run's
    stopping epoch is scored as a test record. The pool, and hence the threshold, is the re-implementation's."""
    first, second = kdd_halves(len(y), seed)
    attacks = first[y[first] == 0]
    train, val = kdd_validation_rows(y, seed, anomaly_ratio) if validation else (attacks, None)
    if protocol == 'dagmm':
        return KddRows(train, second, np.ones(len(second), bool), val)
    test = np.concatenate([second, first[y[first] == 1]])
    is_test = np.arange(len(attacks) + len(test)) >= len(attacks)
    if val is not None:
        is_test[len(attacks):] = ~np.isin(test, val)
    return KddRows(train, np.concatenate([attacks, test]), is_test, val)


def kdd_validation_rows(y, seed, anomaly_ratio=0.2):
    """(training rows, validation rows) from the *training* half of split ``seed``: a random 20 % of its attack
    records held out, the model training on the other 80 %; the validation set is those records plus anomaly
    ('normal.') records of the training half, which ``dagmm`` never uses (``dagmm_reimpl`` uses them as test
    records: :func:`kdd_rows` leaves a run's validation records out of its test records), drawn so that anomalies
    make ``anomaly_ratio`` of it. A record's *values* may also occur among the test records (KDDCUP99 repeats many
    records; about half of the training records are copies of one ``smurf.`` record): the sets are disjoint as
    records, as the training and test sets of the protocol are; docs/REPRODUCTION.md measures what the copies
    change."""
    rng = np.random.default_rng(seed + VALIDATION_SEED_OFFSET)
    first = kdd_halves(len(y), seed)[0]
    attacks, anomalies = first[y[first] == 0], first[y[first] == 1]
    attacks = attacks[rng.permutation(len(attacks))]
    cut = int(len(attacks) * VALIDATION_HELD_OUT)
    wanted = int(round(cut * anomaly_ratio / (1 - anomaly_ratio)))
    if wanted > len(anomalies):
        raise InputError(f'--EarlyStopping: the validation set of the KDDCUP99 run of seed {seed} needs {wanted} '
                         f'"normal." records of its training half, which holds {len(anomalies)}: too few records')
    check_validation_counts(f'KDDCUP99 run of seed {seed}', cut, wanted,
                            f'{len(attacks)} attack and {len(anomalies)} "normal." records in its training half')
    return attacks[cut:], np.concatenate([attacks[:cut], rng.choice(anomalies, size=wanted, replace=False)])


def check_validation_counts(unit, normal, anomalous, available):
    """A validation set needs normal and anomalous samples, or its metric (AUC, F1) is undefined: refused before
    any training, naming the unit and the counts."""
    if normal < 1 or anomalous < 1:
        raise InputError(f'--EarlyStopping: the validation set of {unit} would hold {normal} normal and {anomalous} '
                         f'anomalous samples, from {available}: its metric is undefined; more data is needed to '
                         f'choose an epoch on validation (or leave --EarlyStopping out)')


def kdd_indices(y, seed):
    """``dagmm``: (training indices: the label-0 records of the first half, test indices: the whole second half)."""
    rows = kdd_rows(y, seed, 'dagmm')
    return rows.train, rows.pool


def kdd_split(x, y, seed):
    """``dagmm``: random halves; train on the label-0 records of the first half, test on the whole second half."""
    train, test = kdd_indices(y, seed)
    return OneClassSplit(x[train], x[test], y[test], KDD_DESCRIPTIONS['dagmm'])
