"""Compare validation runs of one image experiment that differ in one factor: a sensitivity table on validation data.

    python -m utils.experiments.sensitivity ./results/validation/*.json --Epochs 20 --Out ./results/sensitivity.json

Each input is a file the validation program wrote (``python -m utils.experiments.validation mnist_ae --Epochs 20
--ScoreType mse l2 [--ImageFirstKernel 3 ...]``). Every curve (a file's score, per learning rate, lambda and
temperature) is cut to its first ``--Epochs`` epochs (default: the shortest file's), so that every row had the same
training budget; its epoch is chosen as the validation program chooses it (the best mean over units, averaged over
``--Window`` epochs either side). A row is compared with its *reference*: the curve of the same experiment trained
without extra flags and scored by its own default score (``--ReferenceScore``), at each one's chosen epoch, paired by
unit (class): the mean difference over the units with its sample std and t-based 95 % interval. That interval is
over classes of one seed: it says how consistently a factor moves the classes, not how much it would move with
another seed. ``edge`` marks a chosen epoch within ``--Window`` of the budget's end, where the curve may still rise.

Prints a Markdown table; writes ``--Out`` (every row with its per-unit values) and a figure of the curves beside it.
Only validation data enter: the inputs hold no test number.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from utils.errors import InputError, run_cli
from utils.experiments.validation import group_rows
from utils.files import make_folder, read_json, write_json
from utils.one_class import smoothed_curve
from utils.plots import pyplot, save_figure
from utils.stats import mean_std


def validation_curves(path):
    """(experiment, flags, score, lr, shrink, temperature) -> {unit: per-epoch metric} of a validation file."""
    table = read_json(path, 'a file of the validation program')
    if 'rows' not in table or 'experiment' not in table:
        raise InputError(f'{path} is not a file of the validation program (it has no rows)')
    curves = {}
    for (lr, shrink, temperature, score), rows in group_rows(table['rows']).items():
        units = rows[0]['per_unit']
        key = (table['experiment'], ' '.join(table.get('flags', [])), score, lr, shrink, temperature)
        curves[key] = {unit: [row['per_unit'][unit] for row in rows] for unit in units}
    return curves


def chosen_epoch(per_unit, epochs, window):
    """The validation program's choice within the first ``epochs`` epochs: (epoch, mean over units there, smoothed
    mean there, whether the window reaches past the last epoch)."""
    means = np.mean([curve[:epochs] for curve in per_unit.values()], axis=0)
    smoothed = smoothed_curve(means, window)
    best = int(np.argmax(smoothed))
    return best + 1, float(means[best]), float(smoothed[best]), best + 1 + window > epochs


def sensitivity_rows(curves, epochs, window, reference_score):
    """One row per curve, with its choice and its paired difference from its experiment's reference curve."""
    rows, references = [], {}
    for key, per_unit in curves.items():
        epoch, mean, smoothed, edge = chosen_epoch(per_unit, epochs, window)
        rows.append({'experiment': key[0], 'flags': key[1], 'score': key[2], 'lr': key[3], 'shrink': key[4],
                     'temperature': key[5], 'epoch': epoch, 'edge': edge, 'mean': mean, 'smoothed': smoothed,
                     'per_unit': {unit: curve[epoch - 1] for unit, curve in per_unit.items()}})
        if key[1] == '' and key[2] == reference_score:
            references[key[0]] = rows[-1]
    for row in rows:
        reference = references.get(row['experiment'])
        if reference is None:
            raise InputError(f"no reference for {row['experiment']}: give its validation file without extra flags, "
                             f'scored by {reference_score}')
        shared = sorted(set(row['per_unit']) & set(reference['per_unit']))
        row['minus_reference'] = mean_std([row['per_unit'][u] - reference['per_unit'][u] for u in shared])
    return rows


def markdown_table(rows, epochs):
    lines = [f'| experiment | extra flags | score | epoch (of {epochs}) | mean AUC | smoothed | − reference '
             '(mean, 95 % interval over units) |', '| --- | --- | --- | --- | --- | --- | --- |']
    for row in rows:
        difference = row['minus_reference']
        interval = '' if difference['ci95'] is None else \
            f" [{difference['ci95'][0]:+.4f}, {difference['ci95'][1]:+.4f}]"
        lines.append(f"| {row['experiment']} | {row['flags'] or '—'} | {row['score']} | {row['epoch']}"
                     f"{' (edge)' if row['edge'] else ''} | {row['mean']:.4f} | {row['smoothed']:.4f} | "
                     f"{difference['mean']:+.4f}{interval} |")
    return '\n'.join(lines)


def plot_sensitivity(path, curves, epochs):
    plt = pyplot()
    experiments = sorted({key[0] for key in curves})
    figure, axes = plt.subplots(1, len(experiments), figsize=(5 * len(experiments), 3.4), squeeze=False)
    for axis, name in zip(axes[0], experiments):
        for key, per_unit in curves.items():
            if key[0] == name:
                means = np.mean([curve[:epochs] for curve in per_unit.values()], axis=0)
                axis.plot(range(1, len(means) + 1), means, label=f"{key[1] or 'default'}, {key[2]}")
        axis.set_title(name)
        axis.set_xlabel('epochs')
        axis.set_ylabel('validation AUC (mean over units)')
        axis.legend(fontsize=7)
    save_figure(plt, figure, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('files', nargs='+', help='files of the validation program')
    parser.add_argument('--Epochs', type=int, default=None, help="compare within these first epochs (default: the "
                        "shortest file's)")
    parser.add_argument('--Window', type=int, default=2, help='smoothing: +- this many epochs')
    parser.add_argument('--ReferenceScore', default='mse', help='the score of the reference curves')
    parser.add_argument('--Out', default='./results/sensitivity.json')
    args = parser.parse_args(argv)
    curves = {}
    for path in args.files:
        curves.update(validation_curves(Path(path)))
    shortest = min(len(curve) for per_unit in curves.values() for curve in per_unit.values())
    epochs = args.Epochs or shortest
    if epochs > shortest:
        raise InputError(f'--Epochs {epochs} is longer than the shortest curve ({shortest} epochs)')
    rows = sensitivity_rows(curves, epochs, args.Window, args.ReferenceScore)
    out = Path(args.Out)
    make_folder(out.parent)
    write_json(out, {'epochs': epochs, 'window': args.Window, 'files': args.files, 'rows': rows})
    plot_sensitivity(out.with_suffix('.png'), curves, epochs)
    print(markdown_table(rows, epochs))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
