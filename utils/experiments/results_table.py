"""The results tables of README.md and docs/REPRODUCTION.md, recomputed from the result files committed here.

    python -m utils.experiments.results_table --collect NAME ./results/res_<setting>/   # commit one run's results
    python -m utils.experiments.results_table             # print the two tables
    python -m utils.experiments.results_table --check     # fail where README.md or docs/REPRODUCTION.md differ
    python -m utils.experiments.results_table --write     # write them into both files

A committed result is a folder ``memae_models/results/<NAME>/``, NAME the experiment (``bash train.sh NAME``),
with ``_dagmm_reimpl`` for the same weights re-tested under that protocol. It holds what the run wrote to
``res_<setting>/`` but the scores: every unit's result (``<unit>.json``: metrics, seed, test data, the epoch and
candidate it chose), the run's ``summary.json`` (written when every unit had finished; it lists them, so a folder
that lacks one is refused) and ``opt.json`` (every option); paths of the machine that ran it are cut to their
last part. Which folder feeds which row, the paper's numbers and the exploration numbers the rows replace are
:data:`GROUPS`; a row whose folder is not here yet reads "running" (docs/CONFIRMATION.md registers the runs).

Each row: the mean over seeds (images: first the mean over the ten classes of a seed) or runs (KDDCUP99: one per
random split), its sample standard deviation (ddof 1), t-based 95 % interval and n, and the verdict registered
in docs/CONFIRMATION.md: *reproduced* where the paper's value lies inside the interval, *above* or *below* where
the whole interval lies on one side. The second table pairs the models by seed or split (utils/experiments/
paired.py): "A beats B" only where the interval of the difference excludes 0.
"""
import argparse
import difflib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from utils.errors import InputError, run_cli
from utils.experiments.paired import means_by_seed, metric_values, paired_differences, unit_results
from utils.experiments.settings import PAPER_RESULTS
from utils.files import make_folder, read_json, write_json, write_text
from utils.stats import mean_std

REPO = Path(__file__).resolve().parents[2]
RESULTS_ROOT = REPO / 'memae_models' / 'results'
DOC_TABLES = {'README.md': ('numbers',), 'docs/REPRODUCTION.md': ('numbers', 'paired')}  # which doc shows which
MODELS = ('MemAE', 'MemAE-nonSpar', 'AE')
FOLDER_SUFFIX = {'MemAE': '', 'MemAE-nonSpar': '_nonspar', 'AE': '_ae'}


@dataclass(frozen=True)
class Group:
    """The rows of one data set and protocol: a row per model, its committed folder ``<experiment><model
    suffix><protocol suffix>``."""
    data: str          # the first column: data set (metric)
    dataset: str       # --Dataset, which keys the paper's numbers
    experiment: str    # train.sh's name of the MemAE
    metric: str        # the unit results' metric
    counted: str       # what n counts: 'seeds' (ten classes each) or 'runs'
    exploration: tuple  # the exploration numbers, MemAE / MemAE-nonSpar / AE (docs/TEST_LOOKS.md)
    protocol_suffix: str = ''

    def folder(self, model):
        return f'{self.experiment}{FOLDER_SUFFIX[model]}{self.protocol_suffix}'


GROUPS = (
    Group('MNIST (AUC, mean over 10 classes)', 'MNIST', 'mnist', 'auc', 'seeds',
          ('0.9502 ± 0.0041', '0.8096 ± 0.0168', '0.8862 ± 0.0099')),
    Group('CIFAR-10, pooled protocol on the 10k test split (AUC)', 'CIFAR10', 'cifar10', 'auc', 'seeds',
          ('0.6213 ± 0.0055', '0.6156 ± 0.0163', '0.6070 ± 0.0095')),
    Group('KDDCUP99, `dagmm`, the primary protocol (F1)', 'KDDCUP99', 'kdd', 'f1', 'runs',
          ('0.9441 ± 0.0015', '0.9433 ± 0.0015', '0.9450 ± 0.0017')),
    Group('KDDCUP99, `dagmm_reimpl` (F1)', 'KDDCUP99', 'kdd', 'f1', 'runs',
          ('0.9577 ± 0.0011', '0.9570 ± 0.0007', '0.9583 ± 0.0009'), '_dagmm_reimpl'),
)
NOT_ON_GPU = 'not measured: GPU work, and no GPU has been lent since the job was ready; no authors\' weights here'
# The video rows: nothing of them is measured in the paper's setting yet (docs/REPRODUCTION.md says why)
VIDEO_ROWS = (
    ('UCSD Ped2 (frame AUC)', 'MemAE', '0.9410', 'not measured', '', NOT_ON_GPU, '—'),
    ('', 'MemAE-nonSpar', '0.9290', 'not measured', '', 'as above', '—'),
    ('', 'AE (3-D conv.)', '0.9170', 'not measured', '', 'as above', '—'),
    ('UCSD Ped2, Table 4 (frame AUC)', 'no shrinkage / no entropy loss / AE-ℓ1', '0.9324 / 0.9372 / 0.9286',
     'not measured', '', 'as above; measured on MNIST and KDDCUP99 instead (docs/ABLATIONS.md)', '—'),
    ('UCSD Ped2 at 64 x 64, 3 epochs on a CPU (frame AUC)', 'MemAE', '—', 'not measured', '',
     'not the paper\'s setting: a pipeline check', '0.7856 (1 run)'),
    ('UCSD Ped1', '—', 'not reported', '—', '', 'the paper gives no Ped1 number', '—'),
    ('CUHK Avenue (frame AUC)', 'MemAE / MemAE-nonSpar / AE', '0.833 / 0.821 / 0.771', 'not measured', '',
     'not measured: the data are not here', '—'),
    ('ShanghaiTech (frame AUC)', 'MemAE / MemAE-nonSpar / AE', '0.712 / 0.688 / 0.697', 'not measured', '',
     'as above', '—'),
)
NUMBERS_HEADER = ('data (metric)', 'model', 'paper', 'ours: confirmation, mean ± std [95 % interval]', 'n',
                  'verdict', 'exploration (docs/TEST_LOOKS.md)')
PAIRED_HEADER = ('data (metric)', 'difference, paired by seed (images) or split (KDDCUP99)', 'mean [95 % interval]',
                 'n', 'reading')
RUNNING = 'running'


def machine_free(value):
    """``value`` (a JSON value) with every absolute path cut to its last part, a whole string or a word of a text
    (an image run's data source reads "MNIST IDX files in <folder>"): where the run's files lay on its machine says
    nothing about the result."""
    if isinstance(value, dict):
        return {key: machine_free(item) for key, item in value.items()}
    if isinstance(value, list):
        return [machine_free(item) for item in value]
    if isinstance(value, str):
        if Path(value).is_absolute():
            return Path(value).name
        return ' '.join(Path(word).name if word.startswith('/') and len(word) > 1 else word
                        for word in value.split(' '))
    return value


def finished_units(folder):
    """(unit name -> result, summary) of a finished run's folder (a ``res_<setting>/`` or a committed copy);
    refused unless its summary lists exactly the units it holds."""
    results = unit_results(folder)
    summary_path = Path(folder) / 'summary.json'
    if not summary_path.is_file():
        raise InputError(f'{folder} has no summary.json: the run has not finished (rerun it with --Resume auto)')
    summary = read_json(summary_path, 'the summary of a run')
    listed = summary.get('units')
    if not isinstance(listed, list) or sorted(listed) != sorted(results):
        raise InputError(f'{summary_path} lists other units than the {len(results)} unit results beside it: '
                         f'collect the whole folder of one finished run')
    return results, summary


def collected_names():
    """Every folder name the tables read."""
    return [group.folder(model) for group in GROUPS for model in MODELS]


def collect(name, source, root=RESULTS_ROOT):
    """Copy a finished run's results (not its scores) from ``source`` to ``root/name``."""
    if name not in collected_names():
        raise InputError(f'--collect {name}: the tables read none such; valid: {" ".join(collected_names())}')
    results, summary = finished_units(source)
    target = Path(root) / name
    if target.exists():
        raise InputError(f'{target} exists: a committed result is replaced only on purpose (delete it first)')
    partial = target.with_name(f'.{name}.partial')  # renamed when whole: an interrupted copy is never a result
    shutil.rmtree(partial, ignore_errors=True)
    make_folder(partial)
    for unit, result in results.items():
        write_json(partial / f'{unit}.json', machine_free(result))
    write_json(partial / 'summary.json', machine_free(summary))
    write_json(partial / 'opt.json', machine_free(read_json(Path(source) / 'opt.json', 'the options of a run')))
    partial.rename(target)
    print(f'{len(results)} unit results -> {target}')


def per_seed_values(results, metric):
    """The metric's mean over each seed's units (images: its ten classes; KDDCUP99: its one run)."""
    return list(means_by_seed(metric_values(results, metric), results).values())


def interval_text(stats, signed=False):
    number = '{:+.4f}' if signed else '{:.4f}'
    if stats['ci95'] is None:
        return number.format(stats['mean'])
    low, high = (number.format(bound) for bound in stats['ci95'])
    spread = '' if signed else f' ± {stats["std"]:.4f}'
    return f'{number.format(stats["mean"])}{spread} [{low}, {high}]'


def verdict(stats, paper):
    """The registered verdict of our interval against the paper's value."""
    if stats['ci95'] is None:
        return 'no interval from one value'
    low, high = stats['ci95']
    if high < paper:
        return f'**below** (by {paper - stats["mean"]:.4f})'
    if low > paper:
        return f'**above** (by {stats["mean"] - paper:.4f})'
    return '**reproduced**'


def load_group(group, root):
    """model -> unit results of the group's committed folders (absent ones left out)."""
    return {model: finished_units(root / group.folder(model))[0] for model in MODELS
            if (root / group.folder(model)).is_dir()}


def number_rows(group, loaded):
    rows = []
    for i, (model, exploration) in enumerate(zip(MODELS, group.exploration)):
        paper = PAPER_RESULTS[group.dataset, model]
        first = group.data if i == 0 else ''
        if model not in loaded:
            rows.append((first, model, f'{paper:.4f}', RUNNING, '', 'not measured yet', exploration))
            continue
        stats = mean_std(per_seed_values(loaded[model], group.metric))
        rows.append((first, model, f'{paper:.4f}', interval_text(stats), f'{stats["n"]} {group.counted}',
                     verdict(stats, paper), exploration))
    return rows


def paired_rows(group, loaded):
    """AE - MemAE and MemAE-nonSpar - MemAE, paired by seed or split."""
    rows = []
    for i, other in enumerate(('AE', 'MemAE-nonSpar')):
        first = group.data if i == 0 else ''
        if 'MemAE' not in loaded or other not in loaded:
            rows.append((first, f'{other} − MemAE', RUNNING, '', ''))
            continue
        memae = loaded['MemAE']
        differences = means_by_seed(paired_differences(memae, loaded[other], group.metric), memae)
        stats = mean_std(list(differences.values()))
        rows.append((first, f'{other} − MemAE', interval_text(stats, signed=True), f'{stats["n"]} {group.counted}',
                     reading(stats, other)))
    return rows


def reading(stats, other):
    if stats['ci95'] is None:
        return 'no interval from one value'
    low, high = stats['ci95']
    if low > 0:
        return f'{other} beats MemAE'
    if high < 0:
        return f'MemAE beats {other}'
    return 'not resolved (the interval holds 0)'


def markdown(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join('---' for _ in header) + ' |']
    return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in rows])


def tables(root=RESULTS_ROOT):
    """{'numbers': every paper number beside ours, 'paired': the paired comparisons}, as markdown."""
    root = Path(root)
    numbers, paired = list(VIDEO_ROWS), []
    for group in GROUPS:
        loaded = load_group(group, root)
        numbers += number_rows(group, loaded)
        paired += paired_rows(group, loaded)
    return {'numbers': markdown(NUMBERS_HEADER, numbers), 'paired': markdown(PAIRED_HEADER, paired)}


def marker(name, end=False):
    return f'<!-- results_table {name} {"end" if end else "begin"}: python -m utils.experiments.results_table -->'


def with_tables(text, generated, names, where):
    """``text`` with the tables ``names`` between their markers replaced by ``generated``'s."""
    for name in names:
        table = generated[name]
        begin, end = marker(name), marker(name, end=True)
        if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
            raise InputError(f'{where} lacks the markers of the {name} table (one "{begin}" line, then one '
                             f'"{end}" line)')
        head, rest = text.split(begin + '\n')
        _, tail = rest.split(end)
        text = f'{head}{begin}\n{table}\n{end}{tail}'
    return text


def check_or_write(generated, write, repo=REPO):
    """Compare (or, with ``write``, update) the tables of README.md and docs/REPRODUCTION.md; returns the names
    of the files that differ (before writing)."""
    texts = {doc: (Path(repo) / doc).read_text() for doc in DOC_TABLES}
    wanted = {doc: with_tables(text, generated, DOC_TABLES[doc], doc) for doc, text in texts.items()}  # all, first
    differing = [doc for doc in DOC_TABLES if wanted[doc] != texts[doc]]
    for doc in differing:
        if write:
            write_text(Path(repo) / doc, wanted[doc])
        else:
            sys.stderr.writelines(difflib.unified_diff(texts[doc].splitlines(True), wanted[doc].splitlines(True), doc,
                                                       f'{doc} from the result files', n=0))
    return differing


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument('--collect', nargs=2, metavar=('NAME', 'RESULT_FOLDER'),
                        help='copy a finished run\'s results (res_<setting>/, no scores) to memae_models/results/NAME/')
    action.add_argument('--check', action='store_true', help='exit 1 where a doc\'s tables differ from the files')
    action.add_argument('--write', action='store_true', help='write the tables into README.md and REPRODUCTION.md')
    args = parser.parse_args(argv)
    if args.collect:
        collect(args.collect[0], Path(args.collect[1]))
        return 0
    generated = tables()
    if not (args.check or args.write):
        print(f'{generated["numbers"]}\n\n{generated["paired"]}')
        return 0
    differing = check_or_write(generated, args.write)
    if args.write:
        print(f'rewrote the tables of {", ".join(differing)}' if differing else 'the tables were up to date')
        return 0
    if differing:
        print(f'the results tables of {" and ".join(differing)} differ from the result files in memae_models/'
              f'results/ (the diff above): run python -m utils.experiments.results_table --write', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
