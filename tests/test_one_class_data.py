import numpy as np
import pytest

from data.image_sets import load_cifar10, load_mnist, read_idx
import csv
import gzip

import data.kdd
from data.kdd import encode_columns, assemble, load_kdd
from data.protocols import image_split, kdd_split, resolve_protocol
from data.readers import DataFormatError
from synthetic import SERVICES, make_image_folder, make_kdd, make_mnist, write_idx
from utils.errors import InputError


@pytest.mark.parametrize('name', ['a.idx', 'a.idx.gz'])
def test_idx_round_trip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    assert np.array_equal(read_idx(tmp_path / name), array)


def test_idx_errors(tmp_path):
    (tmp_path / 'bad').write_bytes(b'\x00\x00\x0d\x01\x00\x00\x00\x02ab')
    with pytest.raises(DataFormatError, match='unsigned-byte IDX'):
        read_idx(tmp_path / 'bad')
    (tmp_path / 'short').write_bytes(b'\x00\x00\x08\x01\x00\x00\x00\x05ab')
    with pytest.raises(DataFormatError, match='holds 2 values, its header promises 5'):
        read_idx(tmp_path / 'short')


@pytest.mark.parametrize('folder, compressed', [('MNIST/raw', True), ('mnist', False)])
def test_mnist_is_found_in_either_folder(tmp_path, folder, compressed):
    make_mnist(tmp_path, folder=folder, compressed=compressed)
    data = load_mnist(tmp_path)
    assert data.splits['train'][0].shape == (120, 1, 28, 28) and data.splits['test'][0].shape == (60, 1, 28, 28)
    assert np.bincount(data.splits['train'][1]).tolist() == [12] * 10
    assert data.image_shape == (1, 28, 28)


def test_missing_mnist_suggests_download(tmp_path):
    with pytest.raises(DataFormatError, match='--Download True'):
        load_mnist(tmp_path)


def test_cifar_png_test_split_alone(tmp_path):
    make_image_folder(tmp_path / 'cifar10' / 'test')
    data = load_cifar10(tmp_path)
    assert list(data.splits) == ['test'] and data.classes == ['cat', 'dog', 'ship']
    assert data.splits['test'][0].shape == (27, 3, 32, 32)
    assert resolve_protocol('auto', data.splits) == 'pooled'
    with pytest.raises(InputError, match='--Protocol pooled'):
        resolve_protocol('standard', data.splits)


def reference_kdd_encoding(path):
    """DAGMM's preparation written out row by row with the csv module (no code shared with data/kdd.py)."""
    with gzip.open(path, 'rt') as f:
        rows = [row for row in csv.reader(f) if row]
    columns, features = list(zip(*rows)), []
    for i, column in enumerate(columns[:-1]):
        if i in (1, 2, 3):
            categories = sorted(set(column))
            features += [[float(v == c) for v in column] for c in categories]
        else:
            values = [float(v) for v in column]
            low, span = min(values), max(values) - min(values)
            features.append([(v - low) / span if span else 0.0 for v in values])
    return np.array(features, dtype=np.float64).T, np.array([r[-1] == 'normal.' for r in rows], dtype=np.int64)


def test_kdd_encoding_equals_a_row_by_row_reference(tmp_path):
    path = make_kdd(tmp_path, num_rows=300)
    data = load_kdd(tmp_path)
    x, y = reference_kdd_encoding(path)
    assert data.x.shape == (300, 38 + 3 + len(SERVICES) + 3)  # numeric + protocol + service + flag one-hots
    assert data.x.dtype == np.float32 and np.array_equal(data.y, y)
    np.testing.assert_allclose(data.x, x, rtol=1e-6, atol=1e-7)
    assert data.feature_names[:5] == ['c0', 'c1=icmp', 'c1=tcp', 'c1=udp', 'c2=' + sorted(SERVICES)[0]]


def test_kdd_constant_column_and_bad_rows(tmp_path):
    numeric = np.ones((2, 38))
    symbolic = np.array([['tcp', 'http', 'SF', 'normal.'], ['udp', 'http', 'SF', 'smurf.']])
    data = assemble(encode_columns(numeric, symbolic), 'two rows')
    assert np.all(data.x[:, data.feature_names.index('c0')] == 0) and data.y.tolist() == [1, 0]
    (tmp_path / 'KDDCUP99').mkdir()
    (tmp_path / 'KDDCUP99' / 'kddcup.data_10_percent').write_text('1,2,3\n')
    with pytest.raises(DataFormatError, match='record 1 does not have 42'):
        load_kdd(tmp_path)
    line = ','.join(['0', 'tcp', 'http', 'SF'] + ['1'] * 37 + ['normal.'])
    (tmp_path / 'KDDCUP99' / 'kddcup.data_10_percent').write_text(f'{line}\n{line}\n{line.replace("1,", "x,", 1)}\n')
    with pytest.raises(DataFormatError, match='numeric column holds text'):
        load_kdd(tmp_path)
    with pytest.raises(DataFormatError, match='is in none of'):
        load_kdd(tmp_path / 'elsewhere')


def test_kdd_cache_is_read_back_and_keyed_on_the_file_content(tmp_path, monkeypatch):
    monkeypatch.setenv('MEMAE_CACHE', str(tmp_path / 'cache'))
    make_kdd(tmp_path / 'a', num_rows=120, seed=0)
    first = load_kdd(tmp_path / 'a')
    assert len(list((tmp_path / 'cache').glob('kdd-*.npz'))) == 1
    parses = []
    real_split = data.kdd.split_columns
    monkeypatch.setattr(data.kdd, 'split_columns', lambda *a: parses.append(1) or real_split(*a))
    again = load_kdd(tmp_path / 'a')
    assert parses == [] and np.array_equal(again.x, first.x) and again.feature_names == first.feature_names
    make_kdd(tmp_path / 'b', num_rows=120, seed=1)  # another file: another cache entry, its own numbers
    other = load_kdd(tmp_path / 'b')
    assert parses == [1] and not np.array_equal(other.x, first.x)
    cached = data.kdd.cache_file(data.kdd.find_kdd_file(tmp_path / 'a'))
    cached.write_bytes(cached.read_bytes()[:100])  # a truncated cache file is parsed again and rewritten
    assert np.array_equal(load_kdd(tmp_path / 'a').x, first.x) and parses == [1, 1]
    assert np.array_equal(load_kdd(tmp_path / 'a').x, first.x) and parses == [1, 1]


def test_kdd_loads_when_the_cache_folder_cannot_be_written(tmp_path, monkeypatch):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    monkeypatch.setenv('MEMAE_CACHE', str(blocker / 'cache'))  # below a file: cannot be created
    make_kdd(tmp_path, num_rows=60)
    assert load_kdd(tmp_path).x.shape[0] == 60


def labelled(n_per_class, classes=10):
    y = np.repeat(np.arange(classes), n_per_class)
    return np.arange(len(y))[:, None], y  # each sample is its own index, so splits can be traced


def test_standard_image_protocol():
    splits = {'train': labelled(20), 'test': labelled(7)}
    split = image_split(splits, 3, 'standard', 0.3, seed=5)
    assert np.all(splits['train'][1][split.train_x[:, 0]] == 3) and len(split.train_x) == 20
    test_classes = splits['test'][1][split.test_x[:, 0]]
    assert np.array_equal(split.test_y, (test_classes != 3).astype(int))
    assert (test_classes == 3).sum() == 7 and split.test_y.sum() == 3  # round(7 * 0.3 / 0.7) = 3
    assert len(set(split.test_x[:, 0])) == len(split.test_x)  # anomalies drawn without replacement
    again = image_split(splits, 3, 'standard', 0.3, seed=5)
    other = image_split(splits, 3, 'standard', 0.3, seed=6)
    assert np.array_equal(again.test_x, split.test_x) and not np.array_equal(other.test_x, split.test_x)


def test_pooled_image_protocol():
    splits = {'test': labelled(30)}
    split = image_split(splits, 0, 'pooled', 0.3, seed=1)
    assert len(split.train_x) == 20 and (split.test_y == 0).sum() == 10 and split.test_y.sum() == 4
    assert not set(split.train_x[:, 0]) & set(split.test_x[:, 0])
    assert np.all(splits['test'][1][split.train_x[:, 0]] == 0)


def test_image_protocol_choice():
    both, test_only, train_only = {'train': 1, 'test': 2}, {'test': 2}, {'train': 1}
    assert [resolve_protocol('auto', s) for s in (both, test_only, train_only)] == ['standard', 'pooled', 'pooled']
    assert resolve_protocol('pooled', both) == 'pooled' and resolve_protocol('standard', both) == 'standard'
    with pytest.raises(InputError, match='needs a training and a test split; this data set has only test: use '
                                         '--Protocol pooled'):
        resolve_protocol('standard', test_only)
    with pytest.raises(InputError, match='--Protocol dagmm is no image protocol; valid: auto, standard, pooled'):
        resolve_protocol('dagmm', both)


def test_protocol_edges_fail_with_the_numbers():
    two_classes = {'train': labelled(5, classes=2), 'test': labelled(7, classes=2)}
    for ratio in (0, 1):
        with pytest.raises(InputError, match=f'--AnomalyRatio must lie strictly between 0 and 1, got {ratio}'):
            image_split(two_classes, 0, 'standard', ratio, seed=1)
    # 7 normal test images at ratio 0.5 need all 7 images of the other class, each once
    exact = image_split(two_classes, 0, 'standard', 0.5, seed=1)
    assert sorted(exact.test_x[exact.test_y == 1, 0]) == list(range(7, 14))
    assert exact.test_y.dtype == np.int64 and exact.description.startswith('standard: class-c training images')
    with pytest.raises(InputError, match='10 anomalies are needed for --AnomalyRatio 0.6 but only 7 samples'):
        image_split(two_classes, 0, 'standard', 0.6, seed=1)
    empty = {'train': (np.arange(4)[:, None], np.array([0, 0, 1, 1])), 'test': labelled(3, classes=3)}
    with pytest.raises(InputError, match='--NormalClass 2 has no training images'):
        image_split(empty, 2, 'standard', 0.3, seed=1)
    assert image_split({'test': labelled(30)}, 0, 'pooled', 0.3, seed=1).description.startswith('pooled: 2/3')
    assert kdd_split(np.zeros((10, 1)), np.zeros(10, int), seed=1).description.startswith('dagmm: random 50/50')


def test_validation_splits_are_fixed_by_the_seed():
    from data.protocols import image_validation_split, kdd_validation_rows
    splits = {'train': labelled(40), 'test': labelled(10)}
    first, again = (image_validation_split(splits, 1, 'standard', 0.3, seed=4) for _ in range(2))
    assert np.array_equal(first.train_x, again.train_x) and np.array_equal(first.test_x, again.test_x)
    y = (np.random.default_rng(0).random(400) < 0.3).astype(int)
    assert all(np.array_equal(a, b) for a, b in zip(kdd_validation_rows(y, 2), kdd_validation_rows(y, 2)))
    # Drawn without replacement, even when the draw takes most of what there is: 32 of 40 other-class images, and
    # about 53 of the 100 anomaly records of a training half
    test_y = np.array([0, 0] + [1] * 10)
    few = image_validation_split({'train': labelled(40, classes=2), 'test': (np.arange(12)[:, None], test_y)}, 0,
                                 'standard', 0.8, seed=4)
    assert few.test_y.sum() == 32 and len(set(few.test_x[:, 0])) == len(few.test_x)
    assert few.description.startswith('validation from the training images (standard: ')
    y = (np.random.default_rng(1).random(1000) < 0.2).astype(int)
    train, val = kdd_validation_rows(y, 3, anomaly_ratio=0.4)
    assert y[val].sum() > 40 and len(set(val)) == len(val) and not set(val) & set(train)


def test_a_validation_set_without_both_kinds_of_sample_is_refused_before_training():
    """Its AUC or F1 would be undefined, and the epoch it chose arbitrary (a curve of NaN)."""
    from data.protocols import image_validation_split, kdd_validation_rows
    splits = {'train': labelled(5), 'test': labelled(5)}  # 5 images a class: 1 held out, 0 anomalies wanted
    with pytest.raises(InputError, match=r'the validation set of class 1 \(seed 4\) would hold 1 normal and 0 '
                                         r'anomalous samples, from 5 training images of the class'):
        image_validation_split(splits, 1, 'standard', 0.3, seed=4)
    y = np.array([0] * 200 + [1] * 6)
    with pytest.raises(InputError, match=r'the KDDCUP99 run of seed 2 needs \d+ "normal." records of its training '
                                         r'half, which holds [0-6]: too few records'):
        kdd_validation_rows(y, 2)


def test_kdd_protocol():
    x = np.arange(100)[:, None]
    y = (np.arange(100) % 5 == 0).astype(int)
    split = kdd_split(x, y, seed=3)
    assert len(split.test_x) == 50 and np.all(y[split.train_x[:, 0]] == 0)
    assert not set(split.train_x[:, 0]) & set(split.test_x[:, 0])
    assert np.array_equal(split.test_y, y[split.test_x[:, 0]])
    assert np.array_equal(kdd_split(x, y, seed=3).test_x, split.test_x)


def test_kdd_validation_uses_only_the_training_half():
    from data.protocols import kdd_halves, kdd_validation_rows
    y = (np.random.default_rng(0).random(2000) < 0.3).astype(int)
    train, val = kdd_validation_rows(y, seed=4)
    train_half, test_half = kdd_halves(2000, 4)
    assert set(train) | set(val) <= set(train_half)
    assert not set(train) & set(val) and len(set(val)) == len(val)
    assert np.all(y[train] == 0)
    assert y[val].mean() == pytest.approx(0.2, abs=0.01)
    assert not set(val) & set(test_half)
    # 20 % of the training half's attack records are held out
    attacks = int((y[train_half] == 0).sum())
    assert len(train) == attacks - int(attacks * 0.2)


def test_kdd_protocols_train_on_the_same_records_and_test_where_documented():
    from data.protocols import kdd_halves, kdd_rows
    y = (np.random.default_rng(1).random(1000) < 0.25).astype(int)
    first, second = kdd_halves(1000, 7)
    text, reimpl = kdd_rows(y, 7, 'dagmm'), kdd_rows(y, 7, 'dagmm_reimpl')
    assert np.array_equal(text.train, reimpl.train) and set(text.train) == set(first[y[first] == 0])
    # dagmm: the second half is both the test set and the threshold pool
    assert np.array_equal(text.pool, second) and text.is_test.all() and text.is_test.dtype == bool
    # dagmm_reimpl: test = the attack records outside training plus every anomaly record; pool = training + test
    test = reimpl.pool[reimpl.is_test]
    assert set(test) == set(np.flatnonzero(y == 1)) | set(second[y[second] == 0])
    assert set(reimpl.pool[~reimpl.is_test]) == set(reimpl.train) and not set(test) & set(reimpl.train)
    assert len(set(reimpl.pool)) == len(reimpl.pool) == 1000  # every record once


@pytest.mark.parametrize('protocol', ['dagmm', 'dagmm_reimpl'])
def test_no_validation_record_of_a_run_is_one_of_its_test_records(protocol):
    """--EarlyStopping: every run's validation set comes from its own training half, and none of its records is
    counted as a test record of that run; the threshold pool is the protocol's as without validation."""
    from data.protocols import kdd_halves, kdd_rows
    y = (np.random.default_rng(5).random(3000) < 0.2).astype(int)
    for seed in range(1, 21):
        plain, rows = kdd_rows(y, seed, protocol), kdd_rows(y, seed, protocol, validation=True)
        first, _ = kdd_halves(len(y), seed)
        test = rows.pool[rows.is_test]
        assert len(rows.val) and not set(rows.val) & set(test)
        assert set(rows.val) <= set(first) and not set(rows.val) & set(rows.train)
        assert set(rows.train) | set(rows.val[y[rows.val] == 0]) == set(plain.train)
        assert np.array_equal(rows.pool, plain.pool)  # same pool, same threshold rule
        # the only records no longer counted are the validation anomalies (dagmm: none of them was a test record)
        dropped = set(plain.pool[plain.is_test]) - set(test)
        assert dropped == (set(rows.val[y[rows.val] == 1]) if protocol == 'dagmm_reimpl' else set())
        assert set(test) <= set(plain.pool[plain.is_test])


def test_kdd_protocol_names():
    from data.protocols import KDD_PROTOCOLS, resolve_kdd_protocol
    assert KDD_PROTOCOLS == ('dagmm', 'dagmm_reimpl')
    assert [resolve_kdd_protocol(p) for p in ('auto', 'dagmm', 'dagmm_reimpl')] == ['dagmm', 'dagmm', 'dagmm_reimpl']
    with pytest.raises(InputError, match='--Protocol pooled is no KDDCUP99 protocol; valid: auto, dagmm, dagmm_reimpl'):
        resolve_kdd_protocol('pooled')


def test_image_validation_never_touches_the_unit_test_set():
    from data.protocols import image_split, image_validation_split
    for protocol, splits in (('standard', {'train': labelled(40), 'test': labelled(10)}),
                             ('pooled', {'test': labelled(30)})):
        for normal_class in (0, 4):
            split = image_split(splits, normal_class, protocol, 0.3, seed=2)
            val = image_validation_split(splits, normal_class, protocol, 0.3, seed=2)
            # the validation split is drawn from the unit's training images and, for anomalies, from images the
            # test set does not hold (the samples are their own indices into the split they come from)
            train_source = 'train' if protocol == 'standard' else 'test'
            source_y = splits[train_source][1]
            fit, held = val.train_x[:, 0], val.test_x[:, 0]
            assert set(fit) | set(held[val.test_y == 0]) == set(split.train_x[:, 0])
            assert not set(fit) & set(held)
            assert len(held[val.test_y == 0]) == round(len(split.train_x) * 0.2)
            assert np.all(source_y[held[val.test_y == 1]] != normal_class)
            assert val.test_y.mean() == pytest.approx(0.3, abs=0.05)
            if protocol == 'pooled':
                assert not set(held) & set(split.test_x[:, 0])
    # few anomaly candidates (30, of which 9 go to each test set): a validation draw that ignored the test set's
    # anomalies would hit one of them for most seeds
    y = np.concatenate([np.zeros(60, int), np.repeat([1, 2, 3], 10)])
    splits = {'test': (np.arange(len(y))[:, None], y)}
    for seed in range(10):
        test = image_split(splits, 0, 'pooled', 0.3, seed).test_x[:, 0]
        val = image_validation_split(splits, 0, 'pooled', 0.3, seed).test_x[:, 0]
        assert not set(val) & set(test)
