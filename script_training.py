"""Train MemAE (or the AE baseline): on the training clips of a prepared video data set, or through the whole
one-class protocol of an image or KDDCUP99 experiment (utils/experiments/images.py, .../kdd.py), which it then
evaluates.

    python script_training.py --ModelName MemAE --ModelSetting Conv3DSpar --Dataset UCSD_P2_256 \
        --MemDim 2000 --EntropyLossWeight 0.0002 --ShrinkThres 0.0025 --BatchSize 10 --Seed 1 \
        --DataRoot ./dataset/ --ModelRoot ./results/ --Suffix Non

As released: Adam, loss = MSE(reconstruction, input) + EntropyLossWeight * entropy of the addressing weights
(MemAE only), shuffled batches. Outputs under ``<ModelRoot>/model_<setting>/``: ``<setting>_snap.pt`` every
``SnapInterval`` iterations, ``<setting>_epoch_NNNN.pt`` every ``SaveCheckInterval`` epochs and
``<setting>_epoch_NNNN_final.pt`` at the end (plain state dicts that ``script_testing.py`` loads), plus
``opt.txt``/``opt.json``, ``train_log.csv`` and ``<setting>_resume.pt`` (the training state ``--Resume``
continues from, rewritten after every epoch); TensorBoard logs under ``<ModelRoot>/log_<setting>/``. Every file
is written atomically. A non-finite loss stops training before it updates the weights.
"""
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.registry import dataset_spec
from data.video_datasets import NORM_MEAN, NORM_STD, TrainingClipsOnDevice
from models import build_model, is_memory_model, weights_init
from models.ae_3dconv import check_clip_shape
from options import TrainOptions
from utils.checkpoint import (load_training_state, resolve_resume, restore_training, resume_file,
                              save_training_state, video_resume_signature)
from utils.distributed import per_process_batch, replicated, sampler, start_processes, stop_processes
from utils.errors import InputError, run_cli
from utils.files import AppendedLines, save_torch, write_json
from utils.interrupts import quiet_handover_in_worker
from utils.experiments import one_class_experiment
from utils.paths import input_folder, output_folder
from utils.progress import EpochClock, format_duration
from utils.memory_usage import SlotUsage
from utils.runtime import (compile_model, memory_layout, rng_state, seed_everything, set_deterministic,
                           set_precision)
from utils.training import (LOSS_TERMS, LossSettings, NonFiniteLossError, make_optimizer, non_finite_message,
                            reads_losses_late, training_step, training_step_ahead)

LOG_COLUMNS = ('epoch', 'iteration', *LOSS_TERMS)
TB_FRAME_STEP = 5  # TensorBoard shows frames 1, 6, 11 of the first clip, as released
SLOW_EPOCH_SECONDS = 3600  # an epoch longer than this gets a note pointing at the GPU or the reduced size
PRELOAD_SHARE = 0.5  # --PreloadFrames auto: frames held on the GPU if they take at most this share of its free memory


def frame_strip(clip):
    """C x T x H x W clip in [-1, 1] -> H x (k W) strip of every 5th frame of the first channel, in [0, 1]."""
    frames = clip[0, 1::TB_FRAME_STEP].detach().float().cpu() * NORM_STD + NORM_MEAN
    return torch.cat(list(frames.clamp(0, 1)), dim=-1)


def restore_training_state(opt, model_dir, model, optimizer, loader_generator, said_afresh=False):
    """``--Resume``: load the training state into the model, optimizer and random generators; returns
    (epochs done, iterations done), (0, 0) for a fresh start (``said_afresh``: the user was told already)."""
    path = resolve_resume(opt.Resume, model_dir, opt.setting)
    if path is None:
        if opt.Resume == 'auto' and not said_afresh:
            print(f'--Resume auto: no training state in {model_dir} yet, starting afresh')
        return 0, 0
    state = load_training_state(path, opt.setting, video_resume_signature(opt))
    restore_training(path, state, model, optimizer, loader_generator)
    print(f"resuming from {path}: {state['epochs_done']} epochs, {state['iteration']} iterations done")
    return state['epochs_done'], state['iteration']


def epoch_weights(model_dir, opt, epoch, final=False):
    """``<setting>_epoch_NNNN.pt``, the checkpoint after (0-based) ``epoch``, or its ``_final.pt`` twin."""
    return model_dir / f"{opt.setting}_epoch_{epoch:04d}{'_final' if final else ''}.pt"


def final_weights(model_dir, opt):
    return epoch_weights(model_dir, opt, opt.EpochNum - 1, final=True)


def unfinished_marker(model_dir, opt):
    """``<setting>_unfinished.json``: written when a run starts afresh, removed when it finishes."""
    return model_dir / f'{opt.setting}_unfinished.json'


def remove_intermediate_files(model_dir, opt):
    """After a run that finished: the files only an unfinished run needs (the snapshot and the training state)
    and the last epoch's checkpoint, the same weights as the final file (--KeepIntermediate True keeps them)."""
    for path in (model_dir / f'{opt.setting}_snap.pt', resume_file(model_dir, opt.setting),
                 epoch_weights(model_dir, opt, opt.EpochNum - 1)):
        path.unlink(missing_ok=True)


def warn_if_slow(step_seconds, iterations, device):
    """One line before a run whose epochs will take over an hour at the speed of its first step."""
    epoch_seconds = step_seconds * iterations
    if epoch_seconds > SLOW_EPOCH_SECONDS:
        tqdm.write(f'note: at {step_seconds:.1f} s per iteration an epoch takes about {format_duration(epoch_seconds)} '
                   f'on {device}: full-size video training is GPU work; on a CPU, train at a reduced size '
                   f'(README, "CPU fallback without the authors\' weights")')


def logged_epoch(row):
    """The epoch of a ``train_log.csv`` row; a damaged row counts as unfinished (it is dropped on resume)."""
    first = row.split(',', 1)[0]
    return int(first) if first.isdigit() else float('inf')


def open_train_log(path, start_epoch):
    """``train_log.csv`` for appending: a fresh file, or on resume the rows of the epochs already done (rows of
    an interrupted epoch are dropped: that epoch runs again)."""
    kept = []
    if start_epoch and path.is_file():
        kept = [row for row in path.read_text(errors='replace').splitlines()[1:] if logged_epoch(row) < start_epoch]
    return AppendedLines(path, [','.join(LOG_COLUMNS), *kept])


def preloads_frames(opt, dataset, device):
    """``--PreloadFrames``: hold the training frames on the device; auto: on CUDA, when they fit in
    ``PRELOAD_SHARE`` of its free memory (else the DataLoader, with a note)."""
    if opt.PreloadFrames != 'auto':
        return opt.PreloadFrames
    if device.type != 'cuda':
        return False
    needed, free = TrainingClipsOnDevice.frame_bytes(dataset), torch.cuda.mem_get_info(device)[0]
    if needed > PRELOAD_SHARE * free:
        print(f'note: the training frames take {needed / 2**30:.1f} GiB, more than {PRELOAD_SHARE:.0%} of the '
              f'{free / 2**30:.1f} GiB free on {device}: read through a DataLoader instead of held on the device')
        return False
    return True


def training_batches(opt, dataset, device, processes, share, generator):
    """The epoch's batches ``(positions, clips)``, shuffled by ``generator`` (or ``share``, a multi-process run's
    sampler): cut from frames held on the device (--PreloadFrames), or read by a DataLoader; the same clips in
    the same order either way."""
    batch_size = per_process_batch(opt.BatchSize, processes)
    if preloads_frames(opt, dataset, device):
        return TrainingClipsOnDevice(dataset, device, batch_size, share, generator)
    return DataLoader(dataset, batch_size=batch_size, shuffle=share is None, sampler=share,
                      num_workers=opt.NumWorker, generator=generator, pin_memory=device.type == 'cuda',
                      worker_init_fn=quiet_handover_in_worker)


def open_tensorboard(opt):
    from torch.utils.tensorboard import SummaryWriter  # imported only when logging: it is slow to import
    return SummaryWriter(log_dir=str(Path(opt.ModelRoot) / f'log_{opt.setting}'))


@dataclass
class TrainingRun:
    """What the epochs of one video training run share, and what they write."""
    opt: object
    model: torch.nn.Module      # saved and resumed
    network: torch.nn.Module    # what the steps run: the model, or its --Compile'd wrapper
    optimizer: torch.optim.Optimizer
    loader: object              # DataLoader or TrainingClipsOnDevice
    loader_generator: torch.Generator
    memory_model: bool
    model_dir: Path
    sampler: object             # DistributedSampler of a multi-process run, else None
    writes: bool                # this process writes logs and files (process 0 of a multi-process run)
    ahead: bool = False         # steps run ahead of their loss reads (a GPU: utils/training.py reads_losses_late)
    log_file: object = None
    tb_writer: object = None
    clock: EpochClock = None    # epoch times and the time left (utils/progress.py)

    @cached_property
    def losses(self):
        return LossSettings.from_options(self.opt)

    @property
    def state_file(self):
        return resume_file(self.model_dir, self.opt.setting)

    def stopped(self, error, iteration, epoch, how='training stopped before the update'):
        last = self.state_file if self.state_file.is_file() else 'none yet'
        return NonFiniteLossError(f'{error} at iteration {iteration} (epoch {epoch + 1}); {how}; last good training '
                                  f'state: {last}')

    def step(self, clips, epoch, iteration):
        """One optimisation step; returns the reconstruction and the LOSS_TERMS as a tensor. On a CPU a non-finite
        loss stops the run here, naming where, before the weights change; ahead of the reads (a GPU), the device
        skips that update and :meth:`read_losses` stops the run."""
        if self.ahead:
            return training_step_ahead(self.network, clips, self.optimizer, self.losses, self.opt.AMP)
        try:
            recon, values = training_step(self.network, clips, self.optimizer, self.losses, self.opt.AMP)
        except NonFiniteLossError as error:
            raise self.stopped(error, iteration, epoch) from None
        return recon, torch.tensor([values[term] for term in LOSS_TERMS])

    def reads_now(self, batch_idx, iteration):
        """Whether the losses of the steps so far are read after this one: always on a CPU; ahead (a GPU), only
        where a value is printed or a file is written (the snapshot), so that the device never waits otherwise."""
        opt = self.opt
        return (not self.ahead or batch_idx % opt.TextLogInterval == 0 or iteration % opt.SnapInterval == 0)

    def read_losses(self, pending, epoch):
        """``pending`` (batch index, iteration, terms on the device) read at once: rows (batch index, iteration,
        {term: value}). A non-finite loss among them (its update skipped on the device) stops the run before any
        file is written."""
        rows = torch.stack([terms for _, _, terms in pending]).tolist()
        read = [(batch_idx, iteration, dict(zip(LOSS_TERMS, row))) for (batch_idx, iteration, _), row in
                zip(pending, rows)]
        for _, iteration, values in read:
            if not math.isfinite(values['loss']):
                raise self.stopped(non_finite_message(values), iteration, epoch,
                                   'its update was skipped on the device and training stopped before writing any '
                                   'file')
        pending.clear()
        return read

    def take_losses(self, pending, epoch, losses, progress):
        """Read ``pending`` (:meth:`read_losses`) into the epoch's ``losses``; if this process writes, every
        TextLogInterval-th iteration goes to the progress bar and train_log.csv, every iteration to TensorBoard."""
        rows = self.read_losses(pending, epoch)
        losses += [values['loss'] for _, _, values in rows]
        if not self.writes:
            return
        for batch_idx, iteration, values in rows:
            if batch_idx % self.opt.TextLogInterval == 0:
                progress.set_postfix({k: f'{values[k]:.5f}' for k in self.losses.model_terms})
                self.log_file.write_line(','.join(str(x) for x in (epoch, iteration, *values.values())))
            if self.tb_writer is not None:
                for name, value in values.items():
                    self.tb_writer.add_scalar(name, value, iteration)

    def log_images_and_snapshot(self, iteration, clips, recon):
        opt = self.opt
        if self.tb_writer is not None and iteration % opt.TBImgLogInterval == 0:
            self.tb_writer.add_image('x', frame_strip(clips[0]), iteration, dataformats='HW')
            self.tb_writer.add_image('x_rec', frame_strip(recon[0]), iteration, dataformats='HW')
        if iteration % opt.SnapInterval == 0:
            save_torch(self.model.state_dict(), self.model_dir / f'{opt.setting}_snap.pt')

    def train_epoch(self, epoch, iteration):
        """One pass over this process's training clips, then (if it writes) the epoch's log line, weights and
        training state; returns the iteration count after it."""
        opt, device = self.opt, next(self.model.parameters()).device
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)  # another order every epoch, the same in every process
        losses, pending = [], []
        progress = tqdm(self.loader, desc=f'epoch {epoch + 1}/{opt.EpochNum}', unit='batch',
                        disable=not self.writes)
        # addressing statistics of the epoch, for the log and TensorBoard (a hook: no extra forward pass)
        usage = SlotUsage(self.model.mem_rep) if self.memory_model else nullcontext()
        self.clock.start_epoch()
        with usage:
            for batch_idx, (_, clips) in enumerate(progress):
                clips = clips.to(device, non_blocking=True).contiguous(memory_format=memory_layout(opt.ChannelsLast))
                step_started = time.perf_counter()
                recon, terms = self.step(clips, epoch, iteration)
                if batch_idx == 0 and not self.clock.seconds and self.writes:
                    if device.type == 'cuda':
                        torch.cuda.synchronize(device)  # once per run: the first step's real duration
                    warn_if_slow(time.perf_counter() - step_started, len(self.loader), device)
                pending.append((batch_idx, iteration, terms))
                if self.reads_now(batch_idx, iteration):
                    self.take_losses(pending, epoch, losses, progress)
                if self.writes:
                    self.log_images_and_snapshot(iteration, clips, recon)
                iteration += 1
            if pending:
                self.take_losses(pending, epoch, losses, progress)
        if self.writes:
            self.clock.end_epoch('video', 0, epoch + 1)
            self.end_epoch(epoch, iteration, losses, usage)
        return iteration

    def end_epoch(self, epoch, iteration, losses, usage):
        """The epoch's log line, TensorBoard statistics, weights and training state."""
        opt = self.opt
        self.log_file.flush()
        print(f'epoch {epoch + 1}/{opt.EpochNum}: mean loss {np.mean(losses):.6f}'
              + (f'; {usage.describe()}' if self.memory_model else '') + f'; {self.clock.describe()}')
        if self.memory_model and self.tb_writer is not None:
            self.tb_writer.add_scalar('memory/nonzero_weights_per_query', usage.nonzero_per_query, epoch)
            self.tb_writer.add_scalar('memory/slots_used', usage.slots_used, epoch)
            self.tb_writer.add_histogram('memory/slot_share', usage.shares(), epoch)
        if epoch % opt.SaveCheckInterval == 0:
            save_torch(self.model.state_dict(), epoch_weights(self.model_dir, opt, epoch))
        save_training_state(self.state_file, self.model, self.optimizer, epoch + 1, iteration,
                            rng_state(self.loader_generator), opt.setting, video_resume_signature(opt))

    def close(self):
        if self.log_file is not None:
            self.log_file.close()
        if self.tb_writer is not None:
            self.tb_writer.close()


def main(argv=None):
    options = TrainOptions()
    opt = options.parse(argv)
    seed_everything(opt.Seed)
    set_deterministic(opt.IsDeter)
    set_precision(opt.AMP)
    input_folder(opt.DataRoot, '--DataRoot')
    output_folder(opt.ModelRoot, '--ModelRoot')
    processes = start_processes(opt.UseCUDA)  # one, or those torchrun started (utils/distributed.py)
    device = processes.device
    spec = dataset_spec(opt.Dataset, opt.DataRoot)
    if spec.family != 'video':  # images and KDDCUP99: a whole protocol of one-class models, evaluated at the end
        output_folder(opt.OutRoot, '--OutRoot')
        if processes.distributed:
            raise InputError('torchrun runs video training only; start the image and KDD experiments directly')
        one_class_experiment(spec.family).run(opt, options, spec, device, train=True)
        return 0

    dataset, held_out = spec.video_training_set(opt)  # --HoldOutVideos: kept for calibration (script_testing.py)
    if held_out:
        print(f"--HoldOutVideos {opt.HoldOutVideos}: not training on {', '.join(held_out)}")
    check_clip_shape(dataset[0][1][None])  # frame size and clip length, before anything is written
    loader_generator = torch.Generator().manual_seed(opt.Seed)
    share = sampler(dataset, processes, opt.Seed)
    loader = training_batches(opt, dataset, device, processes, share, loader_generator)
    model = build_model(opt)
    model.apply(weights_init)
    model.to(device, memory_format=memory_layout(opt.ChannelsLast))
    memory_model = is_memory_model(opt.ModelName)
    ahead = reads_losses_late(device)
    optimizer = make_optimizer(model, opt.LR, ahead)

    model_dir = Path(opt.ModelRoot) / f'model_{opt.setting}'
    finished, unfinished = final_weights(model_dir, opt), unfinished_marker(model_dir, opt)
    restarted = opt.Resume == 'auto' and finished.is_file() and not resume_file(model_dir, opt.setting).is_file()
    if restarted:
        if not unfinished.is_file():
            print(f'--Resume auto: this run finished before; its final weights are {finished}')
            return 0
        print(f'--Resume auto: the latest run in {model_dir} stopped before its first epoch ended; starting it '
              f'afresh (the final weights there are an earlier run\'s, replaced when this one finishes)')
    start_epoch, iteration = restore_training_state(opt, model_dir, model, optimizer, loader_generator, restarted)
    main_process = processes.is_main
    if main_process:
        options.save(opt, model_dir)
        if start_epoch == 0:
            # a fresh start: an earlier interrupted run's state is not this run's, and until this run has a
            # training state of its own the marker tells --Resume auto that the final weights beside it are older
            resume_file(model_dir, opt.setting).unlink(missing_ok=True)
            write_json(unfinished, {'setting': opt.setting, 'started': time.strftime('%Y-%m-%d %H:%M:%S')})
    run = TrainingRun(opt, model, compile_model(replicated(model, processes), opt.Compile), optimizer, loader,
                      loader_generator, memory_model, model_dir, share, main_process, ahead,
                      log_file=open_train_log(model_dir / 'train_log.csv', start_epoch) if main_process else None,
                      tb_writer=open_tensorboard(opt) if opt.IsTbLog and main_process else None,
                      clock=EpochClock(1, opt.EpochNum))  # it counts the epochs done from the first it is told
    if main_process:
        print(f'setting: {opt.setting}; {len(dataset)} training clips, {len(loader)} iterations per epoch on '
              f'{device}' + (f' in each of {processes.world_size} processes' if processes.distributed else ''))

    model.train()
    for epoch in range(start_epoch, opt.EpochNum):
        iteration = run.train_epoch(epoch, iteration)

    final = final_weights(model_dir, opt)
    if main_process:
        save_torch(model.state_dict(), final)
        unfinished.unlink(missing_ok=True)
        print(f'final weights: {final}')
        if not opt.KeepIntermediate:
            remove_intermediate_files(model_dir, opt)
    run.close()
    stop_processes(processes)
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main, interrupted='finished epochs are kept; to go on, run the same command with '
                              '--Resume auto'))
