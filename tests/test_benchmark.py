"""The benchmark runs both paths on the same clips and reports comparable numbers (no timing is asserted)."""
import json

from utils import benchmark


def test_test_benchmark_scores_both_paths_alike(tmp_path):
    out = tmp_path / 'test.json'
    assert benchmark.main(['test', '--size', '32', '--clips', '3', '--batch', '2', '--MemDim', '20',
                           '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['clips'] == 3 and result['largest_relative_score_difference'] <= 1e-5
    # FLOPs of one 16 x 32 x 32 clip: 1/64 of the 65.4 GFLOP of a 16 x 256 x 256 one
    assert abs(result['gflop_per_clip'] - 65.4 / 64) < 0.05
    assert result['speedup'] == result['our_clips_per_second'] / result['released_clips_per_second']


def test_train_benchmark_counts_forward_and_backward(tmp_path):
    out = tmp_path / 'train.json'
    assert benchmark.main(['train', '--size', '32', '--steps', '1', '--batch', '2', '--MemDim', '20',
                           '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['clips'] == 2 and result['gflop_per_clip'] > 2 * 65.4 / 64  # backward costs about twice forward


def test_oneclass_benchmark_times_the_real_commands_against_the_minimal_loop(tmp_path, monkeypatch):
    from shell import shell_env
    from synthetic import make_kdd, make_mnist
    monkeypatch.setenv('PATH', shell_env()['PATH'])  # the scripts' python is the one running pytest
    make_kdd(tmp_path / 'data', num_rows=300)
    make_mnist(tmp_path / 'data')
    out = tmp_path / 'oneclass.json'
    assert benchmark.main(['oneclass', '--DataRoot', str(tmp_path / 'data'), '--kdd-runs', '1', '--kdd-epochs', '1',
                           '--mnist-class', '2', '--mnist-epochs', '1', '--out', str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row['experiment'] for row in rows] == ['kdd', 'kdd', 'mnist']
    assert 'bash train.sh kdd --Runs 1 --EpochNum 1' in rows[0]['command'] and 'test.sh kdd' in rows[1]['command']
    for row in rows:  # both sides timed; the ratio is theirs
        assert row['command_seconds'] > 0 and row['minimal_seconds'] > 0
        assert row['ratio'] == row['command_seconds'] / row['minimal_seconds']
