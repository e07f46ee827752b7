"""The unit runner that the image and KDDCUP99 experiments share (utils/experiments/images.py, .../kdd.py).

A *unit* is one model of a one-class protocol: for images one normal class and one run (seed), for KDDCUP99 one
run (one random split). For every unit, :meth:`UnitRunner.run` trains a model on its training samples (or loads
its saved weights), scores its test samples and writes, under ``<OutRoot>/res_<setting>/``, ``<unit>.json`` (the
metrics and how they were obtained) and ``<unit>_scores.npz`` (scores and labels). The experiment then writes its
summary with :meth:`UnitRunner.write_summary`.

Weights: ``<ModelRoot>/model_<setting>/<setting>_Class{c}_Run{r}.pt`` (images) or ``<setting>_Run{r}.pt`` (KDD)
after training; testing also finds them directly in ``<ModelRoot>``, where shipped weights live.

Samples are float tensors held in memory; training draws mini-batches by index from a seeded permutation, and
scoring runs in large batches under ``torch.inference_mode``.
"""
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from models import weights_init
from utils.checkpoint import first_existing, load_tensors_file, load_weights, restore_training, resume_file
from utils.errors import InputError
from utils.experiments.settings import paper_result
from utils.files import read_json, save_npz, save_torch, write_json
from utils.lockstep import StackedAdam, StackedUnits, train_stacked
from utils.progress import EpochClock
from utils.runtime import rng_state, seed_everything
from utils.scoring import finite_scores, model_scores, resolve_score_type
from utils.training import LossSettings, training_step

SCORE_BATCH = 8192


def as_tensor(samples, low=0.0):
    """uint8 images to float in [``low``, 1] (``--ImageRange``), records (already float) to float32, with standard
    strides.

    The strides matter: NumPy gives a size-1 axis whatever stride it likes (MNIST's channel axis gets 1), and PyTorch
    takes a contiguous N x 1 x H x W tensor with channel stride 1 for channels-last as well; fed such a tensor, the
    oneDNN kernel of a 1 x 1 convolution of stride 2 (the MNIST model's first layer) corrupts the heap in the
    backward pass (torch 2.14.1; docs/onednn_stride_crash.py reproduces it in a few lines)."""
    tensor = torch.from_numpy(np.ascontiguousarray(samples))
    standard = torch.empty(tensor.shape, dtype=torch.float32).copy_(tensor)  # freshly allocated: standard strides
    if tensor.dtype == torch.uint8:
        standard.div_(255.0)
        if low != 0.0:
            standard.mul_(1.0 - low).add_(low)
    return standard


@dataclass
class Unit:
    name: str            # class3_run0 / run7
    weight_suffix: str   # _Class3_Run0 / _Run7
    seed: int
    normal_class: int = None


@dataclass
class UnitData:
    """A unit's training samples (all normal) and the samples it scores with labels (1 = anomaly), as float
    tensors. ``is_test`` marks which scored samples are test samples when the metric scores more than them (the
    KDDCUP99 ``dagmm_reimpl`` threshold pool); None: all are."""
    train: torch.Tensor
    test: torch.Tensor
    labels: np.ndarray
    description: str
    is_test: np.ndarray = None
    val: torch.Tensor = None        # --EarlyStopping: the validation samples and their labels
    val_labels: np.ndarray = None

    @property
    def test_labels(self):
        return self.labels if self.is_test is None else self.labels[self.is_test]


@dataclass(frozen=True)
class Schedule:
    """--LR, --EpochNum, --BatchSize: Adam on shuffled mini-batches."""
    lr: float
    epochs: int
    batch_size: int


# The options a unit's training state must share with the run that resumes it (its run name covers the rest of
# what shapes the model: data set, memory, seed).
RESUME_SIGNATURE = ('setting', 'LR', 'EpochNum', 'BatchSize', 'LossScaling', 'Protocol', 'AnomalyRatio', 'ScoreType',
                    'EarlyStopping', 'LRGrid', 'ShrinkThresGrid')


def same_units(earlier, summary):
    """Whether an earlier summary file is of the same setting and units as ``summary`` (then it is replaced)."""
    return earlier.get('setting') == summary['setting'] and earlier.get('units') == summary['units']


def result_line(summary, metric, key, counted, opt):
    """``KDDCUP99 F1 0.9441 +- 0.0015 over 20 runs (paper 0.9641)``: the headline of a one-class experiment;
    ``counted``: (what its n counts, singular; what one of them is)."""
    value, (noun, each) = summary[key], counted
    spread = f" ± {value['std']:.4f}" if value['std'] is not None else ''
    paper = paper_result(opt)
    return (f"{opt.Dataset} {metric} {value['mean']:.4f}{spread} over {value['n']} {noun}{'s' * (value['n'] != 1)}"
            f'{each}' + (f' (paper {paper:.4f})' if paper is not None else ''))


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

    def save(self, model, optimizer, generator, epoch_losses, stop=None):
        self.save_states(model.state_dict(), optimizer.state_dict(), generator, epoch_losses, stop)

    def save_states(self, model_state, optimizer_state, generator, epoch_losses, stop=None):
        """``stop`` (--EarlyStopping): its validation curve and the states it may still choose go along."""
        validation = {} if stop is None else {'validation': stop.state()}
        save_torch({'model': model_state, 'optimizer': optimizer_state, 'epoch_losses': list(epoch_losses),
                    'rng': rng_state(generator), 'signature': self.signature, **validation}, self.path)

    def restore(self, model, optimizer, generator, stop=None):
        """Load a saved state into the model, optimizer, generators and ``stop``; returns the epoch losses so far
        ([] when there is no state to resume)."""
        if not self.path.is_file():
            return []
        state = load_tensors_file(self.path, 'training state (--Resume auto)')
        if not isinstance(state, dict) or state.get('signature') != self.signature:
            raise InputError(f'the training state {self.path} was written with other options than this run\'s '
                             f'({", ".join(RESUME_SIGNATURE)} must match); delete it or rerun without --Resume')
        needed = {'model', 'optimizer', 'rng', 'epoch_losses', *(() if stop is None else ('validation',))}
        if not needed <= set(state):
            raise InputError(f'the training state {self.path} is incomplete; delete it and start afresh')
        restore_training(self.path, state, model, optimizer, generator)
        if stop is not None:
            stop.restore(state['validation'])
        return list(state['epoch_losses'])


# --Lockstep auto, per family, from docs/SPEED.md's benchmark (2-core CPU): the KDDCUP99 runs train 1.1-1.6x
# faster together; the image classes 1.2x slower (their steps are convolutions, which a grouped convolution over the
# units does not speed up per unit).
LOCKSTEP_BY_DEFAULT = {'tabular': True, 'image': False}


def trains_in_lockstep(opt, family):
    """Whether the units of a run with options ``opt`` (--Lockstep) of data family ``family`` train together; a
    grid of candidates (--LRGrid, --ShrinkThresGrid) always does."""
    if opt.Lockstep == 'auto':
        return LOCKSTEP_BY_DEFAULT[family] or bool(opt.LRGrid or opt.ShrinkThresGrid)
    return opt.Lockstep


@dataclass(frozen=True)
class Candidate:
    """One setting a unit tries (--LRGrid x --ShrinkThresGrid): its learning rate and shrink threshold (None: the
    model's --ShrinkThres)."""
    lr: float
    shrink_thres: float = None


def choose_candidate(candidates, stops):
    """The index of the candidate whose validation curve (its :class:`ValidationStop`), smoothed, is best at its
    chosen epoch; the first of equals (the grids' order)."""
    return max(range(len(candidates)), key=lambda i: stops[i].smoothed(stops[i].best_epoch(finished=True)))


def choice_record(candidates, stops, chosen):
    """What a unit chose from its grid, for its result and its choice file."""
    def entry(candidate, stop):
        epoch = stop.best_epoch(finished=True)
        return {'lr': candidate.lr, 'shrink_thres': candidate.shrink_thres, 'chosen_epoch': epoch,
                'smoothed': stop.smoothed(epoch)}
    return {**entry(candidates[chosen], stops[chosen]),
            'candidates': [entry(candidate, stop) for candidate, stop in zip(candidates, stops)]}


def choice_path(weights):
    """The choice file beside a unit's weights: what the unit chose on its validation set (its epoch and, from a
    grid, its candidate)."""
    return Path(weights).with_name(f'{Path(weights).stem}_choice.json')


STOP_WINDOW = 2  # --EarlyStopping smooths the validation curve over +-2 epochs, as the validation program does


def smoothed_curve(curve, window):
    """Each epoch's value averaged with the values within ``window`` epochs of it (fewer at the curve's ends)."""
    return np.array([np.mean(curve[max(0, i - window):i + window + 1]) for i in range(len(curve))])


@dataclass
class ValidationStop:
    """--EarlyStopping for one unit: after every epoch the model scores the validation samples, and ``metric``
    (scores, labels) -> value (higher is better) gives the epoch's point of the validation curve. The chosen epoch
    maximises the curve's mean over the epochs within ``window`` of it (fewer at the ends; the earliest of equals):
    one validation curve can jump (KDDCUP99: by 0.2 F1 between neighbouring epochs), and a stopping point whose
    neighbours are good too is one that carries over. Only the states that can still be chosen are kept: the best
    epoch whose window is complete, and the last ``window`` epochs."""
    unit: str
    samples: torch.Tensor
    labels: np.ndarray
    metric: Callable
    score: str
    memory_model: bool
    window: int = STOP_WINDOW
    curve: list = field(default_factory=list)
    states: dict = field(default_factory=dict)   # epoch (1-based) -> state dict (tensors on the CPU)

    def smoothed(self, epoch):
        return float(smoothed_curve(self.curve, self.window)[epoch - 1])

    def best_epoch(self, finished=False):
        """The epoch chosen so far among those whose window is complete (all of them when ``finished``)."""
        complete = len(self.curve) if finished else len(self.curve) - self.window
        return max(range(1, complete + 1), key=self.smoothed, default=None)

    def observe(self, epoch, model):
        """Score the validation samples with the model of ``epoch`` (1-based), and keep the states that can still
        be chosen; leaves the model in training mode."""
        scores = finite_scores(score_samples(model, self.samples, self.score, self.memory_model),
                               f'{self.unit} after epoch {epoch}', 'validation sample',
                               'the training diverged; try a smaller --LR')
        self.curve.append(float(self.metric(scores, self.labels)))
        self.states[epoch] = {name: tensor.detach().to('cpu', copy=True) for name, tensor in
                              model.state_dict().items()}
        best = self.best_epoch()
        self.states = {e: state for e, state in self.states.items() if e == best or e > epoch - self.window}
        model.train()

    def chosen(self):
        """(chosen epoch, its weights) once training has ended."""
        epoch = self.best_epoch(finished=True)
        return epoch, self.states[epoch]

    def summary(self):
        epoch = self.best_epoch(finished=True)
        return {'curve': [round(value, 6) for value in self.curve], 'window': self.window, 'chosen_epoch': epoch,
                'smoothed': self.smoothed(epoch), 'samples': int(len(self.labels)),
                'anomalies': int(np.sum(self.labels))}

    def state(self):
        return {'curve': list(self.curve), 'states': self.states}

    def restore(self, state):
        self.curve, self.states = list(state['curve']), dict(state['states'])


def train_unit(model, samples, schedule, losses, seed, tb_writer=None, on_epoch_end=None, checkpoint=None,
               resume=False, stop=None):
    """``schedule.epochs`` epochs of Adam on mini-batches of ``samples`` (a tensor on the model's device) in a
    permutation drawn from a generator seeded with ``seed``; returns the mean loss of each epoch.
    ``on_epoch_end(epoch, model)``, if given, is called after every epoch (1-based). ``checkpoint``
    (:class:`UnitCheckpoint`), if given, saves the training state after every epoch and, with ``resume``, first
    continues from the state it holds. ``stop`` (:class:`ValidationStop`, --EarlyStopping), if given, scores the
    validation samples after every epoch, and the model ends with the weights of the epoch it chooses."""
    # foreach: one kernel per operation over all parameters instead of one per parameter; the same numbers, bit
    # for bit, and about 10 % off a KDD step, whose time is mostly per-operation overhead
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr, foreach=True)
    generator = torch.Generator().manual_seed(seed)
    epoch_losses = checkpoint.restore(model, optimizer, generator, stop) if checkpoint is not None and resume else []
    if epoch_losses:
        tqdm.write(f'resuming from {checkpoint.path}: {len(epoch_losses)} of {schedule.epochs} epochs done')
    model.train()
    for epoch in range(len(epoch_losses), schedule.epochs):
        order = torch.randperm(len(samples), generator=generator).to(samples.device)
        values = [training_step(model, samples[batch], optimizer, losses)[1]
                  for batch in order.split(schedule.batch_size)]
        epoch_losses.append(float(np.mean([v['loss'] for v in values])))
        if tb_writer is not None:
            for name in values[0]:
                tb_writer.add_scalar(name, float(np.mean([v[name] for v in values])), epoch)
        if stop is not None:
            stop.observe(epoch + 1, model)
        if checkpoint is not None:
            checkpoint.save(model, optimizer, generator, epoch_losses, stop)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model)
            model.train()
    if stop is not None:
        model.load_state_dict(stop.chosen()[1])
    return epoch_losses


def score_samples(model, samples, score, memory_model):
    """Per-sample reconstruction error of ``samples`` (a float tensor), in eval mode and large batches."""
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        scores = [model_scores(model, batch.to(device), score, memory_model, normalised=False)
                  for batch in samples.split(SCORE_BATCH)]
    return np.asarray([s for batch in scores for s in batch], dtype=np.float64)


@dataclass
class UnitRunner:
    """What the units of one experiment share: where their files go, how they train (``schedule`` None: they are
    tested with saved weights), how they are scored."""
    setting: str
    res_path: Path
    model_dir: Path
    weight_folders: tuple      # where testing looks for a unit's weights, in order
    schedule: Schedule         # None when testing
    losses: LossSettings
    score: str
    device: torch.device
    signature: dict
    resume: bool = False
    tb_root: Path = None       # TensorBoard logs, one folder per unit (training with --IsTbLog)
    flags: object = None       # the parsed options, for load errors that name the flag at fault
    weights: dict = field(default_factory=dict)  # testing: unit name -> weights file
    keep_intermediate: bool = False  # --KeepIntermediate: keep each unit's training state after it finished
    compiled: bool = False     # --Compile: lockstep training's batched step compiled (utils/lockstep.py)
    clock: EpochClock = None   # training: epoch times and the time left (utils/progress.py)
    units_done: int = 0
    trained_in_lockstep: dict = field(default_factory=dict)  # unit -> (state, weights, losses, seconds, stop, choice)
    lr_grid: tuple = ()        # training: the learning rates each unit tries (--LRGrid, or --LR alone)
    shrink_grid: tuple = (None,)  # the shrink thresholds each unit tries (--ShrinkThresGrid; None: --ShrinkThres)
    said_no_choice: bool = False  # testing: the note on weights without a choice file was printed
    unscored: dict = field(default_factory=dict)  # training: unit -> its training states, kept until it is scored

    @classmethod
    def from_options(cls, opt, family, device, train):
        model_dir = Path(opt.ModelRoot) / f'model_{opt.setting}'
        if train and opt.Resume not in (None, 'auto'):
            raise InputError(f'--Resume {opt.Resume}: image and KDD runs resume with --Resume auto (each unit has '
                             f'its own training state); a path names the state of one video training run')
        weights_path = getattr(opt, 'ModelFilePath', None)  # a testing option
        return cls(
            setting=opt.setting, res_path=Path(opt.OutRoot) / f'res_{opt.setting}', model_dir=model_dir,
            weight_folders=(Path(weights_path),) if weights_path else (Path(opt.ModelRoot), model_dir),
            schedule=Schedule(opt.LR, opt.EpochNum, opt.BatchSize) if train else None,
            losses=LossSettings.from_options(opt), score=resolve_score_type(opt.ScoreType, opt.ModelName, family),
            device=device, signature=resume_signature(opt), resume=train and opt.Resume == 'auto',
            tb_root=Path(opt.ModelRoot) / f'log_{opt.setting}' if train and opt.IsTbLog else None, flags=opt,
            keep_intermediate=train and opt.KeepIntermediate, compiled=opt.Compile,
            lr_grid=tuple(opt.LRGrid or [opt.LR]) if train else (),
            shrink_grid=tuple(opt.ShrinkThresGrid or [None]))

    @property
    def grid_given(self):
        """Whether the units choose from a grid (--LRGrid, --ShrinkThresGrid; of one value too)."""
        return self.shrink_grid != (None,) or bool(getattr(self.flags, 'LRGrid', None))

    @property
    def candidates(self):
        """Every setting a unit tries, shrink threshold by shrink threshold (each one lockstep training)."""
        return [Candidate(lr, shrink) for shrink in self.shrink_grid for lr in self.lr_grid]

    def candidate_tag(self, candidate):
        """What names a candidate's training state beside its unit's: the values of the grids that vary."""
        return ((f'_LR{candidate.lr}' if len(self.lr_grid) > 1 else '') +
                (f'_ShrThres{candidate.shrink_thres}' if len(self.shrink_grid) > 1 else ''))

    @property
    def training(self):
        return self.schedule is not None

    def start(self, options, units):
        """Before the first unit: testing finds every unit's weights (a missing file fails before any work); the
        options (``options``, the parser that produced them) are saved beside the results (and the weights)."""
        if self.training:  # a unit's epochs: those of every candidate it tries
            self.clock = EpochClock(len(units), self.schedule.epochs * len(self.candidates))
        else:
            self.weights = {unit.name: self.find_weights(unit) for unit in units}
        options.save(self.flags, self.res_path)
        if self.training:
            options.save(self.flags, self.model_dir)

    def unit_setting(self, unit):
        """The run name of one unit, which names its weights and its training state."""
        return f'{self.setting}{unit.weight_suffix}'

    def unit_checkpoint(self, unit, candidate=None):
        """The training state of a unit (of one ``candidate`` of its grid)."""
        tag = '' if candidate is None else self.candidate_tag(candidate)
        return UnitCheckpoint(resume_file(self.model_dir, self.unit_setting(unit) + tag), self.signature)

    def unit_weights(self, unit):
        """Where this run writes (and --Resume auto looks for) a unit's final weights."""
        return self.model_dir / f'{self.unit_setting(unit)}.pt'

    def save_trained(self, unit, state, checkpoints, choice=None):
        """Write a unit's final weights (and its ``choice`` beside them, when it chose on validation data); its
        training states (``checkpoints``, one per candidate) stay until its result is written
        (:meth:`remove_training_states`): a run stopped between the two resumes from them, all epochs done, instead
        of training the unit again. Returns the weights' path."""
        weights = self.unit_weights(unit)
        if choice is not None:
            write_json(choice_path(weights), choice)
        save_torch(state, weights)
        self.unscored[unit.name] = checkpoints
        return weights

    def remove_training_states(self, unit):
        """After a unit's result is written: its training states go unless --KeepIntermediate (its weights and its
        result are all it needs)."""
        for checkpoint in self.unscored.pop(unit.name, ()):
            if not self.keep_intermediate:
                checkpoint.path.unlink(missing_ok=True)

    def saved_choice(self, unit, weights):
        """Testing: what the unit chose on its validation set (its choice file beside ``weights``: its epoch and,
        from --LRGrid and --ShrinkThresGrid, its candidate), or None (weights trained without validation data, or
        before choice files existed, such as the shipped ones). A unit that chose no shrink threshold is built
        with the model's --ShrinkThres; a chosen one the options do not offer is refused."""
        path = choice_path(weights)
        grid = [shrink for shrink in self.shrink_grid if shrink is not None]
        choice = read_json(path, 'the choice of a unit') if path.is_file() else None
        chosen = (choice or {}).get('shrink_thres')
        if chosen is None:
            if grid and not self.said_no_choice:  # once: the shipped weights of all 20 KDD runs have none
                why = (f'{path.name} names no shrink threshold' if choice else
                       f'no {path.name} beside its weights')
                tqdm.write(f'{unit.name}: {why} (trained without a grid): built with --ShrinkThres '
                           f'{self.flags.ShrinkThres}, as is every unit that chose none')
                self.said_no_choice = True
            return choice
        given = f'--ShrinkThresGrid {" ".join(map(str, grid))}' if grid else f'--ShrinkThres {self.flags.ShrinkThres}'
        if chosen not in (grid or [self.flags.ShrinkThres]):
            raise InputError(f'{path} chose shrink threshold {chosen}, which {given} does not offer: test with the '
                             f'--ShrinkThresGrid the weights were trained with')
        return choice

    def find_weights(self, unit):
        name = self.unit_weights(unit).name  # looked for in every weight folder, not only this run's
        return first_existing([folder / name for folder in self.weight_folders], f'no weights for {unit.name}',
                              'train them: bash train.sh EXPERIMENT writes them to ./results/, then '
                              'MODEL_ROOT=./results/ bash test.sh EXPERIMENT; or set --ModelRoot')

    def finished_result(self, unit):
        """``--Resume auto``: the result a unit finished with before the run was interrupted, or None. A unit
        counts as finished when its result file (written last, atomically) says so for the same options and its
        weights lie in this run's --ModelRoot (not at the path the result records, which may be relative to
        another working folder); a result written with other options is refused rather than overwritten."""
        path = self.res_path / f'{unit.name}.json'
        if not path.is_file():
            return None
        try:
            result = read_json(path, 'the result of a finished unit')
        except InputError:  # damaged: the unit runs again and rewrites it
            return None
        if result.get('signature') != self.signature:
            raise InputError(f'the result {path} was written with other options than this run\'s '
                             f'({", ".join(RESUME_SIGNATURE)} must match); delete it or rerun without --Resume')
        if not self.unit_weights(unit).is_file():
            return None
        return result

    def validation_stop(self, unit, samples, labels, metric):
        """The unit's :class:`ValidationStop` (--EarlyStopping), or None when it has no validation samples."""
        if samples is None:
            return None
        return ValidationStop(unit.name, samples.to(self.device), labels, metric, self.score,
                              self.losses.memory_model)

    def trained(self, unit, model, samples, stop=None):
        """``model`` trained on ``samples`` (with ``stop``: ended at the epoch it chooses) and saved; returns
        (weights path, epoch losses, the unit's choice or None)."""
        model.apply(weights_init)
        model.to(self.device)
        tb_writer = next(iter(self.tensorboard_writers([unit.name])), None)
        checkpoint = self.unit_checkpoint(unit)
        self.clock.start_epoch()
        losses = train_unit(model, samples.to(self.device), self.schedule, self.losses, unit.seed, tb_writer,
                            on_epoch_end=lambda epoch, _: self.clock.end_epoch(unit.name, self.units_done, epoch),
                            checkpoint=checkpoint, resume=self.resume, stop=stop)
        if tb_writer is not None:
            tb_writer.close()
        choice = None if stop is None else choice_record(self.candidates, [stop], 0)  # no grid here: one candidate
        return self.save_trained(unit, model.state_dict(), [checkpoint], choice), losses, choice

    def train_in_lockstep(self, units, build_model, source, rows, validation=None, val_metric=None):
        """Train the units that have not finished (--Resume auto) together (utils/lockstep.py), unit ``units[i]``
        on the samples ``source[rows[i]]`` (--EarlyStopping: ``validation[i]`` is its (validation samples, their
        labels), scored after every epoch with ``val_metric``), and save their weights; :meth:`run` then scores
        each with the weights it got here. With a grid (--LRGrid, --ShrinkThresGrid) every unit trains once per
        candidate, each from the weights and batch order of the unit's seed, and keeps the candidate its
        validation set chooses (:func:`choose_candidate`). A resumed unit continues from its training state, which
        has the format of the one-at-a-time path, so either path resumes the other's."""
        validation = validation or [(None, None)] * len(units)
        finished = {unit.name for unit in units if self.resume and self.finished_result(unit) is not None}
        for name in finished:  # before the epochs, so that the time left counts only the units that train
            self.clock.skip_unit(name)
        todo = [(unit, unit_rows, unit_val) for unit, unit_rows, unit_val in zip(units, rows, validation)
                if unit.name not in finished]
        if not todo:
            return
        tqdm.write(f'training {len(todo)} units in lockstep (--Lockstep)' + (
            f', each with {len(self.candidates)} candidates' if len(self.candidates) > 1 else ''))
        started = time.perf_counter()
        trained = {}  # (unit name, candidate) -> (state, epoch losses, stop, checkpoint)
        for shrink in self.shrink_grid:  # one architecture per lockstep training
            members = [(unit, unit_rows, unit_val, Candidate(lr, shrink))
                       for unit, unit_rows, unit_val in todo for lr in self.lr_grid]
            trained.update(self.train_members(members, partial(build_model, shrink_thres=shrink), source,
                                              val_metric))
        share = (time.perf_counter() - started) / len(todo)  # each unit's part of the training time
        candidates = self.candidates
        for unit, _, _ in todo:
            states, losses, stops, checkpoints = zip(*(trained[unit.name, c] for c in candidates))
            chosen = choose_candidate(candidates, stops) if self.grid_given else 0
            choice = choice_record(candidates, stops, chosen) if self.grid_given or stops[0] is not None else None
            weights = self.save_trained(unit, states[chosen], checkpoints, choice)
            self.trained_in_lockstep[unit.name] = (states[chosen], weights, losses[chosen], share, stops[chosen],
                                                   choice)

    def train_members(self, members, build_model, source, val_metric):
        """One lockstep training of ``members`` (unit, its rows, its validation data, :class:`Candidate`), all of one
        architecture; returns (unit name, candidate) -> (final or chosen state, epoch losses, stop, checkpoint)."""
        models, generators, epoch_losses, checkpoints, optimizers, stops = [], [], [], [], [], []
        for unit, _, (val, val_labels), candidate in members:
            seed_everything(unit.seed)  # as run() does before building a unit's model
            model = build_model().apply(weights_init).to(self.device)
            optimizer = torch.optim.Adam(model.parameters(), lr=candidate.lr, foreach=True)
            generator = torch.Generator().manual_seed(unit.seed)
            checkpoint = self.unit_checkpoint(unit, candidate)
            stop = self.validation_stop(unit, val, val_labels, val_metric)
            epoch_losses.append(checkpoint.restore(model, optimizer, generator, stop) if self.resume else [])
            stops.append(stop)
            models.append(model)
            optimizers.append(optimizer)
            generators.append(generator)
            checkpoints.append(checkpoint)
        stacked = StackedUnits(models, self.losses, compiled=self.compiled)
        adam = StackedAdam(stacked.params, [candidate.lr for *_, candidate in members], len(models))
        for r, (optimizer, done) in enumerate(zip(optimizers, epoch_losses)):
            if done:
                adam.load_unit_state(r, optimizer.state_dict())
        names = [unit.name + self.candidate_tag(candidate) for unit, *_, candidate in members]
        writers = self.tensorboard_writers(names)
        trainings = 'units' if len(self.lr_grid) == 1 else 'trainings, one per unit and learning rate'
        self.clock.start_epoch()

        def after_epoch(epoch, trained, losses_so_far, term_means):
            for r in trained:
                if stops[r] is not None:
                    models[r].load_state_dict(stacked.unit_state(r))
                    stops[r].observe(epoch, models[r])
                checkpoints[r].save_states(stacked.unit_state(r), adam.unit_state(r, optimizers[r].state_dict()),
                                           generators[r], losses_so_far[r], stops[r])
                self.clock.end_epoch(names[r], self.units_done, epoch)  # the first takes the epoch's time
                if writers:
                    for term, value in term_means[r].items():
                        writers[r].add_scalar(term, value, epoch - 1)
            tqdm.write(f'lockstep epoch {epoch}/{self.schedule.epochs} ({len(trained)} {trainings}): mean loss '
                       f'{np.mean([losses_so_far[r][-1] for r in trained]):.5f}; {self.clock.time_left()}')

        train_stacked(stacked, adam, generators, source.to(self.device), [unit_rows for _, unit_rows, *_ in members],
                      self.schedule, names, epoch_losses, after_epoch)
        for writer in writers:
            writer.close()
        return {(unit.name, candidate): (stacked.unit_state(r) if stops[r] is None else stops[r].chosen()[1],
                                         epoch_losses[r], stops[r], checkpoints[r])
                for r, (unit, *_, candidate) in enumerate(members)}

    def tensorboard_writers(self, names):
        """One TensorBoard writer per unit (``--IsTbLog``), or none."""
        if self.tb_root is None:
            return []
        from torch.utils.tensorboard import SummaryWriter  # slow to import: only when logging
        return [SummaryWriter(str(self.tb_root / name)) for name in names]

    def run(self, unit, build_model, data, unit_metrics, val_metric=None):
        """Seed with the unit's seed, build its model with ``build_model()`` and train it on ``data.train`` (with
        ``data.val``: stopped where ``val_metric(scores, labels)`` on it chooses) or load its weights, score
        ``data.test``, compute ``unit_metrics(scores, labels)``, write the unit's files; returns (result, model),
        the model None for a unit that had finished before (--Resume auto)."""
        if self.resume:
            result = self.finished_result(unit)
            if result is not None:
                tqdm.write(f'{unit.name}: finished before (--Resume auto), result from {self.res_path}/'
                           f'{unit.name}.json')
                self.clock.skip_unit(unit.name)
                self.units_done += 1
                return result, None
        started = time.perf_counter()
        seed_everything(unit.seed)
        stop = choice = None
        if unit.name in self.trained_in_lockstep:
            state, weights, losses, training_seconds, stop, choice = self.trained_in_lockstep.pop(unit.name)
            started -= training_seconds  # the unit's 'seconds' cover its share of the lockstep training too
            model = build_model(shrink_thres=(choice or {}).get('shrink_thres'))
            model.load_state_dict(state)
            model.to(self.device)
        elif self.training:
            model = build_model()
            stop = self.validation_stop(unit, data.val, data.val_labels, val_metric)
            weights, losses, choice = self.trained(unit, model, data.train, stop)
        else:
            weights, losses = self.weights[unit.name], None
            choice = self.saved_choice(unit, weights)
            model = build_model(shrink_thres=(choice or {}).get('shrink_thres'))
            load_weights(model, weights, self.flags)
            model.to(self.device)
        scores = finite_scores(score_samples(model, data.test, self.score, self.losses.memory_model),
                               f'{unit.name} ({weights})', 'test sample')
        result = {'unit': unit.name, 'seed': unit.seed, 'normal_class': unit.normal_class,
                  'dataset': getattr(self.flags, 'Dataset', None),
                  'metrics': unit_metrics(scores, data.labels), 'train_samples': int(len(data.train)),
                  'test_samples': int(len(data.test_labels)), 'test_anomalies': int(data.test_labels.sum()),
                  'protocol': data.description, 'weights': str(weights), 'epoch_losses': losses,
                  'seconds': time.perf_counter() - started, 'signature': self.signature,
                  **({} if stop is None else {'validation': stop.summary()}),
                  **({} if choice is None else {'choice': choice})}
        saved = {} if data.is_test is None else {'is_test': data.is_test}
        save_npz(self.res_path / f'{unit.name}_scores.npz', scores=scores, labels=data.labels, **saved)
        write_json(self.res_path / f'{unit.name}.json', result)
        self.remove_training_states(unit)
        self.units_done += 1
        left = f'; {self.clock.time_left()}' if self.training else ''
        tqdm.write(f'{unit.name}: ' + ', '.join(f'{k} {v:.4f}' for k, v in result['metrics'].items()) + left)
        return result, model

    def write_summary(self, summary, results, out_root, summary_name, headline):
        """``summary.json`` beside the unit results and ``<OutRoot>/<summary_name>_summary.json``; prints one line:
        ``headline`` (metric name, its summary key, what its n counts), with the paper's value. A summary there of
        other units or another setting is kept, and this one goes beside it, named by what differs: its number of
        units (``kdd_summary_1units.json``) or its setting (three models sharing one OutRoot each keep their own)."""
        summary = {**summary, 'setting': self.setting, 'score': self.score, 'units': [r['unit'] for r in results],
                   'seconds': float(sum(r['seconds'] for r in results))}
        write_json(self.res_path / 'summary.json', summary)
        shared = Path(out_root, f'{summary_name}_summary.json')
        earlier = read_json(shared, 'an earlier summary') if shared.is_file() else None
        if earlier is not None and not same_units(earlier, summary):
            differs = f'{len(results)}units' if earlier.get('setting') == self.setting else self.setting
            beside = shared.with_name(f'{summary_name}_summary_{differs}.json')
            print(f'note: {shared} summarises another setting or other units; kept, and this summary written to '
                  f'{beside}')
            shared = beside
        write_json(shared, summary)
        metric, key, counted = headline
        print(result_line(summary, metric, key, counted, self.flags) + f' -> {self.res_path}')
        return summary
