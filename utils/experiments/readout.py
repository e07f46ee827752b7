"""How much of an image model's code reaches its decoder, and how closely its score follows the amount of ink.

    python -m utils.experiments.readout mnist_nonspar --DataRoot /path/to/data --ModelRoot ./models/ --Run 0

For the trained weights of one run (``<ModelRoot>/model_<setting>/<setting>_Class{c}_Run{r}.pt``, or directly in
``<ModelRoot>``) of each class, on that run's own validation images (held out of its training images: no test
image is read), one JSON line per class:

- ``auc``: the validation AUC of the per-image MSE; ``ink_auc``: the AUC of the mean pixel value alone (the
  "ink"); ``ink_correlation``: Spearman's correlation of the MSE with the ink. A score that follows the ink
  ranks images by how much they draw, not by what they draw.
- ``variation_kept``: the mean distance of the decoder's input to its mean over the images, over the same for
  the encoder's output z. An AE passes z on (1); a memory passes its read-out w M, which varies only as much as
  the addressing weights w do.
- ``reconstruction_spread``: the same mean distance for the reconstructions, over the norm of their mean. Near 0:
  the model draws one image whatever it is shown, and its error is then the distance to that image.
- memory models: ``nonzero`` (addressing weights above 0 per query, of N) and ``largest`` (largest weight per
  query), means over the queries: one per image, or one per position with ``--MemQuery position``.

A last line gives each statistic's mean over the classes.

docs/REPRODUCTION.md (MNIST) uses it to show why MemAE-nonSpar with the 4-channel code scores like the ink.
"""
import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from models import is_memory_model
from utils.checkpoint import first_existing, load_weights
from utils.errors import InputError, run_cli
from utils.experiments.images import roc_auc
from utils.experiments.validation import experiment_options, validation_units
from utils.memory_usage import SlotUsage


def mean_deviation(values):
    """Mean over the rows of B x ... ``values`` of their distance to the row mean."""
    rows = values.flatten(1)
    return float((rows - rows.mean(0)).norm(dim=1).mean())


def readout_statistics(model, images, labels, memory_model):
    """The statistics of the module docstring for ``model`` on ``images`` (B x C x H x W) with 0/1 ``labels``."""
    model.eval()
    usage = SlotUsage(model.mem_rep) if memory_model else None
    with torch.inference_mode(), usage or contextlib.nullcontext():
        code = model.encoder(images)
        decoder_input = model.mem_rep(code)['output'] if memory_model else code
        reconstruction = model.decoder(decoder_input)
    errors = ((reconstruction - images) ** 2).flatten(1).mean(1).double().numpy()
    ink = images.flatten(1).mean(1).double().numpy()
    statistics = {
        'auc': roc_auc(errors, labels)['auc'],
        'ink_auc': roc_auc(ink, labels)['auc'],
        'ink_correlation': float(spearmanr(errors, ink)[0]),
        'variation_kept': mean_deviation(decoder_input) / mean_deviation(code),
        'reconstruction_spread': mean_deviation(reconstruction) / float(reconstruction.flatten(1).mean(0).norm()),
    }
    if usage is not None:
        statistics['nonzero'] = usage.nonzero_per_query
        statistics['largest'] = usage.largest_weight_per_query
    return statistics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('experiment', help='an image experiment of utils/experiments/settings.py')
    parser.add_argument('--DataRoot', default='./dataset/')
    parser.add_argument('--ModelRoot', default='./models/', help='where training wrote the weights')
    parser.add_argument('--Seed', type=int, default=1, help="the experiment's --Seed (run r has seed Seed + r)")
    parser.add_argument('--Run', type=int, default=0)
    parser.add_argument('--Classes', type=int, nargs='*', default=None, help='these normal classes only')
    args, flags = parser.parse_known_args(argv)
    # the learning rate and epochs do not matter here; the options name the setting and build the model
    opt = experiment_options(args.experiment, args.DataRoot, 1e-4, None, 1, flags=flags)
    if opt.Dataset == 'KDDCUP99':
        raise InputError(f'readout looks at image models; {args.experiment} trains on KDDCUP99')
    memory_model = is_memory_model(opt.ModelName)
    folders = (Path(args.ModelRoot) / f'model_{opt.setting}', Path(args.ModelRoot))
    rows = []
    for unit in validation_units(opt, args.Classes, args.Seed + args.Run):
        name = f"{opt.setting}_Class{unit.name.removeprefix('class')}_Run{args.Run}.pt"
        weights = first_existing([folder / name for folder in folders], f'no weights for {unit.name}',
                                 'train them with train.sh, or set --ModelRoot')
        model = unit.make_model(opt)
        load_weights(model, weights, opt)
        rows.append(readout_statistics(model, unit.val, unit.val_labels, memory_model))
        print(json.dumps({'unit': unit.name, 'weights': str(weights), 'images': len(unit.val_labels),
                          **{key: round(value, 4) for key, value in rows[-1].items()}}), flush=True)
    print(json.dumps({'mean_over_classes': {key: round(float(np.mean([row[key] for row in rows])), 4)
                                            for key in rows[0]}}))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
