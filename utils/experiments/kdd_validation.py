"""Choose the KDDCUP99 training length and learning rate on validation data carved from the *training* half.

    python -m utils.experiments.kdd_validation --DataRoot ../shared/data --LR 1e-4 1e-3 --Epochs 5 10 20 30 50

The paper gives no optimiser settings for KDDCUP99. This chooses them without touching test data: for the split
of seed ``--Seed`` it holds out a random 20 % of the attack ("normal") records of the training half, trains on the
other 80 %, and builds a validation set of those held-out records plus the anomaly ('normal.') records of the
training half, which the protocol never uses, drawn so that anomalies make 20 % of it as in the test half. Each
learning rate trains once for the largest epoch count; the model is scored on the validation set after each
listed epoch with the test rule (flag the top 20 %, F1 of the anomaly class). It prints and writes a JSON table.
"""
import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np

from data.kdd import load_kdd
from data.protocols import kdd_halves
from models import build_model, weights_init
from utils.errors import run_cli
from utils.eval import top_fraction_metrics
from utils.one_class import Schedule, as_tensor, score_samples, train_unit
from utils.runtime import seed_everything
from utils.training import LossSettings

HELD_OUT = 0.2
ANOMALY_RATIO = 0.2


def validation_split(x, y, seed):
    """(training records, validation records, validation labels) from the training half of split ``seed``."""
    rng = np.random.default_rng(seed + 10_000)  # a stream of its own, not the split's
    order = kdd_halves(len(x), seed)[0]
    attacks, anomalies = order[y[order] == 0], order[y[order] == 1]
    attacks = attacks[rng.permutation(len(attacks))]
    cut = int(len(attacks) * HELD_OUT)
    held_out, train = attacks[:cut], attacks[cut:]
    wanted = int(round(len(held_out) * ANOMALY_RATIO / (1 - ANOMALY_RATIO)))
    drawn = rng.choice(anomalies, size=wanted, replace=False)
    val = np.concatenate([held_out, drawn])
    return x[train], x[val], y[val]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--DataRoot', default='./dataset/')
    parser.add_argument('--Seed', type=int, default=1)
    parser.add_argument('--LR', type=float, nargs='+', default=[1e-4, 1e-3])
    parser.add_argument('--Epochs', type=int, nargs='+', default=[5, 10, 20, 30, 50])
    parser.add_argument('--BatchSize', type=int, default=1024)
    parser.add_argument('--MemDim', type=int, default=50)
    parser.add_argument('--ShrinkThres', type=float, default=0.02)
    parser.add_argument('--EntropyLossWeight', type=float, default=0.0002)
    parser.add_argument('--Out', default='./results/kdd_validation.json')
    args = parser.parse_args(argv)
    data = load_kdd(args.DataRoot)
    train_x, val_x, val_y = validation_split(data.x, data.y, args.Seed)
    print(f'validation: {len(train_x)} training records, {len(val_x)} validation records ({val_y.mean():.0%} anomalies)')
    train_x, val_x = as_tensor(train_x), as_tensor(val_x)
    losses = LossSettings('MemAE', 'released', entropy_weight=args.EntropyLossWeight)
    table = []
    for lr in args.LR:
        opt = types.SimpleNamespace(ModelName='MemAE', MemDim=args.MemDim, ShrinkThres=args.ShrinkThres,
                                    MemAddressing='dot')
        seed_everything(args.Seed)
        model = build_model(opt, 'tabular', input_dim=data.x.shape[1])
        model.apply(weights_init)

        def evaluate(epoch, trained):
            if epoch in args.Epochs:
                scores = score_samples(trained, val_x, 'mse', memory_model=True)
                row = {'lr': lr, 'epochs': epoch, **top_fraction_metrics(scores, val_y, ANOMALY_RATIO)}
                table.append(row)
                print(json.dumps(row))

        train_unit(model, train_x, Schedule(lr, max(args.Epochs), args.BatchSize), losses, args.Seed,
                   on_epoch_end=evaluate)
    best = max(table, key=lambda row: row['f1'])
    Path(args.Out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.Out).write_text(json.dumps({'rows': table, 'best': best}, indent=2) + '\n')
    print(f"best on validation: lr {best['lr']}, {best['epochs']} epochs, F1 {best['f1']:.4f}")
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
