"""Choose the training settings of an image or KDDCUP99 experiment on validation data carved from training data.

    python -m utils.experiments.validation mnist --DataRoot ../shared/data --LR 1e-3 1e-4 --Epochs 20
    python -m utils.experiments.validation kdd --DataRoot ../shared/data --LR 1e-4 1e-3 --Epochs 50

The paper gives no optimiser settings for these experiments, so they are chosen here without touching test data.
EXPERIMENT names the model as ``train.sh`` does (utils/experiments/settings.py: ``mnist``, ``mnist_ae``,
``kdd_nonspar``, ...). For every combination of ``--LR``, ``--ShrinkThres`` (default: the experiment's lambda) and
``--MemTemperature`` (default: the experiment's, 1) and every unit — each normal class (images; ``--Classes`` to
restrict) or the one split of ``--Seed`` (KDDCUP99) — a model trains on its validation split's training part for
``--Epochs`` epochs and is scored on the validation set after every epoch (data/protocols.py:
``image_validation_split``, ``kdd_validation_rows``; the metric is the experiment's own: AUC for images, F1 of the
top-20 % rule for KDDCUP99; a MemAE also records how sparse its addressing of the validation set is). The chosen
setting is the (LR, lambda, temperature, epochs) with the best *smoothed* metric: the mean over units, averaged
over the epochs within ``--Window`` of the epoch (fewer at the ends). A single validation curve can spike (KDDCUP99
jumps by 0.2 F1 between neighbouring epochs); the smoothing picks a stopping point whose neighbours are good too,
so that the choice carries over to other seeds.

Any other flag is a training flag of ``script_training.py`` applied at every point of the grid (e.g.
``--ImageFirstKernel 3``: a sensitivity study, docs/REPRODUCTION.md; ``--UseCUDA``, default True as in training:
the models train on the GPU when there is one). Every unit is seeded alone, so ``--Classes`` shards of one grid,
run side by side, give the same per-unit curves as the whole grid (its means are then the means over the union).
With ``--Lockstep`` (a training flag; its ``auto`` does so for KDDCUP99) the units of all learning rates of one
(lambda, temperature) train together as one batched model (utils/lockstep.py): the same curves up to rounding.

Writes ``--Out`` (default ``./results/validation/<EXPERIMENT>.json``: every row, per unit, and the chosen one) and
a figure of the mean validation metric against epochs beside it (``.png``).
"""
import argparse
import contextlib
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from data.kdd import load_kdd
from data.protocols import image_validation_split, kdd_validation_rows, resolve_protocol
from data.registry import dataset_spec
from models import build_model, is_memory_model, weights_init
from options import TrainOptions
from utils.errors import run_cli
from utils.files import make_folder, write_json
from utils.eval import top_fraction_metrics
from utils.experiments.images import image_arch, image_tensor, roc_auc
from utils.experiments.settings import experiment
from utils.lockstep import StackedAdam, StackedUnits, in_one_tensor, train_stacked
from utils.memory_usage import SlotUsage
from utils.one_class import Schedule, as_tensor, score_samples, smoothed_curve, train_unit, trains_in_lockstep
from utils.plots import pyplot, save_figure
from utils.runtime import seed_everything, select_device
from utils.scoring import SCORE_TYPES, resolve_score_type
from utils.training import LossSettings


def experiment_options(name, data_root, lr, shrink, epochs, temperature=None, flags=()):
    """The parsed training options of experiment ``name`` with the learning rate, epochs and (unless None) lambda
    and the addressing temperature replaced, and further training ``flags`` applied."""
    chosen = experiment(name)
    overrides = [*flags, '--DataRoot', str(data_root), '--LR', str(lr), '--EpochNum', str(epochs)]
    if shrink is not None:
        overrides += ['--ShrinkThres', str(shrink)]
    if temperature is not None:
        overrides += ['--MemTemperature', str(temperature)]
    return TrainOptions().parse([*chosen.flags, *chosen.train_flags, *overrides], is_print=False)


@dataclass
class ValidationUnit:
    name: str
    train: object            # float tensors
    val: object
    val_labels: np.ndarray
    family: str
    make_model: Callable     # (options) -> an untrained model
    metric: Callable         # (scores, labels) -> float, higher is better


def validation_units(opt, classes, seed):
    """The :class:`ValidationUnit` of every normal class (images) or of the split of ``seed`` (KDDCUP99); the data
    depend on the data set only, so one list serves every point of the grid. The training part sits on the device of
    ``--UseCUDA`` (the model trains there, as in a training run); the validation part stays on the CPU and is
    scored in batches moved to the model."""
    spec = dataset_spec(opt.Dataset, opt.DataRoot)
    device = select_device(opt.UseCUDA)
    if spec.family == 'tabular':
        data = load_kdd(opt.DataRoot)
        train, val = kdd_validation_rows(data.y, seed, spec.anomaly_ratio)
        return [ValidationUnit(f'seed{seed}', as_tensor(data.x[train]).to(device), as_tensor(data.x[val]), data.y[val],
                               spec.family, lambda o: build_model(o, 'tabular', input_dim=data.x.shape[1]),
                               lambda s, y: top_fraction_metrics(s, y, spec.anomaly_ratio)['f1'])]
    source = spec.reader(opt.DataRoot, download=False)
    protocol = resolve_protocol(opt.Protocol, source.splits)
    arch = image_arch(spec, source)
    to_tensor, units = image_tensor(opt), []
    for c in classes if classes else range(len(source.classes)):
        split = image_validation_split(source.splits, c, protocol, spec.anomaly_ratio, seed)
        units.append(ValidationUnit(f'class{c}', to_tensor(split.train_x).to(device), to_tensor(split.test_x),
                                    split.test_y, spec.family, lambda o: build_model(o, 'image', arch=arch),
                                    lambda s, y: roc_auc(s, y)['auc']))
    return units


@dataclass
class CurveRecorder:
    """One (options, unit) point of the grid: its validation metric after every epoch, one curve per concrete
    score (the same model, scored each way), and (MemAE; else an empty list) the addressing of the validation set
    after every epoch: non-zero weights and largest weight per query."""
    opt: object
    unit: ValidationUnit
    curves: dict
    addressing: list

    @classmethod
    def of(cls, opt, unit, scores):
        return cls(opt, unit, {score: [] for score in scores}, [])

    def evaluate(self, epoch, model):
        memory_model = is_memory_model(self.opt.ModelName)
        with SlotUsage(model.mem_rep) if memory_model else contextlib.nullcontext() as usage:
            for score, curve in self.curves.items():
                curve.append(float(self.unit.metric(score_samples(model, self.unit.val, score, memory_model),
                                                    self.unit.val_labels)))
        if memory_model:
            self.addressing.append({'nonzero': round(usage.nonzero_per_query, 2),
                                    'largest': round(usage.largest_weight_per_query, 4)})


def validation_curves(points, seed, scores):
    """A :class:`CurveRecorder` for every (options, unit) of ``points`` after training each under its options
    for their epochs; points that differ in the learning rate only train together where --Lockstep says so
    (utils/lockstep.py, each point with its own learning rate and the seed's weights, batches and Adam steps), else
    one after another."""
    recorders = [CurveRecorder.of(opt, unit, scores) for opt, unit in points]
    if trains_in_lockstep(points[0][0], points[0][1].family) and len(points) > 1:
        train_validation_units_in_lockstep(points, seed, [recorder.evaluate for recorder in recorders])
    else:
        for (opt, unit), recorder in zip(points, recorders):
            train_validation_unit(opt, unit, seed, recorder.evaluate)
    return recorders


def train_validation_units_in_lockstep(points, seed, callbacks):
    """What :func:`train_validation_unit` does for every (options, unit) of ``points``, all at once: the options
    must differ in --LR at most (one architecture and loss); ``callbacks[i](epoch, model)`` after every epoch."""
    first = points[0][0]
    losses = LossSettings.from_options(first)
    if any(LossSettings.from_options(opt) != losses or (opt.EpochNum, opt.BatchSize) != (first.EpochNum,
                                                                                           first.BatchSize)
           for opt, _ in points):
        raise ValueError('points trained in lockstep may differ in the learning rate only')
    models = []
    for opt, unit in points:
        seed_everything(seed)
        models.append(unit.make_model(opt).apply(weights_init).to(unit.train.device))
    stacked = StackedUnits(models, losses, compiled=first.Compile)
    adam = StackedAdam(stacked.params, [opt.LR for opt, _ in points], len(points))
    trains = {id(unit.train): unit.train for _, unit in points}  # each unit's samples once, whatever its LRs
    source, unit_rows = in_one_tensor(trains.values())
    rows_of = dict(zip(trains, unit_rows))
    rows = [rows_of[id(unit.train)] for _, unit in points]

    def after_epoch(epoch, trained, *_):
        for r in trained:
            models[r].load_state_dict(stacked.unit_state(r))
            callbacks[r](epoch, models[r])
    names = [f'{unit.name} LR {opt.LR:g}' for opt, unit in points]
    train_stacked(stacked, adam, [torch.Generator().manual_seed(seed) for _ in points], source, rows,
                  Schedule(None, first.EpochNum, first.BatchSize), names, [[] for _ in points], after_epoch)


def train_validation_unit(opt, unit, seed, on_epoch_end):
    """Train a fresh model of ``unit`` under the options ``opt`` on its training part, calling
    ``on_epoch_end(epoch, model)`` after every epoch. The model is initialised on the CPU and then moved to the
    unit's device, as script_training.py does, so that a seed gives the same initial weights on either device."""
    seed_everything(seed)
    model = unit.make_model(opt)
    model.apply(weights_init)
    model.to(unit.train.device)
    train_unit(model, unit.train, Schedule(opt.LR, opt.EpochNum, opt.BatchSize), LossSettings.from_options(opt),
               seed, on_epoch_end=on_epoch_end)


def plot_curves(path, rows, metric_name):
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.2))
    groups = group_rows(rows)
    several_scores = len({score for *_, score in groups}) > 1
    for (lr, shrink, temperature, score), group in groups.items():
        label = f'LR {lr:g}' + (f', λ {shrink:g}' if shrink is not None else '') + (
            f', T {temperature:g}' if temperature is not None and temperature != 1 else '') + (
            f', {score}' if several_scores else '')
        axis.plot([r['epoch'] for r in group], [r['mean'] for r in group], marker='.', label=label)
    axis.set_xlabel('epochs')
    axis.set_ylabel(f'validation {metric_name} (mean over units)')
    axis.legend(fontsize=8)
    save_figure(plt, figure, path)


def group_rows(rows):
    groups = {}
    for row in rows:
        groups.setdefault((row['lr'], row['shrink'], row['temperature'], row['score']), []).append(row)
    return groups


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('experiment', help='an image or KDDCUP99 experiment of utils/experiments/settings.py')
    parser.add_argument('--DataRoot', default='./dataset/')
    parser.add_argument('--LR', type=float, nargs='+', default=[1e-3, 1e-4])
    parser.add_argument('--ShrinkThres', type=float, nargs='+', default=[None],
                        help='lambda values to try (MemAE with shrinkage; default: the experiment\'s)')
    parser.add_argument('--MemTemperature', type=float, nargs='+', default=[None],
                        help="addressing temperatures to try (MemAE; default: the experiment's)")
    parser.add_argument('--ScoreType', nargs='+', default=['released'], choices=SCORE_TYPES,
                        help="scores to compute from the same trained models (default: the experiment's); for "
                             'one-channel images "l2" is the mean absolute error')
    parser.add_argument('--Epochs', type=int, default=20, help='train this long, scoring after every epoch')
    parser.add_argument('--Classes', type=int, nargs='*', default=None, help='images: these normal classes only')
    parser.add_argument('--Window', type=int, default=2, help='smoothing: +- this many epochs')
    parser.add_argument('--Seed', type=int, default=1)
    parser.add_argument('--Out', default=None)
    args, flags = parser.parse_known_args(argv)
    if args.Window < 0 or args.Epochs < 1:
        parser.error(f'--Window must be 0 or more epochs and --Epochs at least 1, got {args.Window} and {args.Epochs}')
    out = Path(args.Out or f'./results/validation/{args.experiment}.json')
    rows = []
    units = validation_units(experiment_options(args.experiment, args.DataRoot, args.LR[0], None, args.Epochs,
                                                flags=flags), args.Classes, args.Seed)
    recorded = {}  # (LR, lambda, temperature as given, unit name) -> CurveRecorder
    for shrink, given_temperature in itertools.product(args.ShrinkThres, args.MemTemperature):
        keys = [(lr, shrink, given_temperature, unit.name) for lr in args.LR for unit in units]
        points = [(experiment_options(args.experiment, args.DataRoot, lr, shrink, args.Epochs, given_temperature,
                                      flags), unit) for lr in args.LR for unit in units]
        scores = {resolve_score_type(s, points[0][0].ModelName, units[0].family): s for s in args.ScoreType}
        recorded.update(zip(keys, validation_curves(points, args.Seed, tuple(scores))))
    for lr, shrink, given_temperature in itertools.product(args.LR, args.ShrinkThres, args.MemTemperature):
        opt = recorded[lr, shrink, given_temperature, units[0].name].opt
        curves, addressing = {}, {}
        memory_model = is_memory_model(opt.ModelName)
        lambd = opt.ShrinkThres if memory_model else None
        temperature = opt.MemTemperature if memory_model else None
        scores = {resolve_score_type(s, opt.ModelName, units[0].family): s for s in args.ScoreType}
        for unit in units:
            recorder = recorded[lr, shrink, given_temperature, unit.name]
            curves[unit.name], addressing[unit.name] = recorder.curves, recorder.addressing
            print(json.dumps({'lr': lr, 'shrink': lambd, 'temperature': temperature, 'unit': unit.name,
                              'curve': {s: [round(v, 4) for v in c] for s, c in curves[unit.name].items()},
                              'addressing': addressing[unit.name][-1:]}), flush=True)
        for score in scores:
            per_unit = {name: unit_curves[score] for name, unit_curves in curves.items()}
            means = np.mean(list(per_unit.values()), axis=0)
            smoothed = smoothed_curve(means, args.Window)
            for epoch in range(1, args.Epochs + 1):
                row = {'lr': lr, 'shrink': lambd, 'temperature': temperature, 'score': score, 'epoch': epoch,
                       'mean': float(means[epoch - 1]), 'smoothed': float(smoothed[epoch - 1]),
                       'per_unit': {name: curve[epoch - 1] for name, curve in per_unit.items()}}
                if memory_model:
                    row['addressing'] = {name: usage[epoch - 1] for name, usage in addressing.items()}
                rows.append(row)
    best = max(rows, key=lambda row: row['smoothed'])
    metric_name = 'F1' if experiment(args.experiment).dataset == 'KDDCUP99' else 'AUC'
    make_folder(out.parent)
    write_json(out, {'experiment': args.experiment, 'flags': flags, 'metric': metric_name, 'seed': args.Seed,
                     'window': args.Window, 'rows': rows, 'best': best})
    plot_curves(out.with_suffix('.png'), rows, metric_name)
    print(f"best on validation: LR {best['lr']:g}, lambda {best['shrink']}, temperature {best['temperature']}, "
          f"score {best['score']}, "
          f"{best['epoch']} epochs, "
          f"{metric_name} {best['mean']:.4f} (smoothed over +-{args.Window} epochs: {best['smoothed']:.4f}) ({out})")
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
