"""The sensitivity table: validation files compared at one training budget, each row against its reference."""
import json
import statistics

import pytest

from utils.errors import InputError
from utils.experiments import sensitivity


def validation_file(path, experiment, flags, curves):
    """A file as the validation program writes it: ``curves`` is {score: {unit: per-epoch AUCs}}."""
    rows = []
    for score, per_unit in curves.items():
        for epoch in range(1, len(next(iter(per_unit.values()))) + 1):
            values = {unit: curve[epoch - 1] for unit, curve in per_unit.items()}
            rows.append({'lr': 1e-4, 'shrink': None, 'temperature': None, 'score': score, 'epoch': epoch,
                         'mean': statistics.fmean(values.values()), 'smoothed': None, 'per_unit': values})
    path.write_text(json.dumps({'experiment': experiment, 'flags': flags, 'rows': rows}))
    return str(path)


def test_rows_choose_within_the_shared_budget_and_pair_by_unit(tmp_path, capsys):
    # the reference rises to epoch 6, beyond the factor's 4-epoch budget: cut to 4 epochs, its choice is epoch 4
    reference = validation_file(tmp_path / 'base.json', 'mnist_ae', [], {
        'mse': {'class0': [0.5, 0.6, 0.7, 0.8, 0.9, 0.95], 'class1': [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]},
        'l2': {'class0': [0.6, 0.6, 0.6, 0.6, 0.6, 0.6], 'class1': [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]}})
    factor = validation_file(tmp_path / 'kernel3.json', 'mnist_ae', ['--ImageFirstKernel', '3'], {
        'mse': {'class0': [0.7, 0.99, 0.9, 0.5], 'class1': [0.6, 0.9, 0.8, 0.4]}})
    out = tmp_path / 'sens.json'
    assert sensitivity.main([reference, factor, '--Window', '1', '--Out', str(out)]) == 0
    rows = {(r['flags'], r['score']): r for r in json.loads(out.read_text())['rows']}
    base, l2, kernel = rows['', 'mse'], rows['', 'l2'], rows['--ImageFirstKernel 3', 'mse']
    # smoothed over +-1 epoch, within 4 epochs: the reference's best is its last epoch (window cut at the end)
    assert (base['epoch'], base['edge']) == (4, True) and base['mean'] == pytest.approx(0.75)
    assert base['smoothed'] == pytest.approx((0.65 + 0.75) / 2)
    assert (kernel['epoch'], kernel['edge']) == (2, False) and kernel['smoothed'] == pytest.approx(
        statistics.fmean([0.65, 0.945, 0.85]))
    # differences from the reference at each one's own epoch, paired by class
    assert kernel['minus_reference']['mean'] == pytest.approx(statistics.fmean([0.99 - 0.8, 0.9 - 0.7]))
    assert kernel['minus_reference']['std'] == pytest.approx(statistics.stdev([0.99 - 0.8, 0.9 - 0.7]))
    assert l2['minus_reference']['mean'] == pytest.approx(statistics.fmean([0.6 - 0.8, 0.5 - 0.7]))
    assert base['minus_reference']['mean'] == 0
    printed = capsys.readouterr().out
    assert '| mnist_ae | --ImageFirstKernel 3 | mse | 2 | 0.9450 |' in printed and '4 (edge)' in printed
    assert out.with_suffix('.png').stat().st_size > 0


def test_a_longer_budget_than_a_curve_or_a_missing_reference_is_an_error(tmp_path):
    factor = validation_file(tmp_path / 'k.json', 'mnist', ['--ImageFirstKernel', '3'],
                             {'mse': {'class0': [0.5, 0.6]}})
    with pytest.raises(InputError, match='no reference for mnist'):
        sensitivity.main([factor, '--Out', str(tmp_path / 's.json')])
    reference = validation_file(tmp_path / 'b.json', 'mnist', [], {'mse': {'class0': [0.5, 0.6]}})
    with pytest.raises(InputError, match='--Epochs 3 is longer than the shortest curve'):
        sensitivity.main([reference, factor, '--Epochs', '3', '--Out', str(tmp_path / 's.json')])
