"""--LRGrid and --ShrinkThresGrid (utils/one_class.py): every unit trains once per candidate setting, in lockstep,
and keeps the candidate whose validation curve, smoothed as --EarlyStopping smooths it, is best (the first of
equals); the shrink threshold it chose is written beside its weights, and testing builds the unit's model with it.
Each candidate inside the grid is checked against a run of that setting alone."""
import json

import numpy as np
import pytest
import torch

import script_testing
import script_training
from one_sentence import expect_one_sentence
from synthetic import make_kdd, make_mnist
from test_early_stopping import scripted_stop, smoothed_argmax
from test_lockstep import ADAM_PARTING
from utils.errors import run_cli
from utils.one_class import Candidate, choose_candidate
from utils.progress import EpochClock

KDD = ['--Dataset', 'KDDCUP99', '--Runs', '2', '--EpochNum', '4', '--BatchSize', '64', '--MemDim', '10',
       '--ShrinkThres', '0.1', '--UseCUDA', 'False', '--IsTbLog', 'False', '--EarlyStopping', 'True']
MNIST = ['--Dataset', 'MNIST', '--ModelSetting', 'Conv2DSpar', '--MemDim', '10', '--ShrinkThres', '0.1',
         '--ImageCodeChannels', '4', '--NormalClass', '3', '--EpochNum', '4', '--BatchSize', '4',
         '--EarlyStopping', 'True', '--UseCUDA', 'False', '--IsTbLog', 'False']
LRS, SHRINKS = ('1e-3', '1e-2'), ('0.5', '0.1')  # lambda 0.5 of N = 10 slots zeroes a fresh memory
GRID = ['--LRGrid', *LRS, '--ShrinkThresGrid', *SHRINKS]


def test_a_unit_keeps_the_candidate_with_the_best_smoothed_curve_and_the_first_of_equals():
    curves = [[0.5, 0.9, 0.5, 0.5, 0.5],   # a spike: its smoothed best is low
              [0.6, 0.7, 0.8, 0.8, 0.7],   # a plateau: the best
              [0.6, 0.7, 0.8, 0.8, 0.7]]   # equal to the plateau: not chosen, it comes later
    stops = []
    for curve in curves:
        stop = scripted_stop(curve)
        stop.curve = list(curve)
        stops.append(stop)
    best = [np.mean(c[max(0, e - 3):e + 2]) for c in curves for e in [smoothed_argmax(c)]]
    assert best[1] == best[2] > best[0]
    assert choose_candidate([Candidate(1e-3)] * 3, stops) == 1


def train(tmp_path, name, base, *flags):
    out = tmp_path / name
    assert run_cli(script_training.main, [*base, '--DataRoot', str(tmp_path / 'data'), '--ModelRoot',
                                          str(out / 'models'), '--OutRoot', str(out), *flags]) == 0
    return {path.stem: json.loads(path.read_text()) for path in out.rglob('res_*/*.json')
            if path.stem.startswith(('run', 'class'))}


def check_grid_against_runs_alone(tmp_path, base):
    """Train ``base`` with the grid and with each candidate alone (in lockstep too, so that only the grid
    differs); returns the grid's unit results."""
    grid = train(tmp_path, 'grid', base, *GRID)
    alone = {(lr, shrink): train(tmp_path, f'alone_{lr}_{shrink}', base, '--LR', lr, '--ShrinkThres', shrink,
                                 '--Lockstep', 'True')
             for shrink in SHRINKS for lr in LRS}
    for unit, result in grid.items():
        choice = result['choice']
        # the candidates in the grids' order, each trained as it would be alone
        assert [(c['lr'], c['shrink_thres']) for c in choice['candidates']] == [
            (float(lr), float(shrink)) for shrink in SHRINKS for lr in LRS]
        for entry, (setting, runs) in zip(choice['candidates'], alone.items()):
            own = runs[unit]['validation']
            assert entry['chosen_epoch'] == own['chosen_epoch'], setting
            assert entry['smoothed'] == pytest.approx(own['smoothed'], abs=1e-6), setting
        # the chosen candidate: the first whose smoothed validation value is the largest
        values = [runs[unit]['validation']['smoothed'] for runs in alone.values()]
        first_best = list(alone)[int(np.argmax(values))]
        assert (choice['lr'], choice['shrink_thres']) == tuple(map(float, first_best))
        chosen_alone = alone[first_best][unit]
        assert result['metrics'] == pytest.approx(chosen_alone['metrics'], abs=1e-4)
        assert result['validation']['curve'] == pytest.approx(chosen_alone['validation']['curve'], abs=1e-6)
        # the weights part only by rounding, which Adam amplifies to at most two steps of the learning rate per
        # step where a gradient is near 0 (tests/test_lockstep.py)
        steps = choice['chosen_epoch'] * -(-result['train_samples'] // int(base[base.index('--BatchSize') + 1]))
        weights = torch.load(result['weights'])
        for key, value in torch.load(chosen_alone['weights']).items():
            assert torch.allclose(weights[key], value, rtol=0, atol=ADAM_PARTING * steps * choice['lr']), key
    return grid


def test_kdd_runs_choose_from_the_grid_as_the_settings_alone_would(tmp_path):
    make_kdd(tmp_path / 'data', num_rows=800)
    grid = check_grid_against_runs_alone(tmp_path, KDD)
    models = tmp_path / 'grid' / 'models'
    assert not list(models.rglob('*_resume.pt'))  # the candidates' training states go when the unit is done
    choices = sorted(models.rglob('*_choice.json'))
    assert [path.name.rsplit('_', 2)[-2] for path in choices] == ['Run0', 'Run1']
    assert json.loads(choices[0].read_text()) == grid['run0']['choice']


def test_image_units_choose_from_the_grid_as_the_settings_alone_would(tmp_path):
    make_mnist(tmp_path / 'data', per_class_train=20, per_class_test=4)
    grid = check_grid_against_runs_alone(tmp_path, MNIST)
    assert list(grid) == ['class3_run0']
    choice = grid['class3_run0']['choice']
    assert choice['candidates'].index({key: value for key, value in choice.items() if key != 'candidates'}) > 0


def test_testing_builds_each_unit_with_its_chosen_shrink_threshold(tmp_path, capsys):
    make_kdd(tmp_path / 'data', num_rows=800)
    trained = train(tmp_path, 'grid', KDD, '--ShrinkThresGrid', '0.05', '0.5', '0.1')
    chosen = {unit: result['choice']['shrink_thres'] for unit, result in trained.items()}
    assert set(chosen.values()) != {0.1}  # the flag's --ShrinkThres would give other scores

    def test(out, *flags, models='grid'):
        return ['--Dataset', 'KDDCUP99', '--Runs', '2', '--MemDim', '10', '--ShrinkThres', '0.1', '--UseCUDA',
                'False', '--EarlyStopping', 'True', '--DataRoot', str(tmp_path / 'data'), '--ModelRoot',
                str(tmp_path / models / 'models'), '--OutRoot', str(tmp_path / out), *flags]
    assert run_cli(script_testing.main, test('tested', '--ShrinkThresGrid', '0.05', '0.5', '0.1')) == 0
    for unit, result in trained.items():
        tested = json.loads(next((tmp_path / 'tested').rglob(f'{unit}.json')).read_text())
        assert tested['metrics'] == pytest.approx(result['metrics'], abs=1e-6)
        assert tested['choice'] == result['choice']  # the tested result records the unit's epoch and candidate
    odd = next(unit for unit, value in chosen.items() if value != 0.1)
    expect_one_sentence(script_testing.main, test('plain_flags'), capsys, f'chose shrink threshold {chosen[odd]}',
                        '--ShrinkThres 0.1 does not offer')
    expect_one_sentence(script_testing.main, test('other', '--ShrinkThresGrid', '0.7'), capsys,
                        '--ShrinkThresGrid 0.7 does not offer')
    # weights trained without a grid (the shipped ones) have no choice file: built with --ShrinkThres, said once,
    # not once per unit
    plain = train(tmp_path, 'plain', KDD)
    choice = plain['run0']['choice']  # a unit without a grid records its epoch, and no shrink threshold
    assert (choice['shrink_thres'], choice['chosen_epoch']) == (None, plain['run0']['validation']['chosen_epoch'])
    for path in (tmp_path / 'plain').rglob('*_choice.json'):
        path.unlink()
    capsys.readouterr()
    assert run_cli(script_testing.main, test('t', '--ShrinkThresGrid', '0.1', '0.2', models='plain')) == 0
    assert capsys.readouterr().out.count('trained without a grid: built with --ShrinkThres 0.1') == 1  # not per unit
    tested = json.loads(next((tmp_path / 't').rglob('run0.json')).read_text())
    assert tested['metrics'] == pytest.approx(plain['run0']['metrics'], abs=1e-6)


@pytest.mark.parametrize('lockstep', ['True', 'False'])
def test_a_unit_without_a_grid_records_its_chosen_epoch_and_testing_carries_it(tmp_path, lockstep):
    """Both training paths write the epoch a unit chose on validation into its choice file, and a test of its
    weights alone (a re-test under another protocol) puts it in the result (issue 46: each run's epoch on
    record)."""
    make_mnist(tmp_path / 'data', per_class_train=20, per_class_test=4)
    trained = train(tmp_path, 'plain', MNIST, '--Lockstep', lockstep)['class3_run0']
    assert trained['choice']['chosen_epoch'] == trained['validation']['chosen_epoch']
    assert (trained['choice']['lr'], trained['choice']['shrink_thres']) == (1e-4, None)  # --LR's default
    assert run_cli(script_testing.main, ['--Dataset', 'MNIST', '--ModelSetting', 'Conv2DSpar', '--MemDim', '10',
                                         '--ShrinkThres', '0.1', '--ImageCodeChannels', '4', '--NormalClass', '3',
                                         '--UseCUDA', 'False', '--DataRoot', str(tmp_path / 'data'), '--ModelRoot',
                                         str(tmp_path / 'plain' / 'models'), '--OutRoot', str(tmp_path / 't')]) == 0
    tested = json.loads(next((tmp_path / 't').rglob('class3_run0.json')).read_text())
    assert tested['choice'] == trained['choice'] and tested['metrics'] == pytest.approx(trained['metrics'], abs=1e-6)


def test_a_grid_of_one_value_still_records_the_choice(tmp_path):
    make_kdd(tmp_path / 'data', num_rows=800)
    trained = train(tmp_path, 'one', KDD, '--ShrinkThresGrid', '0.05')
    assert trained['run0']['choice']['shrink_thres'] == 0.05 and len(trained['run0']['choice']['candidates']) == 1
    assert len(list((tmp_path / 'one').rglob('*_choice.json'))) == 2


def test_an_interrupted_grid_resumes_to_the_same_choice(tmp_path, monkeypatch):
    """Stopped in the second shrink threshold's training, after every candidate of the first had finished: the
    resumed run restores those (it does not train them again) and ends as an uninterrupted one."""
    make_kdd(tmp_path / 'data', num_rows=800)
    whole = train(tmp_path, 'whole', KDD, *GRID)
    real_end = EpochClock.end_epoch
    ended = []

    def stop_in_the_second_threshold(self, unit, units_done, epoch):
        ended.append(unit)
        if unit.endswith(f'_ShrThres{SHRINKS[1]}') and epoch == 2:
            raise KeyboardInterrupt
        return real_end(self, unit, units_done, epoch)
    argv = [*KDD, *GRID, '--DataRoot', str(tmp_path / 'data'), '--ModelRoot', str(tmp_path / 'parts' / 'models'),
            '--OutRoot', str(tmp_path / 'parts')]
    with monkeypatch.context() as patch:
        patch.setattr(EpochClock, 'end_epoch', stop_in_the_second_threshold)
        assert run_cli(script_training.main, argv) == 130
    ended.clear()
    monkeypatch.setattr(EpochClock, 'end_epoch', lambda self, unit, *rest: ended.append(unit) or real_end(
        self, unit, *rest))
    assert run_cli(script_training.main, [*argv, '--Resume', 'auto']) == 0
    # the first threshold's candidates are not trained again
    assert ended and all(unit.endswith(f'_ShrThres{SHRINKS[1]}') for unit in ended)
    parts = {path.stem: json.loads(path.read_text()) for path in (tmp_path / 'parts').rglob('res_*/run?.json')}
    for unit, result in whole.items():
        if unit.startswith('run'):
            assert parts[unit]['choice'] == result['choice'], unit  # the same path: bit for bit


@pytest.mark.parametrize('flags, fragment', [
    (['--LRGrid', '1e-3', '1e-2', '--EarlyStopping', 'False'], '--LRGrid lets each unit choose'),
    (['--ShrinkThresGrid', '0.1', '0.1'], '--ShrinkThresGrid lists a value twice'),
    (['--LRGrid', '1e-3', '0'], '--LRGrid must be positive, got 0.001 0.0'),
    (['--ShrinkThresGrid', '0.1', '-0.1'], '--ShrinkThresGrid must not be negative, got 0.1 -0.1'),
    (['--LRGrid', '1e-3', '1e-2', '--Lockstep', 'False'], 'leave out --Lockstep False'),
    (['--ShrinkThresGrid', '0.1', '0.2', '--ModelName', 'AE', '--ModelSetting', 'FC'], 'has no memory'),
])
def test_a_grid_that_cannot_choose_is_refused(flags, fragment, tmp_path, capsys):
    expect_one_sentence(script_training.main, [*KDD, '--DataRoot', str(tmp_path), *flags], capsys, fragment)
