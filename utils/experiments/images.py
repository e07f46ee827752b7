"""The paper's image experiments (Sec. 4.1): MNIST, CIFAR-10, and any folder of class folders of images.

    bash train.sh mnist          # = python script_training.py <the flags of utils/experiments/settings.py>
    bash test.sh mnist           # evaluates the weights of every class

Each class c in turn is normal and every other class an anomaly; a unit is one class and one run (seed). For every
unit: the split of data/protocols.py (train on class-c images; test on class-c test images plus drawn anomalies
making 30 % of the test set), a model of models/image_ae.py, Adam on its training images (utils/one_class.py),
the reconstruction error of every test image as its score, and the ROC AUC with anomalies positive.

Outputs: under ``<OutRoot>/res_<setting>/`` one ``<unit>.json`` and ``<unit>_scores.npz`` per unit (for a MemAE
addressing whole encodings also ``<unit>_memory.png``, every memory slot decoded), ``summary.json``,
``opt.txt``/``opt.json``; and ``<OutRoot>/<name>_summary.json`` (``mnist``, ``cifar10``)::

    {"auc": {"mean", "std", "ci95", "n", "per_class": [...], "std_over_classes"}, "classes", "runs",
     "definitions": {...}, ...}

the AUC per class averaged over runs; the mean over runs (seeds) of the mean over classes, with its sample std
(ddof 1) and t-based 95 % interval (null for one run); the sample std of the per-class AUCs. ``definitions`` says
what each field is over, in the file itself.
"""
from functools import partial

import numpy as np
import torch
from sklearn import metrics
from tqdm import tqdm

from data.protocols import image_split, image_validation_split, resolve_protocol
from models import IMAGE_ARCHITECTURES, IMAGE_RANGES, build_model, is_memory_model
from utils.errors import InputError
from utils.lockstep import in_one_tensor
from utils.one_class import Unit, UnitData, UnitRunner, as_tensor, trains_in_lockstep
from utils.stats import mean_std, mean_std_definitions, sample_std


def image_arch(spec, source):
    """The image architecture: the data set's own, or the one whose input shape the images have."""
    if spec.arch:
        return spec.arch
    for arch, layout in IMAGE_ARCHITECTURES.items():
        if tuple(source.image_shape) == layout['in_shape']:
            return arch
    raise InputError(f'images of shape {tuple(source.image_shape)} fit no image architecture; valid input shapes: '
                     f"{', '.join(str(a['in_shape']) for a in IMAGE_ARCHITECTURES.values())}")


def class_units(classes, normal_class, runs, seed):
    """One unit per normal class (all, or ``--NormalClass``) and run."""
    if normal_class >= len(classes):
        raise InputError(f'--NormalClass {normal_class} does not exist; the data set has classes 0 to '
                         f'{len(classes) - 1} ({", ".join(classes)})')
    chosen = range(len(classes)) if normal_class < 0 else [normal_class]
    return [Unit(f'class{c}_run{r}', f'_Class{c}_Run{r}', seed + r, c) for c in chosen for r in range(runs)]


def roc_auc(scores, labels):
    return {'auc': float(metrics.roc_auc_score(labels, scores))}


def validation_auc(scores, labels):
    return roc_auc(scores, labels)['auc']


def summarise(units, results):
    """Per-class AUC averaged over runs; mean and std over runs of the mean over classes."""
    auc = {(u.normal_class, u.seed): r['metrics']['auc'] for u, r in zip(units, results)}
    classes, seeds = sorted({c for c, _ in auc}), sorted({s for _, s in auc})
    per_class = [float(np.mean([auc[c, s] for s in seeds])) for c in classes]
    per_run_mean = [float(np.mean([auc[c, s] for c in classes])) for s in seeds]
    return {'auc': {**mean_std(per_run_mean), 'per_class': per_class, 'std_over_classes': sample_std(per_class)},
            'classes': classes, 'runs': len(seeds),
            'definitions': {'auc': {**mean_std_definitions('per run (seed), the mean AUC over the classes'),
                                    'per_class': "each class's AUC (that class normal), averaged over the runs",
                                    'std_over_classes': 'sample standard deviation (ddof 1) of per_class; null '
                                                        'for one class'}}}


def image_tensor(opt):
    """``as_tensor`` for the pixel range of ``--ImageRange``."""
    return partial(as_tensor, low=IMAGE_RANGES[opt.ImageRange][0])


def save_memory_grid(model, path, low=0.0):
    """Every memory slot decoded into an image, as one PNG grid (whole-encoding image memories only); ``low``: the
    pixel value of black."""
    from torchvision.utils import save_image
    model.eval()
    with torch.inference_mode():
        images = ((model.decode_slots() - low) / (1.0 - low)).clamp(0, 1).cpu()
    save_image(images, str(path), nrow=int(np.ceil(np.sqrt(len(images)))), padding=1)


def held_once(datas):
    """Every unit's training images as one tensor (utils/lockstep.py ``in_one_tensor``), which each unit's
    ``train`` then views, so that the images are held once; and the rows of each unit in it."""
    images, rows = in_one_tensor([data.train for data in datas])
    for data, view in zip(datas, images.split([len(unit_rows) for unit_rows in rows])):
        data.train = view
    return images, rows


def run(opt, options, spec, device, train):
    """Train (if ``train``) or load, and evaluate, every unit; returns the summary."""
    source = spec.reader(opt.DataRoot, download=opt.Download)
    protocol = resolve_protocol(opt.Protocol, source.splits)
    anomaly_ratio = opt.AnomalyRatio if opt.AnomalyRatio is not None else spec.anomaly_ratio
    arch = image_arch(spec, source)
    units = class_units(source.classes, opt.NormalClass, opt.Runs, opt.Seed)
    runner = UnitRunner.from_options(opt, spec.family, device, train)
    runner.start(options, units)
    draws_slots = is_memory_model(opt.ModelName) and opt.MemQuery == 'whole'
    print(f'{opt.Dataset}: {source.source}; protocol {protocol}; {len(units)} unit(s)')
    to_tensor = image_tensor(opt)

    def unit_data(unit):
        split = image_split(source.splits, unit.normal_class, protocol, anomaly_ratio, unit.seed)
        data = UnitData(to_tensor(split.train_x), to_tensor(split.test_x), split.test_y, split.description)
        if opt.EarlyStopping and train:  # train on 80 % of the training images, validate on the rest (and others)
            val = image_validation_split(source.splits, unit.normal_class, protocol, anomaly_ratio, unit.seed)
            data.train, data.val, data.val_labels = to_tensor(val.train_x), to_tensor(val.test_x), val.test_y
        return data

    model = partial(build_model, opt, 'image', arch=arch)
    if train and trains_in_lockstep(opt, spec.family):
        datas = [unit_data(unit) for unit in units]
        images, rows = held_once(datas)
        runner.train_in_lockstep(units, model, images, rows,
                                 [(data.val, data.val_labels) for data in datas] if opt.EarlyStopping else None,
                                 validation_auc)
    else:
        datas = map(unit_data, units)  # one unit's images in memory at a time
    results = []
    for unit, data in tqdm(zip(units, datas), total=len(units), desc='units', unit='model'):
        result, trained = runner.run(unit, model, data, roc_auc, validation_auc)
        if draws_slots and trained is not None:
            save_memory_grid(trained, runner.res_path / f'{unit.name}_memory.png', IMAGE_RANGES[opt.ImageRange][0])
        results.append(result)

    summary = {**summarise(units, results), 'dataset': opt.Dataset, 'protocol': protocol,
               'anomaly_ratio': anomaly_ratio, 'data': source.source}
    classes = len(summary['classes'])
    each = f", each the mean over {classes} class{'es' * (classes > 1)}"
    return runner.write_summary(summary, results, opt.OutRoot, spec.summary_name, ('AUC', 'auc', ('seed', each)))
