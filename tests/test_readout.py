"""utils/experiments/readout.py: what reaches the decoder, and the score's ties to the ink, on validation images."""
import json

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from synthetic import make_kdd, make_mnist
from utils.errors import run_cli
from utils.experiments import readout
from utils.experiments.validation import experiment_options, validation_units


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('readout')
    make_mnist(root / 'data', per_class_train=40, per_class_test=2)
    return root


def mann_whitney_auc(scores, labels):
    """P(an anomaly scores above a normal image), ties counting half: the AUC counted pair by pair."""
    anomalous, normal = scores[labels == 1], scores[labels == 0]
    above = (anomalous[:, None] > normal[None, :]).sum() + 0.5 * (anomalous[:, None] == normal[None, :]).sum()
    return above / (len(anomalous) * len(normal))


def saved_model(root, experiment, run, normal_class, change=None, flags=()):
    """A freshly initialised model of ``experiment`` (``change`` and model ``flags`` applied) saved where training
    would write run ``run`` of ``normal_class``; returns the model and its validation unit (seed 1 + run)."""
    opt = experiment_options(experiment, root / 'data', 1e-4, None, 1, flags=flags)
    unit = validation_units(opt, [normal_class], 1 + run)[0]
    torch.manual_seed(0)
    model = unit.make_model(opt)
    if change:
        change(model)
    folder = root / 'models' / f'model_{opt.setting}'
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / f'{opt.setting}_Class{normal_class}_Run{run}.pt')
    return model.eval(), unit


def lines_of(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{')]


def equal_slots(model):
    with torch.no_grad():
        model.mem_rep.memory.weight.copy_(model.mem_rep.memory.weight[:1].expand_as(model.mem_rep.memory.weight))


def test_a_memory_of_equal_slots_passes_nothing_on_and_draws_one_image(data_root, capsys):
    _, unit = saved_model(data_root, 'mnist_nonspar', 1, 3, equal_slots)
    assert run_cli(readout.main, ['mnist_nonspar', '--DataRoot', str(data_root / 'data'), '--ModelRoot',
                                  str(data_root / 'models'), '--Run', '1', '--Classes', '3']) == 0
    row, mean = lines_of(capsys)
    assert row['unit'] == 'class3' and row['weights'].endswith('_Class3_Run1.pt')
    assert row['images'] == len(unit.val_labels)
    # every slot alike: uniform weights (no shrinkage), a constant read-out and reconstruction
    assert row['variation_kept'] == 0 and row['reconstruction_spread'] == pytest.approx(0, abs=1e-4)
    assert row['nonzero'] == 100 and row['largest'] == pytest.approx(0.01)
    # a constant reconstruction c: error = |x|^2 - 2 x.c + const, which the test does not assume; the ink AUC is
    # counted pair by pair from the images
    ink = unit.val.flatten(1).mean(1).double().numpy()
    assert row['ink_auc'] == pytest.approx(mann_whitney_auc(ink, unit.val_labels), abs=1e-4)
    assert mean['mean_over_classes'] == {key: value for key, value in row.items()
                                         if key not in ('unit', 'weights', 'images')}


def test_the_ae_passes_its_code_on_and_its_scores_are_the_forward_pass_errors(data_root, capsys):
    model, unit = saved_model(data_root, 'mnist_ae', 0, 5)
    assert run_cli(readout.main, ['mnist_ae', '--DataRoot', str(data_root / 'data'), '--ModelRoot',
                                  str(data_root / 'models'), '--Classes', '5']) == 0
    row = lines_of(capsys)[0]
    assert row['variation_kept'] == 1 and 'nonzero' not in row and row['reconstruction_spread'] > 0
    with torch.no_grad():
        reconstructions = model(unit.val).flatten(1).double()
    errors = ((reconstructions - unit.val.flatten(1)) ** 2).mean(1).numpy()
    ink = unit.val.flatten(1).mean(1).double().numpy()
    assert row['auc'] == pytest.approx(mann_whitney_auc(errors, unit.val_labels), abs=1e-4)
    assert row['ink_auc'] == pytest.approx(mann_whitney_auc(ink, unit.val_labels), abs=1e-4)
    mean = reconstructions.mean(0)
    spread = float(sum((r - mean).norm() for r in reconstructions) / len(reconstructions) / mean.norm())
    assert row['reconstruction_spread'] == pytest.approx(spread, abs=1e-4)
    assert row['ink_correlation'] == pytest.approx(np.corrcoef(rankdata(errors), rankdata(ink))[0, 1], abs=1e-4)


def test_a_memory_read_out_varies_less_than_the_code(data_root, capsys):
    saved_model(data_root, 'mnist', 0, 2)
    assert run_cli(readout.main, ['mnist', '--DataRoot', str(data_root / 'data'), '--ModelRoot',
                                  str(data_root / 'models'), '--Classes', '2']) == 0
    row = lines_of(capsys)[0]
    assert 0 < row['variation_kept'] < 1 and 1 <= row['nonzero'] < 100 and row['largest'] > 0.01
    # one query per position: the addressing statistics are per query, over the N slots
    model, unit = saved_model(data_root, 'mnist', 0, 2, flags=['--MemQuery', 'position'])
    assert run_cli(readout.main, ['mnist', '--DataRoot', str(data_root / 'data'), '--ModelRoot',
                                  str(data_root / 'models'), '--Classes', '2', '--MemQuery', 'position']) == 0
    row = lines_of(capsys)[0]
    with torch.no_grad():
        att = model.mem_rep(model.encoder(unit.val))['att']  # B x N x H' x W'
    per_query = att.movedim(1, -1).reshape(-1, att.shape[1])
    assert att.dim() == 4 and row['nonzero'] == pytest.approx(float((per_query > 0).sum(1).double().mean()), abs=1e-4)
    assert row['nonzero'] <= 100 and row['largest'] == pytest.approx(float(per_query.max(1).values.mean()), abs=1e-4)


def test_missing_weights_and_kdd_are_refused_in_one_sentence(data_root, tmp_path, capsys):
    assert run_cli(readout.main, ['mnist', '--DataRoot', str(data_root / 'data'), '--ModelRoot',
                                  str(tmp_path), '--Classes', '7']) == 2
    assert 'no weights for class7' in capsys.readouterr().err
    make_kdd(tmp_path / 'kdd', num_rows=200)
    assert run_cli(readout.main, ['kdd', '--DataRoot', str(tmp_path / 'kdd')]) == 2
    assert 'readout looks at image models; kdd trains on KDDCUP99' in capsys.readouterr().err
