"""utils/experiments/protocol_checks.py: tie counts at the KDD threshold and the shares of copied records."""
import json

import numpy as np
import pytest

from data.protocols import kdd_rows
from synthetic import make_kdd
from utils.errors import run_cli
from utils.experiments import protocol_checks


def test_ties_counts_the_records_at_the_threshold_and_the_share_flagged(tmp_path, capsys):
    # ten scores, the 80th percentile falls inside a block of four equal ones: none of them is flagged
    np.savez(tmp_path / 'run0_scores.npz', scores=np.array([1, 2, 3, 4, 5, 6, 7, 7, 7, 7.0]), labels=np.zeros(10))
    np.savez(tmp_path / 'run1_scores.npz', scores=np.arange(10.0), labels=np.zeros(10))
    assert run_cli(protocol_checks.main, ['ties', str(tmp_path)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line['runs'] == 2
    assert line['tied_at_threshold'] == {'min': 0.0, 'mean': 2.0, 'max': 4.0}
    assert line['flagged_share'] == {'min': 0.0, 'mean': 0.1, 'max': 0.2}


def test_ties_names_a_folder_without_scores(tmp_path, capsys):
    assert run_cli(protocol_checks.main, ['ties', str(tmp_path)]) == 2
    assert f'{tmp_path} holds no run<r>_scores.npz files' in capsys.readouterr().err


def test_copy_shares_count_records_whose_values_occur_among_the_test_records():
    y = (np.arange(200) % 5 == 0).astype(int)
    ids = protocol_checks.value_ids(np.stack([np.arange(200) % 50, np.arange(200) % 50 + 1], axis=1))
    assert len(set(ids)) == 50 and np.array_equal(ids[:50], ids[50:100])  # equal rows, equal ids
    # every record a copy of one value
    shares = protocol_checks.copy_shares(np.zeros(200, int), y, 3, 'dagmm', 0.2)
    assert shares == {'validation_normals': 1.0, 'validation_anomalies': 1.0, 'training': 1.0}
    # unique values: no copies at all
    shares = protocol_checks.copy_shares(np.arange(200), y, 3, 'dagmm_reimpl', 0.2)
    assert shares == {'validation_normals': 0.0, 'validation_anomalies': 0.0, 'training': 0.0}
    # one value shared by one training record and one test record only
    rows = kdd_rows(y, 3, 'dagmm', validation=True)
    ids = np.arange(200)
    ids[rows.train[0]] = ids[rows.pool[0]]
    assert protocol_checks.copy_shares(ids, y, 3, 'dagmm', 0.2)['training'] == 1 / len(rows.train)


def test_copies_runs_on_a_data_folder(tmp_path, capsys):
    make_kdd(tmp_path / 'data', num_rows=400)
    assert run_cli(protocol_checks.main, ['copies', '--DataRoot', str(tmp_path / 'data'), '--Runs', '2']) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]['records'] == 400 and [line['protocol'] for line in lines[1:]] == ['dagmm', 'dagmm_reimpl']
    assert all(0 <= line['training']['mean'] <= 1 for line in lines[1:])


def test_overlap_is_what_other_seeds_test_on_and_none_across_splits():
    from data.protocols import image_split, image_validation_split
    y = np.repeat(np.arange(4), 30)
    pooled = {'test': (np.zeros((len(y), 1)), y)}
    shares = protocol_checks.overlap_shares(pooled, range(4), 'pooled', 0.3, [1, 2, 3])
    traced = {'test': (np.arange(len(y))[:, None], y)}
    for c in range(4):  # the same, counted here with sets
        val = image_validation_split(traced, c, 'pooled', 0.3, 1)
        tested = set(image_split(traced, c, 'pooled', 0.3, 2).test_x[:, 0]) | set(
            image_split(traced, c, 'pooled', 0.3, 3).test_x[:, 0])
        assert shares['validation'][c] == np.mean([i in tested for i in val.test_x[:, 0]]) > 0
    standard = {'train': (np.zeros((len(y), 1)), y), 'test': (np.zeros((len(y), 1)), y)}
    assert protocol_checks.overlap_shares(standard, range(4), 'standard', 0.3, [1, 2])['validation'] == [0.0] * 4


def test_block_levels_are_the_f1_of_one_block_flagged_whole():
    # 20 records, 4 anomalies; the rule flags 4. Normal-class blocks of 3 (id 7) and 2 (id 8), the rest singletons.
    labels = np.array([1] * 4 + [0] * 16)
    ids = np.array([0, 1, 2, 3, 7, 7, 7, 8, 8, *range(10, 21)])
    levels = protocol_checks.block_levels(ids, labels, 0.2, count=2)
    # block of 3 flagged: 1 anomaly among the 4 flagged -> P = R = 1/4; block of 2: P = R = 2/4
    assert [(group, size) for group, size, _ in levels] == [(7, 3), (8, 2)]
    assert [f1 for *_, f1 in levels] == pytest.approx([0.25, 0.5])
    types = np.array(['normal.'] * 4 + ['smurf.'] * 3 + ['satan.'] * 13)  # groups by attack type alike
    assert [(group, size) for group, size, _ in protocol_checks.block_levels(types, labels, 0.2, 1)] == \
        [('satan.', 13)]


def test_flagged_blocks_names_the_largest_block_of_wrongly_flagged_records():
    labels = np.array([1] * 4 + [0] * 16)
    ids = np.array([0, 1, 2, 3, 7, 7, 8, *range(10, 23)])
    scores = np.array([9, 9, 1, 1, 8, 8, 8.5, *[0] * 13])
    # the 75th percentile is 2.75: flagged are the anomalies at 9, the block of two at 8 and the single record at 8.5
    found = protocol_checks.largest_flagged_group(scores, ids, labels, 0.25)
    assert (found['flagged_normal'], found['group'], found['in_group']) == (3, 7, 2)
    # the block of two below every record: the threshold falls to 0.25 and the rule flags all four anomalies and
    # the single record
    assert found['f1_without_it'] == pytest.approx(2 * (4 / 5 * 1) / (4 / 5 + 1))


def test_regimes_runs_on_a_data_folder_from_validation_data_only(tmp_path, capsys):
    make_kdd(tmp_path / 'data', num_rows=400)
    assert run_cli(protocol_checks.main, ['regimes', 'kdd', '--DataRoot', str(tmp_path / 'data'), '--Epochs', '2',
                                          '--Blocks', '2']) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{')]
    assert lines[0]['anomalies'] > 0 and [len(lines[0]['predicted'][g]) for g in ('block', 'attack_type')] == [2, 2]
    assert all(group['group'].endswith('.') for group in lines[0]['predicted']['attack_type'])  # names, as filed
    assert [line['epoch'] for line in lines[1:]] == [1, 2]
    for line in lines[1:]:
        assert 0 <= line['f1'] <= 1
        assert line['largest_block']['in_group'] <= line['largest_attack_type']['in_group'] <= line['flagged_normal']
    assert run_cli(protocol_checks.main, ['regimes', 'mnist', '--DataRoot', str(tmp_path / 'data')]) == 2
    assert 'regimes checks KDDCUP99 experiments; mnist trains on MNIST' in capsys.readouterr().err
