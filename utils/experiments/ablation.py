"""The paper's ablation study as one command: train and evaluate every variant of one data set, then tabulate.

    python -m utils.experiments.ablation mnist [--variants ...] [--mem-dims 25 50 200] [--runs R] [--out DIR] [FLAGS...]
    bash train.sh ablation_mnist [the same arguments]

Every variant is an experiment of ``utils/experiments/settings.py`` run through ``train.sh`` (and, for video,
``test.sh``), so each row of the table is a command a user can run alone; FLAGS the sweep does not know go to every
one of those commands (e.g. ``--UseCUDA False``). The paper's Table 4 (UCSD Ped2) is the model: full MemAE; without
shrinkage; without the entropy loss; without both (MemAE-nonSpar); the AE; AE-l1; and, ours, the other addressing:
the paper's cosine addressing for video (which follows the released dot product by default), the released dot
product and loss scaling for images and KDDCUP99 (which follow the paper by default).
The memory-size study reruns the full MemAE with other ``--MemDim`` values.

Outputs under ``--out`` (default ``./results/ablation_<data>/``): a folder per variant (its ``train.sh`` outputs,
``log.txt`` and ``command.json``), and ``ablation_<data>.json``, ``ablation_<data>.md`` (variant, metric as
mean +- std over runs, runs, command) and ``ablation_<data>_memdim.png`` (metric against N). A variant whose folder
holds the result of the same command is not run again (``--redo`` reruns it), so an interrupted sweep resumes.

The metric is each experiment's own: frame AUC (video), mean AUC over classes (images), F1 (KDDCUP99).
"""
import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data.registry import DATASETS
from options import TestOptions, TrainOptions
from utils.errors import InputError, run_cli
from utils.files import make_folder, read_json, write_json, write_text, writing
from utils.interrupts import run_child
from utils.experiments.settings import DATA, DATA_NAMES, experiment
from utils.plots import pyplot, save_figure
from utils.progress import PROGRESS_ENV, format_duration, read_progress

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = './dataset/'  # train.sh's and test.sh's default


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    suffix: str                 # experiment name = <data><suffix> (utils/experiments/settings.py)
    paper_ped2: float = None    # the paper's Table 4 AUC on UCSD Ped2, where it reports one
    mem_dim: int = None         # memory-size study: the full MemAE with --MemDim mem_dim ...
    flags: tuple = ()           # ... and these flags (--MemDim, --ShrinkThres)
    families: tuple = ('video', 'image', 'tabular')  # the data families where the variant differs from MemAE


VARIANTS = (
    Variant('memae', 'MemAE', '', 0.9410),
    Variant('noshrink', 'MemAE without shrinkage', '_noshrink', 0.9324),
    Variant('noentropy', 'MemAE without entropy loss', '_noentropy', 0.9372),
    Variant('nonspar', 'MemAE-nonSpar (neither)', '_nonspar'),
    Variant('ae', 'AE', '_ae', 0.9170),
    Variant('ael1', 'AE-l1', '_ael1', 0.9286),
    Variant('cosine', 'MemAE, cosine addressing', '_cosine', families=('video',)),
    Variant('released', 'MemAE, released dot-product addressing and loss scaling', '_released',
            families=('image', 'tabular')),
)
# Memory sizes besides the experiment's own N (video 2000, mnist 100, cifar10 500, kdd 50): the paper's Ped2 range
# (500 too small, 1000-3000 alike) and, elsewhere, a factor of 4 either side. The shrink threshold follows N
# (lambda x N stays the experiment's, as the paper's rule lambda in [1/N, 3/N] asks) unless --fixed-shrink: with
# lambda fixed, a memory whose N exceeds 1/lambda starts with every uniform initial weight below lambda, shrinks
# them all to 0 and never recovers (KDDCUP99, N = 100: F1 0.058).
VIDEO_MEM_DIMS = (500, 1000, 3000)
MEM_DIMS = {'ped2': VIDEO_MEM_DIMS, 'ped1': VIDEO_MEM_DIMS, 'avenue': VIDEO_MEM_DIMS, 'shanghaitech': VIDEO_MEM_DIMS,
            'mnist': (25, 50, 200, 400), 'cifar10': (125, 250, 1000, 2000), 'kdd': (12, 25, 100, 200)}


def memory_variants(mem_dims, default_dim, default_shrink, fixed_shrink, shrink_grid=()):
    """The full MemAE with other memory sizes; lambda (and the experiment's --ShrinkThresGrid, whose values the
    units choose from) scaled to keep lambda x N unless ``fixed_shrink``."""
    variants = []
    for n in (n for n in mem_dims if n != default_dim):
        scale = 1 if fixed_shrink else default_dim / n
        shrink = default_shrink * scale
        grid = ('--ShrinkThresGrid', *(f'{float(value) * scale:.6g}' for value in shrink_grid)) if shrink_grid else ()
        label = f'MemAE, N = {n}' + (f', λ = {shrink:.6g}' if not fixed_shrink else '')
        variants.append(Variant(f'memdim{n}', label, '', mem_dim=n,
                                flags=('--MemDim', str(n), '--ShrinkThres', f'{shrink:.6g}', *grid)))
    return tuple(variants)


def variant_args(variant, runs):
    return [*variant.flags, *(['--Runs', str(runs)] if runs else [])]


def training_only_flags():
    """Flags of script_training.py that script_testing.py refuses."""
    def flags(options):
        return {flag for action in options.parser._actions for flag in action.option_strings}
    return flags(TrainOptions()) - flags(TestOptions())


def without_training_flags(flags):
    """``flags`` less the training-only ones and their values (each takes one), for the ``test.sh`` half of a
    video variant, which gets the sweep's other flags too."""
    training_only = training_only_flags()
    kept, skip = [], False
    for flag in flags:
        if not skip and flag in training_only:
            skip = True
            continue
        if not skip:
            kept.append(flag)
        skip = False
    return kept


def read_result(folder, spec):
    """(mean, std, runs) of the experiment's metric from the outputs of one variant, or None if there are none."""
    if spec.family == 'video':
        found = sorted(folder.glob('res_*/results.json'))
        return (field(read_json(found[0], 'a test result'), found[0], 'metrics', 'auc'), 0.0, 1) if found else None
    path = folder / f'{spec.summary_name}_summary.json'
    if not path.is_file():
        return None
    summary = read_json(path, 'a summary of runs')
    metric = 'f1' if spec.family == 'tabular' else 'auc'
    return field(summary, path, metric, 'mean'), field(summary, path, metric, 'std'), field(summary, path, 'runs')


def field(record, path, *keys):
    """``record[keys[0]][keys[1]]...``; a missing one is one sentence naming the file (written by another
    version, or edited)."""
    for key in keys:
        if not isinstance(record, dict) or key not in record:
            raise InputError(f'{path} lacks {"/".join(keys)}; rerun this variant with --redo')
        record = record[key]
    return record


def same_run(record_file, record):
    """Whether ``record_file`` records the same commands on the same data as ``record``."""
    return record_file.is_file() and all(read_json(record_file, 'the record of a finished variant').get(k) == v
                                         for k, v in record.items())


def run_logged(command, env, log, while_waiting=None):
    with writing(log):
        stream = log.open('a')
        stream.write(f'$ {shlex.join(command)}\n')
        stream.flush()
    with stream:
        code = run_child(command, while_waiting, cwd=REPO, env=env, stdout=stream, stderr=subprocess.STDOUT)
    if code:
        raise InputError(f'`{shlex.join(command)}` failed (exit {code}); its output is in {log}')


def run_variant(data, variant, spec, args, extra, out, watch=None):
    """Train (and, for video, test) one variant unless its folder already holds the result of the same command;
    returns its table row."""
    folder = out / variant.key
    name = f'{data}{variant.suffix}'
    flags = [*variant_args(variant, args.runs), *extra]
    commands = [['bash', 'train.sh', name, *flags]]
    if spec.family == 'video':
        commands.append(['bash', 'test.sh', name, *without_training_flags(flags)])
    record = {'commands': [shlex.join(c) for c in commands], 'DATA_ROOT': os.environ.get('DATA_ROOT')}
    env_vars = {'DATA_ROOT': os.environ.get('DATA_ROOT', DEFAULT_DATA_ROOT), 'OUT_ROOT': str(folder),
                'MODEL_ROOT': str(folder / 'models')}
    done_before = folder / 'command.json'
    result = read_result(folder, spec)
    skipped = not args.redo and result is not None and same_run(done_before, record)
    if not skipped:
        make_folder(folder)
        started = time.perf_counter()
        progress_file = folder / 'progress.json'  # what the training command reports (utils/progress.py)
        progress_file.unlink(missing_ok=True)
        for command in commands:
            run_logged(command, {**os.environ, **env_vars, PROGRESS_ENV: str(progress_file)}, folder / 'log.txt',
                       (lambda: watch(read_progress(progress_file))) if watch else None)
        progress_file.unlink(missing_ok=True)
        write_json(done_before, {**record, 'seconds': time.perf_counter() - started})
        result = read_result(folder, spec)
        if result is None:
            raise InputError(f'{name} finished without a result in {folder}; see {folder / "log.txt"}')
    mean, std, runs = result
    mem_dim = variant.mem_dim or experiment(name).flag('--MemDim')
    # What reruns the row alone, in the repository root: the environment the sweep gave the commands, then them.
    environment = ' '.join(f'{variable}={shlex.quote(value)}' for variable, value in env_vars.items())
    return {'variant': variant.key, 'label': variant.label, 'experiment': name, 'mean': mean, 'std': std,
            'runs': runs, 'mem_dim': int(mem_dim) if mem_dim else None,
            'paper_ped2': variant.paper_ped2, 'commands': [f'{environment} {c}' for c in record['commands']],
            'seconds': read_json(done_before, 'the record of a finished variant').get('seconds'), 'skipped': skipped}


class Progress:
    """Variants done, and an estimate of the time left: the mean time of the variants this sweep ran (not of
    those it skipped) times the number left. While a variant runs, :meth:`watch` shows where its training command
    is (the progress file of utils/progress.py): a line that updates in place on a terminal, else a line per unit."""

    def __init__(self, total, stream=sys.stdout):
        self.total, self.finished, self.ran, self.last = total, 0, [], 0.0
        self.stream, self.started, self.shown, self.shown_unit, self.prefix = stream, 0.0, None, None, ''

    def begin(self, prefix):
        """A variant starts; ``prefix`` (``[3/11] AE``) begins its lines."""
        self.prefix, self.started, self.shown, self.shown_unit = prefix, time.perf_counter(), None, None

    def done(self, seconds, skipped):
        self.finished += 1
        self.last = seconds
        if not skipped:
            self.ran.append(seconds)
        if self.shown is not None and self.stream.isatty():
            print(file=self.stream)  # end the line updated in place

    def eta(self):
        left = self.total - self.finished
        if left == 0:
            return 'sweep complete'
        if not self.ran:
            return f'{left} left'
        return f'{left} left, about {format_duration(left * sum(self.ran) / len(self.ran))} to go'

    def sweep_seconds_left(self, variant_left):
        """The current variant's time left plus the variants after it: each as long as the mean of those run
        so far, or, before any, as this one's estimated total."""
        after = self.total - self.finished - 1
        per_variant = (sum(self.ran) / len(self.ran) if self.ran
                       else time.perf_counter() - self.started + variant_left)
        return variant_left + after * per_variant

    def watch(self, record):
        """Show ``record``, the training command's latest progress (None: nothing reported yet)."""
        if record is None or record.get('seconds_left') is None:
            return
        where = (f"{record['unit']} ({record['units_done']}/{record['units']} done), " if record['units'] > 1
                 else '')
        line = (f"{self.prefix}: {where}epoch {record['epoch']}/{record['epochs']}, about "
                f"{format_duration(record['seconds_left'])} left; sweep about "
                f"{format_duration(self.sweep_seconds_left(record['seconds_left']))} left")
        if self.stream.isatty():
            print(f'\r{line:<{len(self.shown or "")}}', end='', file=self.stream, flush=True)
        elif self.shown is None or record['unit'] != self.shown_unit:
            print(line, file=self.stream, flush=True)
        self.shown, self.shown_unit = line, record['unit']


def format_metric(row):
    return f"{row['mean']:.4f} ± {row['std']:.4f}" if row['runs'] > 1 else f"{row['mean']:.4f}"


def markdown_table(data, metric, rows):
    lines = [f'| variant ({data}) | {metric} | runs | paper, Ped2 (Table 4) | command |',
             '| --- | --- | --- | --- | --- |']
    for row in rows:
        paper = f"{row['paper_ped2']:.4f}" if row['paper_ped2'] else '—'
        command = '; '.join(f'`{c}`' for c in row['commands'])
        lines.append(f"| {row['label']} | {format_metric(row)} | {row['runs']} | {paper} | {command} |")
    return '\n'.join(lines) + '\n'


def plot_memory_sizes(data, metric, rows, path, fixed_shrink=False):
    """The metric (mean +- std over runs) against the memory size N, log-scaled."""
    plt = pyplot()
    points = sorted((row['mem_dim'], row['mean'], row['std'] or 0.0) for row in rows
                    if row['variant'] == 'memae' or row['variant'].startswith('memdim'))
    if len(points) < 2:
        return None
    sizes, means, stds = zip(*points)
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.errorbar(sizes, means, yerr=stds, marker='o', capsize=3)
    axis.set_xscale('log')
    axis.minorticks_off()  # the log axis' minor labels would overprint the sizes
    axis.set_xticks(sizes, [str(n) for n in sizes])
    axis.set_xlabel('memory size N (slots)')
    axis.set_ylabel(metric)
    axis.set_title(f'{data}: MemAE {metric} against memory size (λ·N fixed)' if not fixed_shrink
                   else f'{data}: MemAE {metric} against memory size (λ fixed)')
    axis.grid(alpha=0.3)
    save_figure(plt, figure, path, dpi=120)
    return path


def mem_dim_arg(value):
    """A memory size of ``--mem-dims``, or None for the word none."""
    if value.lower() == 'none':
        return None
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'a memory size (a whole number) or none expected, got {value!r}') from None
    if size < 1:
        raise argparse.ArgumentTypeError(f'a memory size must be at least 1, got {size}')
    return size


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], allow_abbrev=False)
    parser.add_argument('data', choices=DATA_NAMES)
    parser.add_argument('--variants', nargs='*', choices=[v.key for v in VARIANTS], default=None,
                        help='the variants to run (default: all)')
    parser.add_argument('--mem-dims', nargs='*', type=mem_dim_arg, default=None,
                        help='memory sizes N for the memory-size study (default: per data set); "none" or no value: '
                             'no study')
    parser.add_argument('--fixed-shrink', action='store_true',
                        help="memory-size study: keep the experiment's --ShrinkThres for every N (default: scale it "
                             'with 1/N)')
    parser.add_argument('--runs', type=int, default=None,
                        help="image and KDD experiments: runs (seeds) per variant (default: the experiment's own)")
    parser.add_argument('--out', type=Path, default=None, help='output folder (default ./results/ablation_<data>/)')
    parser.add_argument('--redo', action='store_true', help='rerun variants that already have a result')
    args, extra = parser.parse_known_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error(f'--runs must be at least 1, got {args.runs}')
    if args.mem_dims is not None:
        args.mem_dims = [n for n in args.mem_dims if n is not None]
    return args, extra


def main(argv=None):
    args, extra = parse_args(argv)
    data = args.data
    memae = experiment(data)
    dataset = memae.dataset
    spec = DATASETS[dataset]
    metric = {'video': 'frame AUC', 'image': 'AUC', 'tabular': 'F1'}[spec.family]
    default_dim = int(memae.flag('--MemDim'))
    default_shrink = float(memae.flag('--ShrinkThres'))
    chosen = [v for v in VARIANTS if spec.family in v.families and (args.variants is None or v.key in args.variants)]
    mem_dims = MEM_DIMS[data] if args.mem_dims is None else args.mem_dims
    variants = [*chosen, *memory_variants(mem_dims, default_dim, default_shrink, args.fixed_shrink,
                                          DATA[data].shrink_grid)]
    out = args.out or Path('results') / f'ablation_{data}'
    make_folder(out)
    rows, progress = [], Progress(len(variants))
    for i, variant in enumerate(variants, 1):
        print(f'[{i}/{len(variants)}] {variant.label}: running (output in {out / variant.key / "log.txt"}) ...',
              flush=True)
        progress.begin(f'[{i}/{len(variants)}] {variant.label}')
        rows.append(run_variant(data, variant, spec, args, extra, out, progress.watch))
        progress.done(time.perf_counter() - progress.started, rows[-1]['skipped'])
        state = 'skipped (done)' if rows[-1]['skipped'] else f'done in {format_duration(progress.last)}'
        print(f'[{i}/{len(variants)}] {variant.label}: {metric} {format_metric(rows[-1])}, {state}; '
              f'{progress.eta()}', flush=True)
    summary = {'data': data, 'dataset': dataset, 'metric': metric, 'extra_flags': extra, 'rows': rows}
    write_json(out / f'ablation_{data}.json', summary)
    write_text(out / f'ablation_{data}.md', markdown_table(data, metric, rows))
    plot = plot_memory_sizes(data, metric, rows, out / f'ablation_{data}_memdim.png', args.fixed_shrink)
    print(markdown_table(data, metric, rows))
    print(f'-> {out / f"ablation_{data}.json"}, {out / f"ablation_{data}.md"}' + (f', {plot}' if plot else ''))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main, interrupted='finished variants are kept; the same command reruns the '
                              'interrupted variant and those after it'))
