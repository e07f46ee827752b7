"""The image and KDDCUP99 experiments end to end through the scripts, on tiny synthetic data."""
import json
import statistics

import numpy as np
import pytest
from sklearn import metrics

import script_testing
import script_training
from synthetic import make_image_folder, make_kdd, make_mnist
from utils.experiments.images import roc_auc

COMMON = ['--UseCUDA', 'False', '--IsTbLog', 'False', '--EpochNum', '2', '--BatchSize', '16', '--LR', '1e-3']
MNIST_MEMAE = ['--Dataset', 'MNIST', '--ModelSetting', 'Conv2DSpar', '--MemDim', '10', '--ShrinkThres', '0.1']
KDD_MEMAE = ['--Dataset', 'KDDCUP99', '--ModelSetting', 'FCSpar', '--MemDim', '8', '--ShrinkThres', '0.125']


def roots(tmp_path):
    return ['--DataRoot', str(tmp_path / 'data'), '--ModelRoot', str(tmp_path / 'models'), '--OutRoot',
            str(tmp_path / 'out')]


# t quantiles (0.975) for 1 and 2 degrees of freedom, from a table: the test does not share the code's scipy call
T_975 = {1: 12.706204736174707, 2: 4.302652729911275}


def assert_mean_std(field, values):
    """``field`` is the summary of ``values``: mean, sample std (ddof 1), t-based 95 % interval, count."""
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = T_975[len(values) - 1] * std / len(values) ** 0.5
    assert field['n'] == len(values)
    assert field['mean'] == pytest.approx(mean, abs=1e-12) and field['std'] == pytest.approx(std, abs=1e-12)
    assert field['ci95'] == pytest.approx([mean - half, mean + half], rel=1e-9)  # the table's t has 17 digits


def test_mnist_protocol_trains_every_class_then_testing_reproduces_it(tmp_path):
    make_mnist(tmp_path / 'data')
    argv = MNIST_MEMAE + roots(tmp_path) + ['--Runs', '2']
    assert script_training.main(argv + COMMON) == 0
    summary = json.loads((tmp_path / 'out' / 'mnist_summary.json').read_text())
    assert summary['protocol'] == 'standard' and summary['runs'] == 2 and summary['classes'] == list(range(10))
    assert len(summary['auc']['per_class']) == 10 and 0 <= summary['auc']['mean'] <= 1
    setting = 'MemAE_Conv2DSpar_MNIST_MemDim10_EntW0.0002_ShrThres0.1_AddrCosine_Seed1_Non'
    res = tmp_path / 'out' / f'res_{setting}'
    unit = json.loads((res / 'class4_run1.json').read_text())
    assert (unit['seed'], unit['normal_class'], unit['train_samples'], unit['test_samples']) == (2, 4, 12, 9)
    assert (res / 'class4_run1_memory.png').stat().st_size > 0
    assert (tmp_path / 'models' / f'model_{setting}' / f'{setting}_Class4_Run1.pt').is_file()
    # per-class AUC = mean over runs; summary mean = mean over runs of the mean over classes
    aucs = {(c, r): json.loads((res / f'class{c}_run{r}.json').read_text())['metrics']['auc']
            for c in range(10) for r in range(2)}
    assert summary['auc']['per_class'][4] == pytest.approx((aucs[4, 0] + aucs[4, 1]) / 2)
    per_run = [np.mean([aucs[c, r] for c in range(10)]) for r in range(2)]
    assert_mean_std(summary['auc'], per_run)
    per_class = [(aucs[c, 0] + aucs[c, 1]) / 2 for c in range(10)]
    assert summary['auc']['per_class'] == pytest.approx(per_class, abs=1e-12)
    assert summary['auc']['std_over_classes'] == pytest.approx(statistics.stdev(per_class), abs=1e-12)
    assert set(summary['definitions']['auc']) == set(summary['auc'])  # every field says what it is over
    assert 'per run (seed)' in summary['definitions']['auc']['std']

    (tmp_path / 'out' / 'mnist_summary.json').unlink()
    assert script_testing.main(MNIST_MEMAE + roots(tmp_path) + ['--Runs', '2', '--UseCUDA', 'False']) == 0
    tested = json.loads((tmp_path / 'out' / 'mnist_summary.json').read_text())
    assert tested['auc'] == summary['auc']


def test_single_class_and_ae(tmp_path):
    make_mnist(tmp_path / 'data', folder='mnist', compressed=False)
    argv = ['--Dataset', 'MNIST', '--ModelName', 'AE', '--ModelSetting', 'Conv2D', '--NormalClass', '7']
    assert script_training.main(argv + roots(tmp_path) + COMMON) == 0
    summary = json.loads((tmp_path / 'out' / 'mnist_summary.json').read_text())
    assert summary['classes'] == [7] and summary['setting'] == 'AE_Conv2D_MNIST_Non'
    # the unit's AUC is scikit-learn's on its saved scores, anomalies (digits other than 7) positive
    res = tmp_path / 'out' / 'res_AE_Conv2D_MNIST_Non'
    saved = np.load(res / 'class7_run0_scores.npz')
    assert saved['labels'].sum() == 3 and len(saved['labels']) == 9  # 6 test sevens, 30 % drawn anomalies
    auc = json.loads((res / 'class7_run0.json').read_text())['metrics']['auc']
    assert auc == pytest.approx(metrics.roc_auc_score(saved['labels'], saved['scores']), abs=1e-12)
    assert summary['auc']['mean'] == auc


def test_pooled_protocol_on_a_png_folder(tmp_path):
    make_image_folder(tmp_path / 'data' / 'cifar10' / 'test', classes=[f'c{k}' for k in range(4)], per_class=12)
    argv = ['--Dataset', 'CIFAR10', '--ModelSetting', 'Conv2DSpar', '--MemDim', '6', '--ShrinkThres', '0.1']
    assert script_training.main(argv + roots(tmp_path) + COMMON) == 0
    summary = json.loads((tmp_path / 'out' / 'cifar10_summary.json').read_text())
    assert summary['protocol'] == 'pooled' and len(summary['auc']['per_class']) == 4
    unit = json.loads(next((tmp_path / 'out').glob('res_*/class0_run0.json')).read_text())
    assert (unit['train_samples'], unit['test_samples'], unit['test_anomalies']) == (8, 6, 2)


def test_kdd_runs_then_testing_reproduces_them(tmp_path):
    make_kdd(tmp_path / 'data', num_rows=400)
    argv = KDD_MEMAE + roots(tmp_path) + ['--Runs', '3']
    assert script_training.main(argv + COMMON) == 0
    summary = json.loads((tmp_path / 'out' / 'kdd_summary.json').read_text())
    assert summary['runs'] == 3 and set(summary) >= {'precision', 'recall', 'f1'}
    assert set(summary['f1']) == {'mean', 'std', 'ci95', 'n'}
    # every run's numbers from its own saved scores, by the documented rule: flag the records above the 80th
    # percentile of the test scores (the registry's KDDCUP99 anomaly ratio 0.2); F1 by scikit-learn
    res = tmp_path / 'out' / 'res_MemAE_FCSpar_KDDCUP99_MemDim8_EntW0.0002_ShrThres0.125_AddrCosine_Seed1_Non'
    f1s, precisions, recalls = [], [], []
    for run in ('run0', 'run1', 'run2'):
        saved = np.load(res / f'{run}_scores.npz')
        result = json.loads((res / f'{run}.json').read_text())['metrics']
        threshold = np.percentile(saved['scores'], 80)
        flagged = saved['scores'] > threshold
        assert result['threshold'] == threshold and abs(flagged.mean() - 0.2) <= 1 / len(flagged)
        f1s.append(metrics.f1_score(saved['labels'], flagged))
        assert result['f1'] == pytest.approx(f1s[-1], abs=1e-12)
        assert result['precision'] == pytest.approx(metrics.precision_score(saved['labels'], flagged), abs=1e-12)
        precisions.append(metrics.precision_score(saved['labels'], flagged))
        recalls.append(metrics.recall_score(saved['labels'], flagged))
    for name, values in (('f1', f1s), ('precision', precisions), ('recall', recalls)):
        assert_mean_std(summary[name], values)
        assert 'per run (random split)' in summary['definitions'][name]['std']
    (tmp_path / 'out' / 'kdd_summary.json').unlink()
    assert script_testing.main(KDD_MEMAE + roots(tmp_path) + ['--Runs', '3', '--UseCUDA', 'False']) == 0
    assert json.loads((tmp_path / 'out' / 'kdd_summary.json').read_text())['f1'] == summary['f1']

    # the same weights under the re-implementation's protocol: every record scored once; the threshold is the
    # 80th percentile of all of them (training and test records), F1 counts the test records only
    other = roots(tmp_path)[:-1] + [str(tmp_path / 'reimpl')]
    assert script_testing.main(KDD_MEMAE + other + ['--Runs', '3', '--UseCUDA', 'False',
                                                    '--Protocol', 'dagmm_reimpl']) == 0
    reimpl = json.loads((tmp_path / 'reimpl' / 'kdd_summary.json').read_text())
    assert reimpl['protocol'] == 'dagmm_reimpl'
    saved = np.load(tmp_path / 'reimpl' / res.name / 'run0_scores.npz')
    result = json.loads((tmp_path / 'reimpl' / res.name / 'run0.json').read_text())
    assert len(saved['scores']) == 400 and result['test_samples'] == saved['is_test'].sum()
    assert result['test_anomalies'] == saved['labels'].sum()  # every anomaly record is a test record
    threshold = np.percentile(saved['scores'], 80)
    flagged = saved['scores'][saved['is_test']] > threshold
    assert result['metrics']['f1'] == pytest.approx(metrics.f1_score(saved['labels'][saved['is_test']], flagged),
                                                    abs=1e-12)
    # the second half's records score the same under both protocols (one model serves both)
    dagmm_scores = np.sort(np.load(res / 'run0_scores.npz')['scores'])
    half = np.sort(saved['scores'][saved['is_test']])
    assert np.isin(dagmm_scores[np.load(res / 'run0_scores.npz')['labels'] == 0], half).all()


def test_protocol_names_belong_to_their_family(tmp_path, capsys):
    from utils.errors import run_cli
    make_kdd(tmp_path / 'data', num_rows=100)
    assert run_cli(script_training.main, KDD_MEMAE + roots(tmp_path) + COMMON + ['--Protocol', 'pooled']) == 2
    assert '--Protocol pooled is no KDDCUP99 protocol; valid: auto, dagmm, dagmm_reimpl' in capsys.readouterr().err
    make_mnist(tmp_path / 'data')
    assert run_cli(script_training.main, MNIST_MEMAE + roots(tmp_path) + COMMON + ['--Protocol', 'dagmm']) == 2
    assert '--Protocol dagmm is no image protocol' in capsys.readouterr().err


def test_testing_without_weights_lists_the_names_tried(tmp_path, capsys):
    from utils.errors import run_cli
    make_kdd(tmp_path / 'data', num_rows=100)
    assert run_cli(script_testing.main, KDD_MEMAE + roots(tmp_path) + ['--UseCUDA', 'False']) == 2
    assert 'no weights for run0; tried:' in capsys.readouterr().err


def test_image_units_score_by_the_roc_auc_with_anomalies_positive():
    scores, labels = np.arange(6, dtype=float), np.array([0, 1, 0, 0, 1, 1])
    assert roc_auc(scores, labels)['auc'] == pytest.approx(7 / 9)  # 7 of the 9 anomaly-normal pairs ordered right


def test_the_registry_hands_the_kdd_rule_its_ratio():
    from data.registry import DATASETS
    assert DATASETS['KDDCUP99'].anomaly_ratio == 0.2 and DATASETS['MNIST'].anomaly_ratio == 0.3


def test_images_reach_the_model_with_standard_strides(tmp_path):
    """Every batch the MNIST model sees has the strides of a fresh tensor: the strides NumPy gives MNIST's channel
    axis make oneDNN corrupt the heap (docs/onednn_stride_crash.py)."""
    import torch
    from data.image_sets import load_mnist
    from utils.one_class import as_tensor
    make_mnist(tmp_path / 'data')
    images, labels = load_mnist(tmp_path / 'data').splits['train']
    numpy_view = images[labels == 3]
    assert numpy_view.strides[1] != numpy_view.strides[2] * 28  # the hazard is present in what the reader returns
    tensor = as_tensor(numpy_view)
    assert tensor.stride() == (784, 784, 28, 1) and torch.equal(tensor * 255, torch.from_numpy(numpy_view).float())
    seen = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, inputs: seen.append(inputs[0].stride()) if isinstance(module, torch.nn.Conv2d)
        and module.in_channels == 1 else None)
    try:
        assert script_training.main(MNIST_MEMAE + roots(tmp_path) + COMMON + ['--NormalClass', '3', '--Lockstep',
                                                                               'False']) == 0
    finally:
        hook.remove()
    assert seen and all(stride[1] == stride[2] * 28 for stride in seen)


def test_image_layer_options_reach_training_and_testing_alike(tmp_path):
    """Weights trained with --ImageFirstKernel, --ImageCodeChannels and --ImageRange go under a run name that names
    them, the images reach the model in [-1, 1] under symmetric_tanh (and in [0, 1] without), and testing with the
    same flags rebuilds the network and reproduces training's AUC."""
    import torch
    make_mnist(tmp_path / 'data')
    layers = ['--ImageFirstKernel', '3', '--ImageCodeChannels', '8', '--ImageRange', 'symmetric_tanh']
    argv = MNIST_MEMAE + roots(tmp_path) + ['--NormalClass', '2'] + layers
    lowest = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, inputs: lowest.append(float(inputs[0].min())) if isinstance(module, torch.nn.Conv2d)
        and module.in_channels == 1 else None)
    try:
        assert script_training.main(argv + COMMON + ['--Lockstep', 'False']) == 0  # hooks see no vmap'd tensors
        assert min(lowest) == -1.0  # black pixels (the synthetic digits have some) are -1
        lowest.clear()
        assert script_training.main(MNIST_MEMAE + roots(tmp_path) + ['--NormalClass', '2'] + COMMON +
                                    ['--Lockstep', 'False']) == 0
        assert min(lowest) == 0.0
    finally:
        hook.remove()
    setting = ('MemAE_Conv2DSpar_MNIST_MemDim10_EntW0.0002_ShrThres0.1_AddrCosine_Seed1_Kernel3_Code8'
               '_RangeSymmetric_tanh_Non')
    state = torch.load(tmp_path / 'models' / f'model_{setting}' / f'{setting}_Class2_Run0.pt', weights_only=True)
    assert state['encoder.0.weight'].shape == (16, 1, 3, 3) and state['mem_rep.memory.weight'].shape == (10, 128)
    trained = json.loads((tmp_path / 'out' / f'res_{setting}' / 'class2_run0.json').read_text())['metrics']
    (tmp_path / 'out' / f'res_{setting}').rename(tmp_path / 'trained')
    assert script_testing.main(argv + ['--UseCUDA', 'False']) == 0
    tested = json.loads((tmp_path / 'out' / f'res_{setting}' / 'class2_run0.json').read_text())['metrics']
    assert tested == trained


def test_validation_picks_the_setting_with_the_best_mean_over_units(tmp_path):
    from utils.experiments import validation
    make_mnist(tmp_path / 'data')
    out = tmp_path / 'val' / 'mnist.json'
    assert validation.main(['mnist', '--DataRoot', str(tmp_path / 'data'), '--LR', '1e-3', '1e-2', '--Epochs', '3',
                            '--Classes', '0', '3', '--Window', '1', '--Out', str(out)]) == 0
    table = json.loads(out.read_text())
    rows = table['rows']
    assert [(r['lr'], r['epoch']) for r in rows] == [(lr, e) for lr in (1e-3, 1e-2) for e in (1, 2, 3)]
    for row in rows:
        assert set(row['per_unit']) == {'class0', 'class3'} and row['shrink'] == 0.01
        assert row['mean'] == pytest.approx(np.mean(list(row['per_unit'].values())))
    # smoothed over +-1 epoch within the same setting: epoch 1 averages epochs 1-2, epoch 2 averages 1-3
    means = [r['mean'] for r in rows]
    assert [r['smoothed'] for r in rows[:3]] == pytest.approx([np.mean(means[:2]), np.mean(means[:3]),
                                                               np.mean(means[1:3])])
    assert rows[3]['smoothed'] == pytest.approx(np.mean(means[3:5]))
    assert table['best'] == max(rows, key=lambda r: r['smoothed']) and table['metric'] == 'AUC'
    assert out.with_suffix('.png').stat().st_size > 0


def test_validation_grid_trains_its_learning_rates_and_classes_in_lockstep_like_one_by_one(tmp_path, capsys):
    """Two learning rates x two classes of unequal length (10 and 13 training images) as one lockstep model
    (--Lockstep True) and one by one (False, and auto for images): the same rows to rounding, each learning rate
    its own (the two learning rates' curves differ), and the lockstep path ran only when asked. Learning rates
    of 1e-5 and 1e-4: tiny batch-norm batches at 1e-3 are chaotic enough that rounding moves curves
    (tests/test_lockstep.py)."""
    from utils.experiments import validation
    import utils.lockstep
    make_mnist(tmp_path / 'data', per_class_train=[10 + c % 4 for c in range(10)], per_class_test=2)
    tables = {}
    calls = []
    real = utils.lockstep.train_stacked
    for lockstep in ('True', 'False', 'auto'):  # auto: images one by one
        out = tmp_path / f'{lockstep}.json'
        validation.train_stacked = lambda *a, **k: calls.append(lockstep) or real(*a, **k)
        try:
            assert validation.main(['mnist', '--DataRoot', str(tmp_path / 'data'), '--LR', '1e-5', '1e-4',
                                    '--Epochs', '2', '--Classes', '0', '3', '--Out', str(out), '--BatchSize', '4',
                                    '--Lockstep', lockstep]) == 0
        finally:
            validation.train_stacked = real
        tables[lockstep] = json.loads(out.read_text())
    assert calls == ['True']
    together, alone = tables['True']['rows'], tables['False']['rows']
    assert [(r['lr'], r['epoch']) for r in together] == [(r['lr'], r['epoch']) for r in alone]
    for a, b in zip(together, alone):
        assert a['per_unit'] == pytest.approx(b['per_unit'], abs=1e-9)
        for name, usage in a['addressing'].items():  # a count over a threshold: rounding moves a few weights
            assert usage['nonzero'] == pytest.approx(b['addressing'][name]['nonzero'], abs=2)
            assert usage['largest'] == pytest.approx(b['addressing'][name]['largest'], rel=0.05)
    assert together[1]['addressing'] != together[3]['addressing']  # each learning rate trained its own models


def test_validation_grid_spans_temperatures_and_records_the_addressing(tmp_path, capsys):
    """The validation program trains one model per (LR, lambda, temperature) and class, scores the validation set
    after every epoch, and picks the row with the best smoothed mean; the temperature reaches the model (its
    addressing differs) and the chosen row is the one the table says."""
    from utils.experiments import validation
    make_mnist(tmp_path / 'data', per_class_train=10, per_class_test=2)
    out = tmp_path / 'val.json'
    assert validation.main(['mnist', '--DataRoot', str(tmp_path / 'data'), '--LR', '1e-3', '--MemTemperature',
                            '0.05', '1', '--Epochs', '2', '--Classes', '0', '3', '--Window', '1',
                            '--Out', str(out)]) == 0
    table = json.loads(out.read_text())
    rows = table['rows']
    assert [(r['temperature'], r['epoch']) for r in rows] == [(0.05, 1), (0.05, 2), (1.0, 1), (1.0, 2)]
    for row in rows:
        assert set(row['per_unit']) == set(row['addressing']) == {'class0', 'class3'}
        assert row['mean'] == pytest.approx(np.mean(list(row['per_unit'].values())))
        assert all(0 < a['largest'] <= 1 and 1 <= a['nonzero'] <= 100 for a in row['addressing'].values())
    # smoothing over +-1 epoch of two: both epochs of a setting share the mean of its two epochs
    assert rows[0]['smoothed'] == pytest.approx((rows[0]['mean'] + rows[1]['mean']) / 2)
    assert table['best'] == max(rows, key=lambda r: r['smoothed'])
    assert rows[1]['addressing'] != rows[3]['addressing']  # the temperature changed how the memory is read
    assert out.with_suffix('.png').stat().st_size > 0
    assert f"temperature {table['best']['temperature']}" in capsys.readouterr().out
    # an AE has no memory: no temperature and no addressing in its rows
    assert validation.main(['mnist_ae', '--DataRoot', str(tmp_path / 'data'), '--LR', '1e-3', '--Epochs', '1',
                            '--Classes', '0', '--Out', str(out)]) == 0
    rows = json.loads(out.read_text())['rows']
    assert len(rows) == 1 and rows[0]['temperature'] is None and 'addressing' not in rows[0]
    assert rows[0]['score'] == 'mse'  # the experiment's own score


def test_validation_scores_one_training_several_ways_and_passes_training_flags_on(tmp_path, monkeypatch):
    """--ScoreType lists scores computed from the same trained models (a row per score); any other flag is a
    training flag that reaches the model (here a narrower code)."""
    from utils.experiments import validation
    make_mnist(tmp_path / 'data', per_class_train=10, per_class_test=2)
    built, scored = [], []
    build, score_samples = validation.build_model, validation.score_samples
    monkeypatch.setattr(validation, 'build_model', lambda *a, **k: built.append(build(*a, **k)) or built[-1])
    monkeypatch.setattr(validation, 'score_samples', lambda model, samples, score, memory: scored.append(
        (id(model), score, score_samples(model, samples, score, memory))) or scored[-1][2])
    out = tmp_path / 'val.json'
    assert validation.main(['mnist_ae', '--DataRoot', str(tmp_path / 'data'), '--LR', '1e-3', '--Epochs', '2',
                            '--Classes', '0', '--ScoreType', 'mse', 'l2', '--ImageCodeChannels', '8',
                            '--Out', str(out)]) == 0
    table = json.loads(out.read_text())
    assert table['flags'] == ['--ImageCodeChannels', '8']
    assert len(built) == 1 and built[0].decoder[0].in_channels == 8  # one model trained for both scores
    assert [(r['score'], r['epoch']) for r in table['rows']] == [('mse', 1), ('mse', 2), ('l2', 1), ('l2', 2)]
    # after each epoch the one model is scored both ways, and each row holds the AUC of its own scores
    assert [(model, score) for model, score, _ in scored] == [(id(built[0]), s) for s in ('mse', 'l2') * 2]
    labels = validation.validation_units(validation.experiment_options('mnist_ae', tmp_path / 'data', 1e-3, None, 2),
                                         [0], 1)[0].val_labels
    for row, (_, _, scores) in zip([table['rows'][i] for i in (0, 2, 1, 3)], scored):
        assert row['per_unit']['class0'] == roc_auc(scores, labels)['auc']
    # the validation images take the pixel range of --ImageRange, as training's do
    for image_range, lowest in (('unit', 0.0), ('symmetric_tanh', -1.0)):
        opt = validation.experiment_options('mnist_ae', tmp_path / 'data', 1e-3, None, 1,
                                            flags=['--ImageRange', image_range])
        unit = validation.validation_units(opt, [0], 1)[0]
        assert unit.train.min() == unit.val.min() == lowest  # the synthetic digits have black pixels


def test_validation_trains_on_the_device_of_use_cuda(tmp_path, monkeypatch, capsys):
    """--UseCUDA reaches the validation program: the training part and the model sit on the device it selects
    (here a stand-in, the meta device, so that the check runs without a GPU), the validation part stays on the
    CPU; without a GPU, --UseCUDA True trains on the CPU after the one-line note."""
    import torch
    from utils.experiments import validation
    make_mnist(tmp_path / 'data', per_class_train=10, per_class_test=2)
    opt = validation.experiment_options('mnist_ae', tmp_path / 'data', 1e-3, None, 1, flags=['--UseCUDA', 'True'])
    asked, seen = [], []
    monkeypatch.setattr(validation, 'select_device', lambda use_cuda: asked.append(use_cuda) or torch.device('meta'))
    monkeypatch.setattr(validation, 'train_unit', lambda model, samples, *a, **k: seen.append(
        (next(model.parameters()).device.type, samples.device.type)))
    unit = validation.validation_units(opt, [0], 1)[0]
    validation.train_validation_unit(opt, unit, 1, lambda epoch, model: None)
    assert asked == [True] and seen == [('meta', 'meta')] and unit.val.device.type == 'cpu'
    monkeypatch.undo()
    capsys.readouterr()
    unit = validation.validation_units(opt, [0], 1)[0]
    assert unit.train.device.type == ('cuda' if torch.cuda.is_available() else 'cpu')
    assert ('CUDA is not available' in capsys.readouterr().err) == (not torch.cuda.is_available())


def test_a_kdd_command_ends_in_one_plain_line_and_keeps_a_summary_of_other_units(tmp_path, capsys):
    """The last line: the headline with its spread, n and (for the paper's models) the paper's value; a summary in
    --OutRoot of other units (the 20-run one, say) is not replaced by a run of fewer."""
    make_kdd(tmp_path / 'data', num_rows=200)
    argv = KDD_MEMAE + roots(tmp_path) + COMMON + ['--EntropyLossWeight', '0.0002']
    assert script_training.main(argv + ['--Runs', '2']) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads((tmp_path / 'out' / 'kdd_summary.json').read_text())
    f1 = summary['f1']
    assert last.startswith(f"KDDCUP99 F1 {f1['mean']:.4f} ± {f1['std']:.4f} over 2 runs (paper 0.9641) -> ")
    assert script_testing.main(KDD_MEMAE + roots(tmp_path) + ['--UseCUDA', 'False', '--Runs', '1']) == 0
    printed = capsys.readouterr().out
    assert json.loads((tmp_path / 'out' / 'kdd_summary.json').read_text()) == summary  # kept
    one = json.loads((tmp_path / 'out' / 'kdd_summary_1units.json').read_text())
    assert one['units'] == ['run0'] and 'kdd_summary_1units.json' in printed
    assert 'over 1 run (paper 0.9641)' in printed and '±' not in printed.strip().splitlines()[-1]  # no std of one
    assert script_testing.main(KDD_MEMAE + roots(tmp_path) + ['--UseCUDA', 'False', '--Runs', '2']) == 0
    assert json.loads((tmp_path / 'out' / 'kdd_summary.json').read_text())['f1'] == f1  # the same units: replaced
    # Another model into the same --OutRoot (as the three models of a confirmation): its one-unit summary goes
    # beside, named by its setting, and neither the 2-run nor the 1-unit summary of the first setting is replaced.
    other = [a if a != '0.125' else '0' for a in argv]
    assert script_training.main(other + ['--Runs', '1']) == 0
    beside = {p.name: json.loads(p.read_text()) for p in (tmp_path / 'out').glob('kdd_summary*.json')}
    assert beside.pop('kdd_summary_1units.json') == one and beside.pop('kdd_summary.json')['f1'] == f1
    (name, nonspar), = beside.items()
    assert name == f"kdd_summary_{nonspar['setting']}.json" and nonspar['setting'] != one['setting']
    assert nonspar['units'] == ['run0'] and name in capsys.readouterr().out
