"""The benchmark runs every path on the same clips and reports comparable numbers (no timing is asserted)."""
import json

from utils import benchmark


def test_test_benchmark_scores_every_path_alike(tmp_path):
    out = tmp_path / 'test.json'
    assert benchmark.main(['test', '--size', '32', '--clips', '6', '--batch', '2', '--window', '6', '--MemDim', '20',
                           '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    released, per_clip, window = result['paths']
    assert result['clips'] == 6 and [p['path'] for p in result['paths']][1:] == [
        'ours, per clip (--ClipWindow 0)', 'ours, --ClipWindow 6 (default 16)']
    assert all(p['largest_relative_score_difference'] <= 1e-5 for p in result['paths'])
    # FLOPs of one 16 x 32 x 32 clip: 1/64 of the 65.4 GFLOP of a 16 x 256 x 256 one
    assert abs(released['gflop_per_clip'] - 65.4 / 64) < 0.05 and abs(per_clip['gflop_per_clip'] - 65.4 / 64) < 0.05
    # a window of 6 clips has 21 frames: per clip 21 / 6 positions of the first layer (of 16; 1.36 GFLOP per 256 x
    # 256 clip), 21 / 6 + 2 / 3 of the second (of 8; 21.7 GFLOP) and of the third (of 4; 7.25 GFLOP): 54.2 GFLOP
    assert abs(window['gflop_per_clip'] / per_clip['gflop_per_clip'] - 54.2 / 65.4) < 0.01
    assert window['speedup'] == window['clips_per_second'] / released['clips_per_second']


def test_windows_check_compares_both_paths_on_every_test_video(tmp_path):
    out = tmp_path / 'windows.json'
    assert benchmark.main(['windows', '--size', '32', '--clips', '2', '--MemDim', '20', '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    assert [row['video'] for row in result['videos']] == ['Test001'] and result['videos'][0]['clips'] == 4
    assert 0 < result['largest_relative_score_difference'] <= 1e-5  # float rounding, not a copy of one path


def test_train_benchmark_counts_forward_and_backward(tmp_path):
    out = tmp_path / 'train.json'
    assert benchmark.main(['train', '--size', '32', '--steps', '1', '--batch', '2', '--MemDim', '20',
                           '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['clips'] == 2 and [p['path'] for p in result['paths']] == ['released loading', 'ours (0 workers)']
    assert result['paths'][1]['gflop_per_clip'] > 2 * 65.4 / 64  # backward costs about twice forward


def test_oneclass_benchmark_times_the_commands_against_the_minimal_loop(tmp_path, monkeypatch):
    """The commands are recorded, not run (running them is what tests/test_scripts.py and the sweep tests do): the
    wiring is checked here, their flags parsed as the scripts would, and the minimal loops really run."""
    import utils.experiments.oneclass_benchmark as oneclass
    from options import TrainOptions
    from synthetic import make_kdd, make_mnist
    from utils.experiments.settings import experiment
    make_kdd(tmp_path / 'data', num_rows=300)
    make_mnist(tmp_path / 'data')
    commands = []

    def record(command, cwd, env=None, **kwargs):
        assert cwd == oneclass.REPO
        commands.append((command, env))
        return 0
    monkeypatch.setattr(oneclass, 'run_child', record)
    out = tmp_path / 'oneclass.json'
    assert benchmark.main(['oneclass', '--DataRoot', str(tmp_path / 'data'), '--kdd-runs', '1', '--kdd-epochs', '1',
                           '--mnist-class', '2', '--mnist-epochs', '1', '--out', str(out)]) == 0
    assert commands[0][0][:2] == ['python', '-c']  # the start-up time of the scripts' imports
    run = [command for command, _ in commands[1:]]
    assert run == [['bash', 'train.sh', 'kdd', '--Runs', '1', '--EpochNum', '1'],
                   ['bash', 'test.sh', 'kdd', '--Runs', '1'],
                   ['bash', 'train.sh', 'mnist', '--NormalClass', '2', '--EpochNum', '1']]
    train_env, test_env = commands[1][1], commands[2][1]
    assert train_env['MODEL_ROOT'] == test_env['MODEL_ROOT'] and train_env['DATA_ROOT'] == str(tmp_path / 'data')
    for command in run:
        chosen = experiment(command[2])
        TrainOptions().parse([*chosen.flags, *chosen.train_flags, *command[3:]], is_print=False)
    rows = json.loads(out.read_text())
    assert [row['experiment'] for row in rows] == ['kdd', 'kdd', 'mnist']
    assert 'bash train.sh kdd --Runs 1 --EpochNum 1' in rows[0]['command'] and 'test.sh kdd' in rows[1]['command']
    for row in rows:  # both sides timed; the ratio is theirs
        assert row['command_seconds'] > 0 and row['minimal_seconds'] > 0
        assert row['ratio'] == row['command_seconds'] / row['minimal_seconds']
        assert row['minimal_over_floor'] == row['minimal_seconds'] / row['floor_seconds']


def test_lockstep_benchmark_times_both_paths_of_both_commands_at_each_thread_count(tmp_path, monkeypatch):
    """The commands are recorded, not run: each of kdd and mnist with --Lockstep False then True, at 2 and 1
    threads (OMP_NUM_THREADS), idle and beside a busy process; its floor counts every unit's training samples."""
    import utils.experiments.oneclass_benchmark as oneclass
    from synthetic import make_kdd, make_mnist
    make_kdd(tmp_path / 'data', num_rows=300)
    make_mnist(tmp_path / 'data')
    commands, busy = [], []

    def record(command, cwd, env=None, **kwargs):
        commands.append((command, env['OMP_NUM_THREADS']))
        return 0
    monkeypatch.setattr(oneclass, 'run_child', record)
    real_busy = oneclass.busy_core

    def spy(on):
        busy.append(on)
        return real_busy(False)  # no real competitor in a test
    monkeypatch.setattr(oneclass, 'busy_core', spy)
    out = tmp_path / 'lockstep.json'
    assert benchmark.main(['lockstep', '--DataRoot', str(tmp_path / 'data'), '--kdd-runs', '2', '--kdd-epochs', '1',
                           '--mnist-epochs', '1', '--out', str(out)]) == 0
    assert busy == [False, False, True, True]
    expected = [(['bash', 'train.sh', name, *flags, '--IsTbLog', 'False', '--UseCUDA', 'False', '--Lockstep', lockstep],
                 threads) for threads in ('2', '1', '2', '1')
                for name, flags in (('kdd', ['--Runs', '2', '--EpochNum', '1']), ('mnist', ['--EpochNum', '1']))
                for lockstep in ('False', 'True')]
    assert commands == expected
    rows = json.loads(out.read_text())
    assert [(row['threads'], row['busy_process']) for row in rows] == [(2, False)] * 2 + [(1, False)] * 2 + [
        (2, True)] * 2 + [(1, True)] * 2
    _, trained, validated, tested = oneclass.lockstep_work(tmp_path / 'data', 'mnist', 2)
    assert trained == 10 * 10 and validated > 10 * 2 and tested == 10 * (6 + oneclass_anomalies(6))
    for row in rows:
        assert row['ratio'] == row['one_at_a_time_seconds'] / row['lockstep_seconds']
        assert row['lockstep_over_floor'] == row['lockstep_seconds'] / row['floor_seconds'] > 0


def oneclass_anomalies(normals, ratio=0.3):
    """Test anomalies drawn beside ``normals`` normal test images so that they make ``ratio`` of the test set."""
    return round(normals * ratio / (1 - ratio))


def test_the_flop_floor_counts_forward_and_backward_of_every_layer():
    """Per sample, an MLP's forward pass costs 2 x (its weights) FLOPs in matrix products and the backward pass
    twice that (gradients of the inputs and of the weights; the first layer's input gradient is not needed);
    the floor divides the count by the rate."""
    import torch
    from utils.experiments import oneclass_benchmark as oneclass

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = torch.nn.Linear(6, 4), torch.nn.Linear(4, 6)

        def forward(self, x):
            return {'output': self.second(torch.relu(self.first(x)))}

    step, forward = oneclass.flops_per_sample(Net(), torch.rand(8, 6))
    assert forward == 2 * (6 * 4 + 4 * 6)
    assert step == forward + 2 * 4 * 6 * 2 + 2 * 6 * 4  # second: both gradients; first: its weights' only
    assert oneclass.floor_seconds((step, forward), 10, 5, rate=1e3) == (10 * step + 5 * forward) / 1e3
