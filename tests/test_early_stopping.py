"""--EarlyStopping (utils/one_class.py ValidationStop): each unit keeps the weights of the epoch whose validation
metric, averaged over +-2 epochs, is best; resumption keeps the choice; both KDD training paths and the image
experiments; refused for video."""
import json

import numpy as np
import pytest
import torch

import script_training
from models import MLPMemAE, weights_init
from one_sentence import expect_one_sentence
from synthetic import make_kdd, make_mnist
from test_lockstep import train_kdd_both_ways
from utils.errors import run_cli
from utils.one_class import Schedule, UnitCheckpoint, ValidationStop, train_unit
from utils.training import LossSettings

MEMAE = LossSettings('MemAE', 'paper', entropy_weight=0.0002)
D = 12
# a validation curve with a spike at epoch 2 (a single-epoch maximum) and a broad plateau at epochs 6-8
CURVE = [0.5, 0.95, 0.4, 0.6, 0.7, 0.8, 0.82, 0.81, 0.6, 0.5]


def smoothed_argmax(curve, window=2):
    """The chosen epoch, computed here independently: the mean over a window clipped at the ends."""
    means = [np.mean(curve[max(0, e - window):e + window + 1]) for e in range(len(curve))]
    return int(np.argmax(means)) + 1


def scripted_stop(curve):
    """A ValidationStop whose metric returns ``curve`` one epoch after another, whatever the scores."""
    values = iter(curve)
    return ValidationStop('run0', torch.rand(30, D), np.zeros(30), lambda scores, labels: next(values), 'mse', True)


def train(epochs, stop=None, checkpoint=None, resume=False, on_epoch_end=None):
    torch.manual_seed(3)
    model = MLPMemAE(D, 10, shrink_thres=0.1, addressing='cosine').apply(weights_init)
    samples = torch.rand(40, D, generator=torch.Generator().manual_seed(4))
    train_unit(model, samples, Schedule(1e-2, epochs, 16), MEMAE, 7, on_epoch_end=on_epoch_end, stop=stop,
               checkpoint=checkpoint, resume=resume)
    return model


def test_the_model_ends_with_the_weights_of_the_best_smoothed_epoch():
    snapshots, kept = {}, []

    def remember(epoch, model):
        snapshots[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        kept.append(len(stop.states))
    stop = scripted_stop(CURVE)
    model = train(len(CURVE), stop, on_epoch_end=remember)
    chosen = smoothed_argmax(CURVE)
    assert chosen == 7 and stop.summary()['chosen_epoch'] == chosen  # the plateau, not the spike at epoch 2
    assert stop.summary()['smoothed'] == pytest.approx(np.mean(CURVE[4:9]))
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[chosen][key]), key
    assert not torch.equal(snapshots[chosen]['encoder.0.weight'], snapshots[len(CURVE)]['encoder.0.weight'])
    assert max(kept) <= 3  # the best complete epoch and the last two: never every epoch's weights


@pytest.mark.parametrize('curve, chosen', [([0.1, 0.2, 0.3, 0.9], 4), ([0.9, 0.2, 0.1, 0.1], 1),
                                           ([0.5, 0.5, 0.5, 0.5], 1)])
def test_the_ends_of_the_curve_use_a_shorter_window_and_ties_go_to_the_earlier_epoch(curve, chosen):
    stop = scripted_stop(curve)
    train(len(curve), stop)
    assert stop.summary()['chosen_epoch'] == chosen == smoothed_argmax(curve)


def test_a_resumed_unit_chooses_and_ends_as_an_uninterrupted_one(tmp_path):
    whole_stop = scripted_stop(CURVE)
    whole = train(len(CURVE), whole_stop)
    checkpoint = UnitCheckpoint(tmp_path / 'state.pt', {'setting': 's'})

    def interrupt(epoch, _):
        if epoch == 6:  # the best complete epoch so far (4) and epochs 5, 6 are in the state
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(len(CURVE), scripted_stop(CURVE), checkpoint, on_epoch_end=interrupt)
    resumed_stop = scripted_stop(CURVE[6:])
    resumed = train(len(CURVE), resumed_stop, checkpoint, resume=True)
    assert resumed_stop.summary() == whole_stop.summary()
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


KDD = ['--Dataset', 'KDDCUP99', '--Runs', '3', '--EpochNum', '4', '--BatchSize', '64', '--MemDim', '10',
       '--ShrinkThres', '0.1', '--UseCUDA', 'False', '--IsTbLog', 'False', '--EarlyStopping', 'True']


def test_kdd_runs_stop_alike_one_at_a_time_and_in_lockstep(tmp_path):
    results = {lockstep: [json.loads(path.read_text()) for path in sorted(out.glob('res_*/run?.json'))]
               for lockstep, out in train_kdd_both_ways(tmp_path, KDD, num_rows=800).items()}
    for alone, together in zip(results['False'], results['True']):
        # the saved weights are those of the chosen epoch on both paths (equal up to rounding)
        weights = [torch.load(result['weights']) for result in (alone, together)]
        for key, value in weights[0].items():
            assert torch.allclose(weights[1][key], value, atol=1e-3), key
        assert alone['validation']['chosen_epoch'] == together['validation']['chosen_epoch']
        assert together['validation']['curve'] == pytest.approx(alone['validation']['curve'], abs=0.02)
        # trained on the 80 % of the attack records of the training half that validation leaves
        assert alone['train_samples'] == together['train_samples']
        validation = alone['validation']
        assert len(validation['curve']) == 4 and validation['anomalies'] == round(validation['samples'] * 0.2)


def test_kdd_dagmm_reimpl_leaves_the_validation_records_out_of_its_test_records(tmp_path):
    make_kdd(tmp_path / 'data', num_rows=800)
    counted = {}
    for stopping in ('True', 'False'):
        argv = [*KDD[:-2], '--EarlyStopping', stopping, '--Protocol', 'dagmm_reimpl', '--DataRoot',
                str(tmp_path / 'data'), '--ModelRoot', str(tmp_path / stopping), '--OutRoot', str(tmp_path / stopping)]
        assert run_cli(script_training.main, argv) == 0
        result = json.loads(next((tmp_path / stopping).glob('res_*/run0.json')).read_text())
        counted[stopping] = result['test_anomalies']
        if stopping == 'True':
            held_out = result['validation']['anomalies']
    assert counted['True'] == counted['False'] - held_out > 0


def test_image_units_stop_on_validation_images(tmp_path):
    make_mnist(tmp_path / 'data', per_class_train=10, per_class_test=4)
    argv = ['--Dataset', 'MNIST', '--NormalClass', '3', '--EpochNum', '3', '--BatchSize', '8', '--MemDim', '10',
            '--UseCUDA', 'False', '--IsTbLog', 'False', '--EarlyStopping', 'True', '--DataRoot', str(tmp_path / 'data'),
            '--ModelRoot', str(tmp_path / 'models'), '--OutRoot', str(tmp_path / 'out')]
    assert run_cli(script_training.main, argv) == 0
    result = json.loads(next((tmp_path / 'out').glob('res_*/class3_run0.json')).read_text())
    assert result['train_samples'] == 8  # 2 of the 10 class-3 training images validate
    assert result['validation']['samples'] == 2 + result['validation']['anomalies'] and len(
        result['validation']['curve']) == 3


def test_early_stopping_is_refused_for_video(capsys):
    expect_one_sentence(script_training.main, ['--Dataset', 'UCSD_P2_256', '--EarlyStopping', 'True'], capsys,
                        '--EarlyStopping chooses the epoch of an image or KDD unit')
