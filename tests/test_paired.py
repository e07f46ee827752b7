"""utils/experiments/paired.py: B - A paired by unit, with the sample std and t-based interval."""
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
