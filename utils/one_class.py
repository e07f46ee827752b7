"""The paper's image (MNIST, CIFAR-10) and KDDCUP99 experiments: train and evaluate every unit of a protocol.

A *unit* is one model: for images one normal class and one run (seed), for KDDCUP99 one run (one random
split). ``script_training.py`` trains every unit and evaluates it; ``script_testing.py`` loads the units' weights
and evaluates them. Both write, under ``<OutRoot>/res_<setting>/``, one ``<unit>.json`` and ``<unit>_scores.npz``
per unit, ``summary.json`` and ``opt.txt``/``opt.json``; and ``<OutRoot>/<name>_summary.json``
(``mnist``, ``cifar10``, ``kdd``):

* images: ``{"auc": {"mean", "std", "per_class": [...], "std_over_classes"}, ...}``: the ROC AUC (anomalies
  positive, score = reconstruction error) per class averaged over runs; mean and std over runs of the mean over
  classes; the std of the per-class AUCs;
* KDDCUP99: ``{"runs": n, "precision": {"mean", "std"}, "recall": {...}, "f1": {...}, ...}``: the records whose
  score is above the 80th percentile of the test scores are flagged; precision, recall and F1 of the anomaly class.

Weights: ``<ModelRoot>/model_<setting>/<setting>_Class{c}_Run{r}.pt`` (images) or ``<setting>_Run{r}.pt`` (KDD)
after training; testing also finds them directly in ``<ModelRoot>``, where shipped weights live.
"""
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn import metrics
from tqdm import tqdm

from data.protocols import image_split, kdd_split, resolve_protocol
from models import IMAGE_ARCHITECTURES, build_model, is_memory_model, weights_init
from utils.checkpoint import atomic_save, atomic_write_text, first_existing, load_tensors_file, load_weights
from utils.errors import InputError
from utils.runtime import onednn_disabled, rng_state, seed_everything, set_rng_state
from utils.scoring import model_scores, resolve_score_type
from utils.training import training_step

SCORE_BATCH = 4096


@dataclass
class Unit:
    name: str            # class3_run0 / run7
    weight_suffix: str   # _Class3_Run0 / _Run7
    seed: int
    normal_class: int = None


def load_source(spec, opt):
    return spec.reader(opt.DataRoot, download=opt.Download) if spec.family == 'image' else spec.reader(opt.DataRoot)


def image_arch(spec, source):
    """The image architecture: the data set's own, or the one whose input shape the images have."""
    if spec.arch:
        return spec.arch
    for arch, layout in IMAGE_ARCHITECTURES.items():
        if tuple(source.image_shape) == layout['in_shape']:
            return arch
    raise InputError(f'images of shape {tuple(source.image_shape)} fit no image architecture; valid input shapes: '
                     f"{', '.join(str(a['in_shape']) for a in IMAGE_ARCHITECTURES.values())}")


def protocol_units(spec, source, opt):
    runs = range(opt.Runs)
    if spec.family == 'tabular':
        return [Unit(f'run{r}', f'_Run{r}', opt.Seed + r) for r in runs]
    classes = range(len(source.classes)) if opt.NormalClass < 0 else [opt.NormalClass]
    if opt.NormalClass >= len(source.classes):
        raise InputError(f'--NormalClass {opt.NormalClass} does not exist; the data set has classes 0 to '
                         f'{len(source.classes) - 1} ({", ".join(source.classes)})')
    return [Unit(f'class{c}_run{r}', f'_Class{c}_Run{r}', opt.Seed + r, c) for c in classes for r in runs]


def unit_split(spec, source, unit, protocol, anomaly_ratio):
    if spec.family == 'tabular':
        return kdd_split(source.x, source.y, unit.seed)
    return image_split(source.splits, unit.normal_class, protocol, anomaly_ratio, unit.seed)


def as_tensor(samples):
    """uint8 images to float [0, 1]; records (already float) as they are."""
    tensor = torch.from_numpy(np.ascontiguousarray(samples))
    return tensor.float().div(255) if tensor.dtype == torch.uint8 else tensor.float()


# The options a unit's training state must share with the run that resumes it (its run name covers the rest of
# what shapes the model: data set, memory, seed).
RESUME_SIGNATURE = ('setting', 'LR', 'EpochNum', 'BatchSize', 'LossScaling', 'Protocol', 'AnomalyRatio', 'ScoreType')


def resume_signature(opt):
    """The RESUME_SIGNATURE options' values (None for the training options a testing run does not have)."""
    return {name: getattr(opt, name, None) for name in RESUME_SIGNATURE}


@dataclass
class UnitCheckpoint:
    """The training state of one unit (``<ModelRoot>/model_<setting>/<setting><unit>_resume.pt``), written after
    every epoch: model, Adam, the epoch losses so far, the batch-order generator and the global random states, and
    the options that must not change between a run and its resumption."""
    path: Path
    signature: dict

    def save(self, model, optimizer, generator, epoch_losses):
        atomic_save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'epoch_losses': epoch_losses,
                     'rng': rng_state(generator), 'signature': self.signature}, self.path)

    def restore(self, model, optimizer, generator):
        """Load a saved state into the model, optimizer and generators; returns the epoch losses so far ([] when
        there is no state to resume)."""
        if not self.path.is_file():
            return []
        state = load_tensors_file(self.path, 'training state (--Resume auto)')
        if not isinstance(state, dict) or state.get('signature') != self.signature:
            raise InputError(f'the training state {self.path} was written with other options than this run\'s '
                             f'({", ".join(RESUME_SIGNATURE)} must match); delete it or rerun without --Resume')
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        set_rng_state(state['rng'], generator)
        return list(state['epoch_losses'])


def train_unit(model, train_x, opt, device, memory_model, seed, tb_writer=None, on_epoch_end=None, checkpoint=None,
               resume=False):
    """EpochNum epochs of shuffled mini-batches (Adam, LR); returns the mean loss of each epoch.
    ``on_epoch_end(epoch, model)``, if given, is called after every epoch (1-based). ``checkpoint``
    (:class:`UnitCheckpoint`), if given, saves the training state after every epoch and, with ``resume``, first
    continues from the state it holds."""
    data = as_tensor(train_x).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=opt.LR)
    generator = torch.Generator().manual_seed(seed)
    epoch_losses = checkpoint.restore(model, optimizer, generator) if checkpoint is not None and resume else []
    if epoch_losses:
        tqdm.write(f'resuming from {checkpoint.path}: {len(epoch_losses)} of {opt.EpochNum} epochs done')
    model.train()
    for epoch in range(len(epoch_losses), opt.EpochNum):
        order = torch.randperm(len(data), generator=generator).to(device)
        losses = [training_step(model, data[order[i:i + opt.BatchSize]], optimizer, opt, memory_model)[1]
                  for i in range(0, len(data), opt.BatchSize)]
        epoch_losses.append(float(np.mean([v['loss'] for v in losses])))
        if tb_writer is not None:
            for name in losses[0]:
                tb_writer.add_scalar(name, float(np.mean([v[name] for v in losses])), epoch)
        if checkpoint is not None:
            checkpoint.save(model, optimizer, generator, epoch_losses)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model)
            model.train()
    return epoch_losses


def score_samples(model, samples, score, device, memory_model):
    """Per-sample reconstruction error, in batches, in eval mode."""
    model.eval()
    scores = []
    with torch.inference_mode():
        for i in range(0, len(samples), SCORE_BATCH):
            batch = as_tensor(samples[i:i + SCORE_BATCH]).to(device)
            scores += model_scores(model, batch, score, memory_model, normalised=False)
    return np.asarray(scores, dtype=np.float64)


def unit_metrics(family, scores, labels, anomaly_ratio):
    """Images: ROC AUC. Records: flag the top ``anomaly_ratio`` of scores; precision, recall, F1."""
    if family == 'image':
        return {'auc': float(metrics.roc_auc_score(labels, scores))}
    threshold = float(np.percentile(scores, 100 * (1 - anomaly_ratio)))
    predicted = (scores > threshold).astype(np.int64)
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(labels, predicted, average='binary',
                                                                       pos_label=1, zero_division=0)
    return {'precision': float(precision), 'recall': float(recall), 'f1': float(f1), 'threshold': threshold}


def _mean_std(values):
    return {'mean': float(np.mean(values)), 'std': float(np.std(values))}


def summarise(family, units, results):
    """The summary of all units, in the fixed format of the module docstring."""
    if family == 'tabular':
        summary = {'runs': len(results)}
        summary.update({k: _mean_std([r['metrics'][k] for r in results]) for k in ('precision', 'recall', 'f1')})
        return summary
    classes = sorted({u.normal_class for u in units})
    runs = sorted({u.seed for u in units})
    auc = {(u.normal_class, u.seed): r['metrics']['auc'] for u, r in zip(units, results)}
    per_class = [float(np.mean([auc[c, s] for s in runs])) for c in classes]
    per_run_mean = [float(np.mean([auc[c, s] for c in classes])) for s in runs]
    return {'auc': {**_mean_std(per_run_mean), 'per_class': per_class, 'std_over_classes': float(np.std(per_class))},
            'classes': classes, 'runs': len(runs)}


def weight_candidates(opt, unit):
    name = f'{opt.setting}{unit.weight_suffix}.pt'
    if opt.ModelFilePath:
        return [Path(opt.ModelFilePath) / name]
    return [Path(opt.ModelRoot) / name, Path(opt.ModelRoot) / f'model_{opt.setting}' / name]


def find_unit_weights(opt, unit):
    return first_existing(weight_candidates(opt, unit), f'no weights for {unit.name}',
                          'train them with script_training.py, or set --ModelRoot')


def save_memory_grid(model, path):
    """Every memory slot decoded into an image, as one PNG grid (whole-encoding image memories only)."""
    from torchvision.utils import save_image
    model.eval()
    with torch.inference_mode():
        images = model.decode_slots().clamp(0, 1).cpu()
    save_image(images, str(path), nrow=int(np.ceil(np.sqrt(len(images)))), padding=1)


@dataclass
class Experiment:
    """Everything the units of one protocol share."""
    opt: object
    spec: object
    source: object
    protocol: str
    anomaly_ratio: float
    arch: str
    input_dim: int
    score: str
    device: torch.device
    res_path: Path
    model_dir: Path
    weights: dict = None  # testing: unit name -> weights file, all found before the first unit runs

    @property
    def family(self):
        return self.spec.family

    @property
    def memory_model(self):
        return is_memory_model(self.opt.ModelName)


def prepare_experiment(opt, spec, device):
    source = load_source(spec, opt)
    return Experiment(
        opt=opt, spec=spec, source=source,
        protocol=resolve_protocol(opt.Protocol, source.splits) if spec.family == 'image' else 'dagmm',
        anomaly_ratio=opt.AnomalyRatio if opt.AnomalyRatio is not None else spec.anomaly_ratio,
        arch=image_arch(spec, source) if spec.family == 'image' else None,
        input_dim=source.x.shape[1] if spec.family == 'tabular' else None,
        score=resolve_score_type(opt.ScoreType, opt.ModelName, spec.family), device=device,
        res_path=Path(opt.OutRoot) / f'res_{opt.setting}', model_dir=Path(opt.ModelRoot) / f'model_{opt.setting}')


def trained_model(exp, unit, train_x):
    """A new model trained on ``train_x``, saved; returns (model, weights path, epoch losses)."""
    opt = exp.opt
    model = build_model(opt, exp.family, arch=exp.arch, input_dim=exp.input_dim)
    model.apply(weights_init)
    model.to(exp.device)
    tb_writer = None
    if opt.IsTbLog:
        from torch.utils.tensorboard import SummaryWriter  # slow to import: only when logging
        tb_writer = SummaryWriter(str(Path(opt.ModelRoot) / f'log_{opt.setting}' / unit.name))
    checkpoint = unit_checkpoint(exp, unit)
    losses = train_unit(model, train_x, opt, exp.device, exp.memory_model, unit.seed, tb_writer, checkpoint=checkpoint,
                        resume=opt.Resume == 'auto')
    if tb_writer is not None:
        tb_writer.close()
    weights = exp.model_dir / f'{opt.setting}{unit.weight_suffix}.pt'
    atomic_save(model.state_dict(), weights)
    return model, weights, losses


def unit_checkpoint(exp, unit):
    return UnitCheckpoint(exp.model_dir / f'{exp.opt.setting}{unit.weight_suffix}_resume.pt',
                          resume_signature(exp.opt))


def finished_result(exp, unit):
    """``--Resume auto``: the result a unit finished with before the run was interrupted, or None. A unit counts as
    finished when its result file (written last, atomically) says so for the same options and its weights exist."""
    path = exp.res_path / f'{unit.name}.json'
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except ValueError:
        return None
    if result.get('signature') != resume_signature(exp.opt) or not Path(result.get('weights', '')).is_file():
        return None
    return result


def loaded_model(exp, unit):
    """The model of a unit with its saved weights; returns (model, weights path)."""
    model = build_model(exp.opt, exp.family, arch=exp.arch, input_dim=exp.input_dim)
    weights = exp.weights[unit.name]
    load_weights(model, weights, exp.opt)
    return model.to(exp.device), weights


def run_unit(exp, unit, train):
    """Train (if ``train``) or load one unit's model, score its test samples, write and return its result."""
    if train and exp.opt.Resume == 'auto':
        result = finished_result(exp, unit)
        if result is not None:
            tqdm.write(f'{unit.name}: finished before (--Resume auto), result from {exp.res_path / unit.name}.json')
            return result
    started = time.perf_counter()
    split = unit_split(exp.spec, exp.source, unit, exp.protocol, exp.anomaly_ratio)
    seed_everything(unit.seed)
    if train:
        model, weights, losses = trained_model(exp, unit, split.train_x)
    else:
        (model, weights), losses = loaded_model(exp, unit), None
    scores = score_samples(model, split.test_x, exp.score, exp.device, exp.memory_model)
    result = {'unit': unit.name, 'seed': unit.seed, 'normal_class': unit.normal_class,
              'metrics': unit_metrics(exp.family, scores, split.test_y, exp.anomaly_ratio),
              'train_samples': int(len(split.train_x)), 'test_samples': int(len(split.test_y)),
              'test_anomalies': int(split.test_y.sum()), 'protocol': split.description,
              'weights': str(weights), 'epoch_losses': losses, 'seconds': time.perf_counter() - started,
              'signature': resume_signature(exp.opt)}
    np.savez(exp.res_path / f'{unit.name}_scores.npz', scores=scores, labels=split.test_y)
    atomic_write_text(exp.res_path / f'{unit.name}.json', json.dumps(result, indent=2) + '\n')
    if exp.family == 'image' and exp.memory_model and exp.opt.MemQuery == 'whole':
        save_memory_grid(model, exp.res_path / f'{unit.name}_memory.png')
    tqdm.write(f'{unit.name}: ' + ', '.join(f'{k} {v:.4f}' for k, v in result['metrics'].items()))
    return result


def run_protocol(opt, options, spec, device, train):
    """Train (if ``train``) and evaluate every unit; write the per-unit results and the summaries."""
    if train and opt.Resume not in (None, 'auto'):
        raise InputError(f'--Resume {opt.Resume}: image and KDD runs resume with --Resume auto (each unit has its own '
                         f'training state); a path names the state of one video training run')
    exp = prepare_experiment(opt, spec, device)
    units = protocol_units(spec, exp.source, opt)
    if not train:  # a missing file fails before any unit is evaluated
        exp.weights = {unit.name: find_unit_weights(opt, unit) for unit in units}
    options.save(opt, exp.res_path)
    if train:
        options.save(opt, exp.model_dir)
    print(f'{opt.Dataset}: {exp.source.source}; protocol {exp.protocol}; {len(units)} unit(s)')
    # oneDNN's CPU kernels intermittently corrupted the heap while training the image models with torch 2.14.1
    # (a segfault or "corrupted size vs. prev_size" in about one MNIST run in three; never with them switched
    # off), so the image experiments use PyTorch's native CPU convolutions, about half as fast.
    with onednn_disabled(exp.family == 'image' and device.type == 'cpu'):
        results = [run_unit(exp, unit, train) for unit in tqdm(units, desc='units', unit='model')]

    summary = summarise(exp.family, units, results)
    summary.update({'dataset': opt.Dataset, 'setting': opt.setting, 'protocol': exp.protocol, 'score': exp.score,
                    'anomaly_ratio': exp.anomaly_ratio, 'data': exp.source.source,
                    'seconds': float(sum(r['seconds'] for r in results))})
    text = json.dumps(summary, indent=2) + '\n'
    (exp.res_path / 'summary.json').write_text(text)
    Path(opt.OutRoot, f'{spec.summary_name}_summary.json').write_text(text)
    print(json.dumps({k: v for k, v in summary.items() if k in ('auc', 'precision', 'recall', 'f1')}))
    return summary
