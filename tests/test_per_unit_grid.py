"""--LRGrid and --ShrinkThresGrid (utils/one_class.py): every unit trains once per candidate setting, in lockstep,
and keeps the candidate whose validation curve, smoothed as --EarlyStopping smooths it, is best (the first of
equals); its choice is written beside its weights, and testing builds the unit's model with the shrink threshold it
chose. Each candidate's first Adam step inside the grid is checked against a run of that setting alone."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import script_testing
import script_training
from one_sentence import expect_one_sentence
from synthetic import make_kdd, make_mnist
from test_early_stopping import scripted_stop, smoothed_argmax
import utils.one_class as one_class
from utils.checkpoint import load_tensors_file
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
CANDIDATES = [(lr, shrink) for shrink in SHRINKS for lr in LRS]  # the grids' order


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


def training_state(weights, tag=''):
    """The training state a unit (with ``tag``: a candidate of its grid) kept beside its weights."""
    return load_tensors_file(weights.with_name(f'{weights.stem}{tag}_resume.pt'), 'a training state')


def check_grid_choices(tmp_path, base):
    """Train ``base`` with the grid, keeping every candidate's training state (--KeepIntermediate): each candidate
    records the epoch its own validation curve chooses (recomputed here), and the unit keeps the first candidate
    whose smoothed value is the largest. (That each candidate trains with its own rate and threshold is the
    one-step test below; its chosen epoch is not compared with a run alone: the rounding of a lockstep training
    changes with its number of members, Adam amplifies it, and an argmax over a coarse validation metric jumps with
    it; an image unit's epoch 4 alone was epoch 1 in the grid under ATEN_CPU_CAPABILITY=default.) Returns the
    grid's unit results."""
    grid = train(tmp_path, 'grid', base, *GRID, '--KeepIntermediate', 'True')
    for unit, result in grid.items():
        choice = result['choice']
        assert [(c['lr'], c['shrink_thres']) for c in choice['candidates']] == [  # the grids' order
            (float(lr), float(shrink)) for shrink in SHRINKS for lr in LRS]
        for entry, (lr, shrink) in zip(choice['candidates'], CANDIDATES):
            curve = training_state(Path(result['weights']), f'_LR{float(lr)}_ShrThres{float(shrink)}')[
                'validation']['curve']
            epoch = entry['chosen_epoch']
            assert epoch == smoothed_argmax(curve), (lr, shrink)
            assert entry['smoothed'] == pytest.approx(np.mean(curve[max(0, epoch - 3):epoch + 2]), abs=1e-12)
        best = int(np.argmax([entry['smoothed'] for entry in choice['candidates']]))  # argmax: the first of equals
        assert choice['candidates'][best] == {key: value for key, value in choice.items() if key != 'candidates'}
        assert result['validation']['chosen_epoch'] == choice['chosen_epoch']
    return grid


@pytest.mark.parametrize('kind', ['kdd', 'mnist'])
def test_each_candidate_takes_its_first_adam_step_with_its_own_rate_and_threshold(tmp_path, kind):
    """One epoch of one batch: Adam's first step moves a weight by lr x g / (|g| + eps), i.e. by lr x sign(g)
    wherever the gradient is far from 0, so a candidate inside the grid and its run alone agree except where a
    gradient lies within rounding of 0 (a bias before batch norm): the median difference of their weights is
    rounding. Another learning rate would make it about the difference of the rates (9e-3), another threshold move
    other weights (a lambda of 0.5 zeroes the memory's read-out and the gradients through it)."""
    if kind == 'kdd':
        make_kdd(tmp_path / 'data', num_rows=800)
    else:
        make_mnist(tmp_path / 'data', per_class_train=20, per_class_test=4)
    base = {'kdd': KDD, 'mnist': MNIST}[kind]
    one_step = ('--EpochNum', '1', '--BatchSize', '100000', '--KeepIntermediate', 'True')
    grid = train(tmp_path, 'grid', base, *GRID, *one_step)
    for lr, shrink in CANDIDATES:
        alone = train(tmp_path, f'alone_{lr}_{shrink}', base, '--LR', lr, '--ShrinkThres', shrink,
                      '--Lockstep', 'True', *one_step)
        for unit, result in grid.items():
            inside = training_state(Path(result['weights']), f'_LR{float(lr)}_ShrThres{float(shrink)}')['model']
            own = training_state(Path(alone[unit]['weights']))['model']
            differences = torch.cat([(inside[key].double() - value.double()).abs().flatten()
                                     for key, value in own.items() if value.is_floating_point()])
            assert float(differences.median()) < float(lr) / 100, (unit, lr, shrink)


def test_kdd_runs_keep_the_first_best_candidate_of_the_grid(tmp_path):
    make_kdd(tmp_path / 'data', num_rows=800)
    grid = check_grid_choices(tmp_path, KDD)
    models = tmp_path / 'grid' / 'models'
    choices = sorted(models.rglob('*_choice.json'))
    assert [path.name.rsplit('_', 2)[-2] for path in choices] == ['Run0', 'Run1']
    assert json.loads(choices[0].read_text()) == grid['run0']['choice']


def test_image_units_keep_the_first_best_candidate_of_the_grid(tmp_path):
    make_mnist(tmp_path / 'data', per_class_train=20, per_class_test=4)
    grid = check_grid_choices(tmp_path, MNIST)
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
    said = capsys.readouterr().out
    assert said.count('(trained without a grid): built with --ShrinkThres 0.1') == 1  # not per unit
    assert 'no MemAE_' in said and '_choice.json beside its weights' in said
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
    assert not list((tmp_path / 'one').rglob('*_resume.pt'))  # the candidates' training states go when it is done


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


@pytest.mark.parametrize('flags', [GRID, ['--Lockstep', 'False']], ids=['grid', 'one_at_a_time'])
def test_a_unit_stopped_between_its_weights_and_its_result_is_scored_not_trained_again(flags, tmp_path, monkeypatch):
    """Stopped while the first unit's result is written, after its weights (in lockstep: every unit's): --Resume
    auto trains nothing of that unit again, and ends as an uninterrupted run."""
    make_kdd(tmp_path / 'data', num_rows=800)
    whole = train(tmp_path, 'whole', KDD, *flags)
    real_write, real_end = one_class.write_json, EpochClock.end_epoch

    def stop_at_the_first_result(path, value):
        if Path(path).name == 'run0.json':
            raise KeyboardInterrupt
        return real_write(path, value)
    argv = [*KDD, *flags, '--DataRoot', str(tmp_path / 'data'), '--ModelRoot', str(tmp_path / 'parts' / 'models'),
            '--OutRoot', str(tmp_path / 'parts')]
    with monkeypatch.context() as patch:
        patch.setattr(one_class, 'write_json', stop_at_the_first_result)
        assert run_cli(script_training.main, argv) == 130
    assert list((tmp_path / 'parts').rglob('*_Run0.pt')) and not list((tmp_path / 'parts').rglob('run0.json'))
    ended = []
    monkeypatch.setattr(EpochClock, 'end_epoch', lambda self, unit, *rest: ended.append(unit) or real_end(
        self, unit, *rest))
    assert run_cli(script_training.main, [*argv, '--Resume', 'auto']) == 0
    # run0 trains no epoch again; in lockstep neither does run1, trained before run0 was scored
    assert ended == [] if flags is GRID else ended and all(unit.startswith('run1') for unit in ended)
    assert not list((tmp_path / 'parts').rglob('*_resume.pt'))  # scored: its training states went
    parts = {path.stem: json.loads(path.read_text()) for path in (tmp_path / 'parts').rglob('res_*/run?.json')}
    for unit in ('run0', 'run1'):
        assert parts[unit]['metrics'] == whole[unit]['metrics'], unit  # the same path: bit for bit
        assert parts[unit]['epoch_losses'] == whole[unit]['epoch_losses'], unit


def test_a_finished_run_resumed_from_another_folder_trains_nothing_again(tmp_path, monkeypatch):
    """Results record their weights relative to the folder the run started in; --Resume auto looks for them in
    the run's --ModelRoot, so the same run resumed from another folder (or with its roots spelled absolute) finds
    every unit finished instead of training it again; a unit whose weights are gone trains again."""
    make_kdd(tmp_path / 'data', num_rows=800)
    monkeypatch.chdir(tmp_path)
    argv = [*KDD, '--DataRoot', 'data', '--ModelRoot', 'out/models', '--OutRoot', 'out']
    assert run_cli(script_training.main, argv) == 0
    before = {path.name: path.read_bytes() for path in (tmp_path / 'out').rglob('res_*/run?.json')}
    assert len(before) == 2 and all(not Path(json.loads(text)['weights']).is_absolute() for text in before.values())
    real_end, ended = EpochClock.end_epoch, []
    monkeypatch.setattr(EpochClock, 'end_epoch', lambda self, unit, *rest: ended.append(unit) or real_end(
        self, unit, *rest))
    (tmp_path / 'elsewhere').mkdir()
    monkeypatch.chdir(tmp_path / 'elsewhere')
    resumed = [*KDD, '--DataRoot', '../data', '--ModelRoot', '../out/models', '--OutRoot', '../out', '--Resume', 'auto']
    assert run_cli(script_training.main, resumed) == 0
    assert ended == []
    assert {path.name: path.read_bytes() for path in (tmp_path / 'out').rglob('res_*/run?.json')} == before
    next((tmp_path / 'out' / 'models').rglob('*_Run1.pt')).unlink()  # a result without its weights: trained again
    assert run_cli(script_training.main, resumed) == 0
    assert ended and all(unit.startswith('run1') for unit in ended)


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
