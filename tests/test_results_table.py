"""utils/experiments/results_table.py: the results tables of README.md and docs/REPRODUCTION.md are computed from
the committed result folders, each statistic re-derived here independently (per-seed means by hand, the interval
from scipy's t.interval rather than the quantile the program uses), and a folder is collected from a real run."""
import json

import numpy as np
import pytest
from scipy import stats

import script_training
from synthetic import make_kdd
from utils.errors import InputError, run_cli
from utils.experiments import results_table
from utils.experiments.settings import PAPER_RESULTS

SEEDS = (1001, 1002, 1003)


def write_folder(folder, results):
    """A committed result folder as --collect writes it: the unit results, a summary listing them, the options."""
    folder.mkdir(parents=True)
    for result in results:
        (folder / f'{result["unit"]}.json').write_text(json.dumps(result))
    (folder / 'summary.json').write_text(json.dumps({'units': [r['unit'] for r in results]}))
    (folder / 'opt.json').write_text('{}')


def image_units(values_by_seed):
    """MNIST unit results: ``values_by_seed[i][c]`` the AUC of class c under seed SEEDS[i]."""
    return [{'unit': f'class{c}_run{i}', 'seed': seed, 'normal_class': c, 'dataset': 'MNIST', 'metrics': {'auc': v},
             'protocol': 'one-class', 'test_samples': 100, 'test_anomalies': 30}
            for i, (seed, values) in enumerate(zip(SEEDS, values_by_seed)) for c, v in enumerate(values)]


def expected_text(per_seed):
    mean, std = np.mean(per_seed), np.std(per_seed, ddof=1)
    low, high = stats.t.interval(0.95, len(per_seed) - 1, loc=mean, scale=std / np.sqrt(len(per_seed)))
    return f'{mean:.4f} ± {std:.4f} [{low:.4f}, {high:.4f}]'


def table_rows(markdown):
    """The rows of a markdown table as lists of cells."""
    return [[cell.strip() for cell in line.strip('|').split('|')] for line in markdown.splitlines()[2:]]


def rows_of(rows, data):
    """The rows of one data set (its first row names it; the others leave the cell empty)."""
    start = next(i for i, row in enumerate(rows) if row[0] == data)
    return rows[start:start + 3]


@pytest.fixture
def mnist_root(tmp_path):
    """MNIST results of the three models: the MemAE around the paper's value, the AE below it, the nonSpar above."""
    rng = np.random.default_rng(0)
    values = {'MemAE': 0.9751 + rng.normal(0, 0.01, (3, 10)), 'AE': 0.90 + rng.normal(0, 0.003, (3, 10)),
              'MemAE-nonSpar': 0.99 + rng.normal(0, 0.001, (3, 10))}
    for model, folder in (('MemAE', 'mnist'), ('AE', 'mnist_ae'), ('MemAE-nonSpar', 'mnist_nonspar')):
        write_folder(tmp_path / folder, image_units(values[model]))
    return tmp_path, values


def test_image_rows_are_means_over_seeds_of_the_class_means_with_the_registered_verdict(mnist_root):
    root, values = mnist_root
    generated = results_table.tables(root)
    memae, nonspar, ae = rows_of(table_rows(generated['numbers']), 'MNIST (AUC, mean over 10 classes)')
    for row, model in ((memae, 'MemAE'), (nonspar, 'MemAE-nonSpar'), (ae, 'AE')):
        assert row[1] == model and row[2] == f'{PAPER_RESULTS["MNIST", model]:.4f}'
        assert row[3] == expected_text(values[model].mean(axis=1)) and row[4] == '3 seeds'
    assert memae[5] == '**reproduced**'
    assert ae[5] == f'**below** (by {0.9619 - values["AE"].mean():.4f})'
    assert nonspar[5] == f'**above** (by {values["MemAE-nonSpar"].mean() - 0.9725:.4f})'
    assert memae[6] == '0.9502 ± 0.0041'  # the exploration number stays beside it
    # the groups without files read "running"
    cifar = rows_of(table_rows(generated['numbers']), 'CIFAR-10, pooled protocol on the 10k test split (AUC)')
    assert [row[3] for row in cifar] == ['running'] * 3


def test_paired_rows_pair_by_seed_and_read_only_intervals_that_exclude_zero(mnist_root):
    root, values = mnist_root
    ae_row, nonspar_row = table_rows(results_table.tables(root)['paired'])[:2]
    differences = (values['AE'] - values['MemAE']).mean(axis=1)
    mean, std = differences.mean(), differences.std(ddof=1)
    low, high = stats.t.interval(0.95, 2, loc=mean, scale=std / np.sqrt(3))
    assert ae_row[1:] == ['AE − MemAE', f'{mean:+.4f} [{low:+.4f}, {high:+.4f}]', '3 seeds', 'MemAE beats AE']
    assert nonspar_row[4] == 'MemAE-nonSpar beats MemAE'
    # a difference whose interval holds 0 is not read as a win
    (root / 'mnist_ae').rename(root / 'moved')
    spread = values['MemAE'] + np.array([[0.01], [-0.01], [0.002]])
    write_folder(root / 'mnist_ae', image_units(spread))
    assert table_rows(results_table.tables(root)['paired'])[0][4] == 'not resolved (the interval holds 0)'


def test_units_that_do_not_pair_or_a_missing_unit_are_refused(mnist_root):
    root, values = mnist_root
    ae = image_units(values['AE'])
    ae[0]['seed'] = 7
    (root / 'mnist_ae' / 'class0_run0.json').write_text(json.dumps(ae[0]))
    with pytest.raises(InputError, match='class0_run0 used seed 1001 in one folder and 7'):
        results_table.tables(root)
    (root / 'mnist_ae' / 'class0_run0.json').unlink()  # the summary still lists it
    with pytest.raises(InputError, match='lists other units than the 29 unit results'):
        results_table.tables(root)


def train_kdd(tmp_path):
    make_kdd(tmp_path / 'data', num_rows=600)
    out = tmp_path / 'out'
    assert run_cli(script_training.main, [
        '--Dataset', 'KDDCUP99', '--Runs', '3', '--EpochNum', '2', '--BatchSize', '64', '--MemDim', '10',
        '--ShrinkThres', '0.1', '--UseCUDA', 'False', '--IsTbLog', 'False', '--EarlyStopping', 'True',
        '--DataRoot', str(tmp_path / 'data'), '--ModelRoot', str(out), '--OutRoot', str(out)]) == 0
    return next(out.glob('res_*'))


def test_machine_paths_are_cut_to_their_last_part_whole_or_inside_a_text():
    result = {'weights': '/home/me/models/unit.pt', 'source': 'MNIST IDX files in /data/sets/mnist',
              'protocol': 'train 2/3, test 1/3 / 30 %', 'losses': [1.5, '/tmp/x'], 'relative': 'results/a.pt'}
    assert results_table.machine_free(result) == {
        'weights': 'unit.pt', 'source': 'MNIST IDX files in mnist', 'protocol': 'train 2/3, test 1/3 / 30 %',
        'losses': [1.5, 'x'], 'relative': 'results/a.pt'}


def test_a_finished_run_is_collected_without_scores_or_machine_paths_and_feeds_its_row(tmp_path):
    source = train_kdd(tmp_path)
    root = tmp_path / 'committed'
    results_table.collect('kdd', source, root)
    committed = root / 'kdd'
    assert sorted(path.name for path in committed.iterdir()) == ['opt.json', 'run0.json', 'run1.json',
                                                                  'run2.json', 'summary.json']
    assert [path.name for path in root.iterdir()] == ['kdd']  # the partial copy was renamed
    assert not any(str(tmp_path) in path.read_text() for path in committed.iterdir())
    originals = {path.stem: json.loads(path.read_text()) for path in source.glob('run?.json')}
    f1 = [originals[f'run{r}']['metrics']['f1'] for r in range(3)]
    row = rows_of(table_rows(results_table.tables(root)['numbers']),
                  'KDDCUP99, `dagmm`, the primary protocol (F1)')[0]
    assert row[3:5] == [expected_text(f1), '3 runs']
    run0 = json.loads((committed / 'run0.json').read_text())
    assert run0['weights'] == originals['run0']['weights'].rsplit('/', 1)[1]
    assert run0['choice']['chosen_epoch'] == originals['run0']['validation']['chosen_epoch']  # on record
    with pytest.raises(InputError, match='exists: a committed result is replaced only on purpose'):
        results_table.collect('kdd', source, root)
    with pytest.raises(InputError, match='--collect kdd_cosine: the tables read none such; valid: mnist '):
        results_table.collect('kdd_cosine', source, root)
    (source / 'summary.json').unlink()
    with pytest.raises(InputError, match='has no summary.json: the run has not finished'):
        results_table.collect('kdd_ae', source, root)


def copy_docs(tmp_path):
    for doc in results_table.DOC_TABLES:
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / doc).write_text((results_table.REPO / doc).read_text())


def test_check_names_a_doc_whose_table_differs_and_write_mends_it(mnist_root, tmp_path, capsys):
    root, _ = mnist_root
    repo = tmp_path / 'repo'
    copy_docs(repo)
    generated = results_table.tables(root)  # the MNIST rows now hold numbers the docs lack
    assert results_table.check_or_write(generated, write=False, repo=repo) == list(results_table.DOC_TABLES)
    assert '+| MNIST (AUC, mean over 10 classes) | MemAE | 0.9751 | 0.97' in capsys.readouterr().err
    assert results_table.check_or_write(generated, write=True, repo=repo) == list(results_table.DOC_TABLES)
    assert results_table.check_or_write(generated, write=False, repo=repo) == []
    assert generated['paired'] not in (repo / 'README.md').read_text()  # the README shows only the numbers
    assert generated['paired'] in (repo / 'docs' / 'REPRODUCTION.md').read_text()
    reproduction, readme = repo / 'docs' / 'REPRODUCTION.md', repo / 'README.md'
    stale = readme.read_text().replace('| MNIST (AUC', '| MNIST  (AUC', 1)
    readme.write_text(stale)
    reproduction.write_text(reproduction.read_text().replace(results_table.marker('paired', end=True), ''))
    with pytest.raises(InputError, match='REPRODUCTION.md lacks the markers of the paired table'):
        results_table.check_or_write(generated, write=True, repo=repo)
    assert readme.read_text() == stale  # nothing is written while a doc fails, not even the docs before it
