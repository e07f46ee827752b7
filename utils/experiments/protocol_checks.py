"""Checks of the one-class protocols that docs/REPRODUCTION.md reports.

    python -m utils.experiments.protocol_checks ties ./results/res_<setting>/ [more result folders]
    python -m utils.experiments.protocol_checks copies --DataRoot /path/to/data --Runs 20
    python -m utils.experiments.protocol_checks overlap CIFAR10 --DataRoot /path/to/data --Seeds 1 2 3
    python -m utils.experiments.protocol_checks regimes kdd --DataRoot /path/to/data --LR 1e-3 --Epochs 12

``ties``: the ratio argument of docs/REPRODUCTION.md (recall / precision = records flagged / anomalies tested)
assumes that the KDD rule flags exactly 20 % of the threshold pool. Records tied at the threshold are not flagged
(utils/eval.py), and KDDCUP99 repeats many records, whose scores are then equal; this counts, per run of saved
scores (``run<r>_scores.npz``), the pool records whose score equals the threshold and the share flagged.

``copies``: KDDCUP99 holds 494,021 records but only about 146,000 distinct ones. Per run (split seed Seed + r),
the share of the validation records of --EarlyStopping (data/protocols.py ``kdd_validation_rows``) whose values
occur among the run's test records, under either protocol, and the same share for its training records: the
validation set is disjoint from the test set as records, not as values, like the training set.

``overlap``: an image data set's validation sets (data/protocols.py ``image_validation_split``) are built from
the training images of one seed's split; under the pooled protocol another seed splits the images differently.
For the validation set of the first of --Seeds, per class, the share of its images that are test images of the
other seeds' splits: what a setting chosen on that validation set may have seen of their test sets.

``regimes``: KDDCUP99's validation F1 jumps between a few levels from one epoch to the next. The explanation
docs/REPRODUCTION.md gives: the records repeat in large blocks of equal values (equal values score alike), and a
block of attack records that scores above the threshold takes a share of the flagged records all at once. This
tests it on the validation set of ``--Seed`` (no test record): first the F1 the rule would give if one block of
attack records were flagged whole and the rest of the flagged records were anomalies (per block, largest first:
the levels the explanation predicts; likewise per attack type); then, training the experiment's model as the
validation program does, after every epoch its F1, the attack records it flags, the largest block among them and
the largest attack type (``smurf.``, ``neptune.``, ...), each with the F1 were it scored below the threshold.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from data.kdd import ANOMALY_LABEL, kdd_record_labels, load_kdd
from data.protocols import image_split, image_validation_split, kdd_rows, kdd_validation_rows, resolve_protocol
from data.registry import dataset_spec
from models import is_memory_model
from utils.errors import InputError, run_cli
from utils.eval import top_fraction_metrics, top_fraction_threshold
from utils.experiments.validation import experiment_options, train_validation_unit, validation_units
from utils.one_class import score_samples
from utils.scoring import resolve_score_type


def saved_scores(path):
    """The ``scores`` array of a unit's ``_scores.npz`` file."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return np.asarray(saved['scores'], dtype=np.float64)
    except Exception as error:  # truncated, foreign bytes, no 'scores' entry
        raise InputError(f'{path} is not a readable scores file of a unit ({type(error).__name__})') from None


def tie_counts(folder, fraction):
    """Per run of ``folder``: (records tied at the threshold, share of the pool flagged)."""
    paths = sorted(Path(folder).glob('run*_scores.npz'))
    if not paths:
        raise InputError(f'{folder} holds no run<r>_scores.npz files: give a KDDCUP99 result folder (res_<setting>)')
    counts = []
    for path in paths:
        scores = saved_scores(path)
        threshold = top_fraction_threshold(scores, fraction)
        counts.append((int(np.sum(scores == threshold)), float(np.mean(scores > threshold))))
    return counts


def value_ids(records):
    """One integer per record, equal for records with equal values."""
    return np.unique(records, axis=0, return_inverse=True)[1].ravel()


def copy_shares(ids, labels, seed, protocol, anomaly_ratio):
    """Shares of the run's validation normals, validation anomalies and training records whose values occur among
    its test records."""
    rows = kdd_rows(labels, seed, protocol, validation=True, anomaly_ratio=anomaly_ratio)
    test_values = ids[rows.pool[rows.is_test]]
    normals, anomalies = rows.val[labels[rows.val] == 0], rows.val[labels[rows.val] == 1]
    return {'validation_normals': float(np.isin(ids[normals], test_values).mean()),
            'validation_anomalies': float(np.isin(ids[anomalies], test_values).mean()),
            'training': float(np.isin(ids[rows.train], test_values).mean())}


def overlap_shares(splits, classes, protocol, anomaly_ratio, seeds):
    """Over the classes: the share of the first seed's validation images (and of its validation normals) that are
    test images of the other seeds' splits. Each image is traced by a number of its own (its position in the
    splits taken one after another), which is what the protocol functions then draw instead of pixels."""
    traced, start = {}, 0
    for name, (_, labels) in splits.items():
        traced[name] = (np.arange(start, start + len(labels))[:, None], labels)
        start += len(labels)
    shares = {'validation': [], 'validation_normals': []}
    for c in classes:
        val = image_validation_split(traced, c, protocol, anomaly_ratio, seeds[0])
        tested = np.zeros(len(val.test_x), bool)
        for seed in seeds[1:]:
            tested |= np.isin(val.test_x[:, 0], image_split(traced, c, protocol, anomaly_ratio, seed).test_x[:, 0])
        shares['validation'].append(float(tested.mean()))
        shares['validation_normals'].append(float(tested[val.test_y == 0].mean()))
    return shares


def block_levels(groups, labels, fraction, count):
    """For the ``count`` largest groups of normal-class records (label 0; a group: records of equal values, or of
    one attack type): (group, its size, the F1 of the rule if the group scored above every other record and the
    anomalies came next)."""
    values, sizes = np.unique(groups[labels == 0], return_counts=True)
    order = np.arange(len(labels)) / (10 * len(labels))  # a tie-breaker below 0.1: no two scores equal
    levels = []
    for k in np.argsort(-sizes, kind='stable')[:count]:
        in_group = (groups == values[k]) & (labels == 0)
        # the group first, then the anomalies, then the other records
        scores = np.where(in_group, 2.0, np.where(labels == 1, 1.0, 0.0)) + order
        levels.append((values[k].item(), int(sizes[k]), top_fraction_metrics(scores, labels, fraction)['f1']))
    return levels


def largest_flagged_group(scores, groups, labels, fraction):
    """The rule on ``scores``: the normal-class records it flags, the largest group among them (see
    :func:`block_levels`), how many of them it holds, and the F1 were the group scored below every record."""
    threshold = top_fraction_threshold(scores, fraction)
    wrong = (scores > threshold) & (labels == 0)
    if not wrong.any():
        return {'flagged_normal': 0, 'group': None, 'in_group': 0,
                'f1_without_it': top_fraction_metrics(scores, labels, fraction)['f1']}
    values, counts = np.unique(groups[wrong], return_counts=True)
    largest = values[np.argmax(counts)]
    moved = np.where(groups == largest, scores.min() - 1.0, scores)
    return {'flagged_normal': int(wrong.sum()), 'group': largest.item(), 'in_group': int(counts.max()),
            'f1_without_it': top_fraction_metrics(moved, labels, fraction)['f1']}


def summary(values):
    values = np.asarray(values, dtype=np.float64)
    return {'min': float(values.min()), 'mean': float(values.mean()), 'max': float(values.max())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='check', required=True)
    ties = commands.add_parser('ties', help='records tied at the threshold, per run of saved scores')
    ties.add_argument('folders', nargs='+', help='KDDCUP99 result folders (res_<setting>)')
    ties.add_argument('--AnomalyRatio', type=float, default=0.2, help='the share flagged')
    copies = commands.add_parser('copies', help='validation and training records whose values occur in the test '
                                 'set')
    copies.add_argument('--DataRoot', default='./dataset/')
    copies.add_argument('--Runs', type=int, default=20)
    copies.add_argument('--Seed', type=int, default=1)
    copies.add_argument('--AnomalyRatio', type=float, default=0.2)
    overlap = commands.add_parser('overlap', help="an image data set's validation images that other seeds test on")
    overlap.add_argument('Dataset', help='MNIST, CIFAR10 or a folder name under --DataRoot')
    overlap.add_argument('--DataRoot', default='./dataset/')
    overlap.add_argument('--Protocol', default='auto')
    overlap.add_argument('--Seeds', type=int, nargs='+', default=[1, 2, 3])
    overlap.add_argument('--AnomalyRatio', type=float, default=0.3)
    regimes = commands.add_parser('regimes', help='KDDCUP99: the F1 levels blocks of equal records predict, and '
                                  'what a model flags epoch by epoch (validation data only)')
    regimes.add_argument('experiment', help='a KDDCUP99 experiment (kdd, kdd_ae, ...)')
    regimes.add_argument('--DataRoot', default='./dataset/')
    regimes.add_argument('--LR', type=float, default=1e-3)
    regimes.add_argument('--Epochs', type=int, default=12)
    regimes.add_argument('--Seed', type=int, default=1)
    regimes.add_argument('--Blocks', type=int, default=4, help='predicted levels for this many largest blocks')
    args = parser.parse_args(argv)
    return {'ties': check_ties, 'copies': check_copies, 'overlap': check_overlap,
            'regimes': check_regimes}[args.check](args)


def check_ties(args):
    for folder in args.folders:
        counts = tie_counts(folder, args.AnomalyRatio)
        print(json.dumps({'folder': str(folder), 'runs': len(counts),
                          'tied_at_threshold': summary([tied for tied, _ in counts]),
                          'flagged_share': summary([share for _, share in counts])}))
    return 0


def check_copies(args):
    data = load_kdd(args.DataRoot)
    ids = value_ids(data.x)
    print(json.dumps({'records': len(ids), 'distinct': int(ids.max()) + 1}))
    for protocol in ('dagmm', 'dagmm_reimpl'):
        shares = [copy_shares(ids, data.y, args.Seed + r, protocol, args.AnomalyRatio) for r in range(args.Runs)]
        print(json.dumps({'protocol': protocol, 'runs': args.Runs,
                          **{name: summary([s[name] for s in shares]) for name in shares[0]}}))
    return 0


def check_overlap(args):
    source = dataset_spec(args.Dataset, args.DataRoot).reader(args.DataRoot, download=False)
    protocol = resolve_protocol(args.Protocol, source.splits)
    shares = overlap_shares(source.splits, range(len(source.classes)), protocol, args.AnomalyRatio, args.Seeds)
    print(json.dumps({'dataset': args.Dataset, 'protocol': protocol, 'seeds': args.Seeds,
                      **{name: {'mean': float(np.mean(v)), 'per_class': v} for name, v in shares.items()}}))
    return 0


def check_regimes(args):
    opt = experiment_options(args.experiment, args.DataRoot, args.LR, None, args.Epochs)
    if opt.Dataset != 'KDDCUP99':
        raise InputError(f'regimes checks KDDCUP99 experiments; {args.experiment} trains on {opt.Dataset}')
    unit = validation_units(opt, None, args.Seed)[0]
    fraction = opt.AnomalyRatio or 0.2
    labels = unit.val_labels
    # the validation rows again (the unit holds their values), for the attack types the file names; the file's
    # labels give the 0/1 labels the rows are drawn by, as data/kdd.py encodes them
    names = kdd_record_labels(args.DataRoot)
    attack_types = names[kdd_validation_rows((names == ANOMALY_LABEL).astype(np.int64), args.Seed, fraction)[1]]
    groupings = {'block': value_ids(unit.val.numpy()), 'attack_type': attack_types}
    print(json.dumps({'validation_records': len(labels), 'anomalies': int(labels.sum()), 'predicted': {
        name: [{'group': group, 'size': size, 'f1_if_flagged': round(f1, 4)}
               for group, size, f1 in block_levels(groups, labels, fraction, args.Blocks)]
        for name, groups in groupings.items()}}, default=str), flush=True)

    def report(epoch, model):
        scores = score_samples(model, unit.val, resolve_score_type(opt.ScoreType, opt.ModelName, 'tabular'),
                               is_memory_model(opt.ModelName))
        found = {name: largest_flagged_group(scores, groups, labels, fraction) for name, groups in groupings.items()}
        print(json.dumps({'epoch': epoch, 'f1': round(top_fraction_metrics(scores, labels, fraction)['f1'], 4),
                          'flagged_normal': found['block']['flagged_normal'],
                          **{f'largest_{name}': {k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in group.items() if k != 'flagged_normal'}
                             for name, group in found.items()}}, default=str), flush=True)

    train_validation_unit(opt, unit, args.Seed, report)
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
