"""utils/experiments/paired.py: B - A paired by unit and by seed, with the sample std and t-based interval."""
import json

import numpy as np
import pytest
from scipy import stats

from utils.errors import run_cli
from utils.experiments import paired


def write_units(folder, f1s, seeds=None):
    folder.mkdir()
    for r, f1 in enumerate(f1s):
        (folder / f'run{r}.json').write_text(json.dumps({'unit': f'run{r}', 'seed': (seeds or range(1, 99))[r],
                                                         'metrics': {'f1': f1, 'precision': 0.5}}))
    (folder / 'summary.json').write_text(json.dumps({'f1': {'mean': 0}}))


def test_the_difference_is_paired_by_unit(tmp_path, capsys):
    a, b = [0.90, 0.92, 0.91, 0.95], [0.91, 0.94, 0.915, 0.96]
    write_units(tmp_path / 'a', a)
    write_units(tmp_path / 'b', b)
    assert run_cli(paired.main, [str(tmp_path / 'a'), str(tmp_path / 'b')]) == 0
    out = json.loads(capsys.readouterr().out)
    d = np.subtract(b, a)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert out['metric'] == 'f1' and out['b_minus_a']['n'] == 4
    assert out['b_minus_a']['mean'] == pytest.approx(d.mean())
    assert out['b_minus_a']['std'] == pytest.approx(d.std(ddof=1))
    assert out['b_minus_a']['ci95'] == pytest.approx([d.mean() - half, d.mean() + half])
    # unpaired, the spread between units would hide what pairing shows: the interval excludes 0
    assert out['b_minus_a']['ci95'][0] > 0


def test_units_of_other_seeds_do_not_pair(tmp_path, capsys):
    write_units(tmp_path / 'a', [0.9, 0.9])
    write_units(tmp_path / 'b', [0.9, 0.9], seeds=[1, 5])
    assert run_cli(paired.main, [str(tmp_path / 'a'), str(tmp_path / 'b')]) == 2
    assert 'run1 used seed 2 in one folder and 5 in the other' in capsys.readouterr().err


def test_a_folder_without_units_is_one_sentence(tmp_path, capsys):
    write_units(tmp_path / 'a', [0.9])
    (tmp_path / 'empty').mkdir()
    assert run_cli(paired.main, [str(tmp_path / 'a'), str(tmp_path / 'empty')]) == 2
    assert 'holds no unit results' in capsys.readouterr().err
    assert run_cli(paired.main, [str(tmp_path / 'a'), str(tmp_path / 'a'), '--Metric', 'auc']) == 2
    assert "run0 has no metric 'auc'" in capsys.readouterr().err


def test_image_units_are_also_paired_by_seed(tmp_path, capsys):
    """Images: each seed's mean difference over its classes, then mean, sample std and t interval over seeds."""
    a = np.array([[0.60, 0.70, 0.62], [0.71, 0.58, 0.69], [0.50, 0.52, 0.55]])  # [class, run]; run r: seed 1 + r
    d = np.array([[0.05, 0.00, 0.04], [0.03, 0.02, 0.00], [0.01, 0.04, 0.03]])
    for name, aucs in (('a', a), ('b', a + d)):
        (tmp_path / name).mkdir()
        for (c, r), auc in np.ndenumerate(aucs):
            (tmp_path / name / f'class{c}_run{r}.json').write_text(json.dumps(
                {'unit': f'class{c}_run{r}', 'seed': 1 + r, 'metrics': {'auc': auc}}))
    assert run_cli(paired.main, [str(tmp_path / 'a'), str(tmp_path / 'b')]) == 0
    out = json.loads(capsys.readouterr().out)
    seeds = np.array([(0.05 + 0.03 + 0.01) / 3, (0.00 + 0.02 + 0.04) / 3, (0.04 + 0.00 + 0.03) / 3])
    assert list(out['per_seed']) == ['1', '2', '3'] and out['b_minus_a_by_seed']['n'] == 3
    assert list(out['per_seed'].values()) == pytest.approx(list(seeds))
    half = stats.t.ppf(0.975, 2) * seeds.std(ddof=1) / 3 ** 0.5
    assert out['b_minus_a_by_seed']['mean'] == pytest.approx(seeds.mean())
    assert out['b_minus_a_by_seed']['ci95'] == pytest.approx([seeds.mean() - half, seeds.mean() + half])
    assert out['b_minus_a']['n'] == 9


def test_results_of_another_data_set_or_a_damaged_result_do_not_pair(tmp_path, capsys):
    write_units(tmp_path / 'a', [0.9, 0.8])
    write_units(tmp_path / 'b', [0.9, 0.8])
    for folder, dataset in (('a', 'MNIST'), ('b', 'FashionMNIST')):  # same unit names, same seeds
        for path in (tmp_path / folder).glob('run*.json'):
            path.write_text(json.dumps({**json.loads(path.read_text()), 'dataset': dataset}))
    assert run_cli(paired.main, [str(tmp_path / 'a'), str(tmp_path / 'b')]) == 2
    assert "run0 was tested on other data in the two folders (dataset 'MNIST' against 'FashionMNIST')" in \
        capsys.readouterr().err
    result = tmp_path / 'b' / 'run1.json'
    result.write_text(json.dumps({'unit': 'run1', 'metrics': {'f1': 0.9}}))  # no seed
    assert run_cli(paired.main, [str(tmp_path / 'a'), str(tmp_path / 'b')]) == 2
    assert f'{result} is damaged: no whole-number "seed"' in capsys.readouterr().err
    result.write_text(json.dumps({'unit': 'run1', 'seed': 2, 'metrics': {'f1': float('nan')}}))
    assert run_cli(paired.main, [str(tmp_path / 'a'), str(tmp_path / 'b')]) == 2
    assert '"metrics" holds something other than finite numbers' in capsys.readouterr().err
