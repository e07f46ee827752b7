"""The paper's video training on one GPU in one command: probe, train, test, and pack what comes back.

    python -m utils.gpu_job run   --out DIR [--experiment ped2] [--DataRoot ./dataset/] [--budget 540] [FLAGS]
    python -m utils.gpu_job probe [--experiment ped2] [--DataRoot ./dataset/] [--steps 24]
    python -m utils.gpu_job unpack --src DIR [--dst ./results/]

``run`` (docs/TRAINING.md, *One GPU*) first **probes**: a few dozen training steps of the experiment's model on
its real training clips (held on the device) for each precision (``--AMP none``, ``tf32``, ``bf16``) with and
without ``--IsDeter``, each from the same initial weights on the same batches; it prints clips/s, the share of the
chip's dense rate that the training FLOPs of a clip (counted from the layer shapes) reach, and the projected
time of the run's epochs, and chooses the fastest configuration whose first losses stay within
``LOSS_TOLERANCE`` of float32's (training data only: no test clip is read). Then it **trains** the released
setting (``bash train.sh EXPERIMENT``'s flags, ``--EpochNum`` 100) with that choice under ``<work>/`` (checkpoints
stay there: a second ``run`` resumes a run that the budget cut short), **tests** the final weights with the
paper's protocol in float32, and writes into ``--out``, flat, at most 8 files: ``job.json`` (environment, probe,
choice, commands, times, the weights' parts and sha256), ``results.json``, ``scores.json`` (each test video's clip
scores), ``train_log.csv``, ``opt.json`` and the final weights cut into parts under 16 MiB.

``--budget`` is the command's time in seconds: training gets SIGTERM when only the estimated test time is left,
keeps its finished epochs, and the job says to run the same command again.

``unpack`` (on any machine) joins the parts, checks their sha256 and writes the weights where training would have
(``<dst>/model_<setting>/<setting>_epoch_NNNN_final.pt``), so ``MODEL_ROOT=<dst> bash test.sh ped2`` scores them.
"""
import argparse
import hashlib
import itertools
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from data.layout import VideoLayout
from data.registry import dataset_spec
from data.video_datasets import TrainingClipsOnDevice
from models import build_model, weights_init
from options import TestOptions, TrainOptions
from utils.benchmark import flops_per_clip
from utils.errors import InputError, run_cli
from utils.experiments.settings import VIDEO_DATA, experiment
from utils.files import make_folder, read_json, replace_atomically, write_json, write_text
from utils.interrupts import run_child
from utils.runtime import AMP_CHOICES, seed_everything, select_device, set_deterministic, set_precision
from utils.training import LossSettings, make_optimizer, training_step_ahead

REPO = Path(__file__).resolve().parent.parent
# Dense (no sparsity) rates in TFLOP/s from NVIDIA's data sheets, per --AMP: float32 on the CUDA cores, TF32 and
# bf16 on the tensor cores. Matched against the device name, first match wins.
DENSE_TFLOPS = (('H200', {'none': 67.0, 'tf32': 494.7, 'bf16': 989.4}),
                ('H100 PCIe', {'none': 51.2, 'tf32': 378.0, 'bf16': 756.0}),
                ('H100', {'none': 67.0, 'tf32': 494.7, 'bf16': 989.4}),
                ('A100', {'none': 19.5, 'tf32': 156.0, 'bf16': 312.0}))
WARMUP_STEPS = 3      # cuDNN's algorithm search (--IsDeter False) and the first kernels' set-up, not timed
COMPARED_STEPS = 5    # the first losses compared with float32's: same weights, same batches
# A configuration is accepted if each of its first COMPARED_STEPS losses lies within 5 % of float32's. The first
# loss (same weights, same batch) differs by rounding alone: bf16 keeps an 8-bit mantissa (2^-9 = 0.2 % per
# product), and the loss, a mean of many squared errors, differed by 0.07 % on the demo's model (CPU). Each later
# step starts from weights that the other rounding moved: on the demo (--LR 1e-3) the fifth losses differed by
# 2.2 %. A precision that changes what training does shows as more.
LOSS_TOLERANCE = 0.05
PART_BYTES = 15 * 2 ** 20  # the device tool returns files of at most 16 MiB
TEST_START_SECONDS = 60    # testing's start: Python, the model, every test frame decoded once
PACK_SECONDS = 15


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog='python -m utils.gpu_job', description=__doc__.split('\n\n')[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    for name in ('run', 'probe'):
        command = commands.add_parser(name)
        command.add_argument('--experiment', default='ped2', help='a video experiment of bash train.sh --help')
        command.add_argument('--DataRoot', default='./dataset/')
        command.add_argument('--steps', type=int, default=24, help='timed probe steps per configuration')
    run = commands.choices['run']
    run.add_argument('--out', required=True, help='folder for what comes back (flat, at most 8 files)')
    run.add_argument('--work', default='./results/gpu_job/', help='ModelRoot and OutRoot of the runs (stays)')
    run.add_argument('--budget', type=float, default=540.0, help='seconds this command may take')
    unpack = commands.add_parser('unpack')
    unpack.add_argument('--src', required=True, help='the folder the run wrote (its --out)')
    unpack.add_argument('--dst', default='./results/', help='ModelRoot to write the weights under')
    args, flags = parser.parse_known_args(argv)
    if args.command == 'unpack' and flags:
        parser.error(f'unrecognized arguments: {" ".join(flags)}')
    if args.command != 'unpack' and args.steps < 1:
        parser.error(f'--steps must be at least 1, got {args.steps}')
    args.flags = flags  # more script_training.py flags (e.g. --Seed 2; --AMP or --IsDeter fix that choice)
    return args


def video_settings(name):
    """(model flags, training flags, testing flags) of a video experiment of utils/experiments/settings.py."""
    try:
        settings = experiment(name)
    except ValueError as error:
        raise InputError(f'--experiment: {error}') from None
    if not any(name == data or name.startswith(f'{data}_') for data in (*VIDEO_DATA, 'demo')):
        raise InputError(f'--experiment {name} is not a video experiment; the GPU job trains video models')
    return list(settings.flags), list(settings.train_flags), list(settings.test_flags)


def training_options(args):
    """The parsed options of the run's training (the experiment's flags, then the user's)."""
    flags, train_flags, _ = video_settings(args.experiment)
    return TrainOptions().parse([*flags, *train_flags, '--DataRoot', args.DataRoot, '--Suffix', 'Non', *args.flags,
                                 '--PrintOptions', 'False'])


def training_clips(opt, device):
    """The training clips of the prepared data set, held on ``device`` in the order of ``--Seed``."""
    dataset, _ = dataset_spec(opt.Dataset, opt.DataRoot).video_training_set(opt)
    generator = torch.Generator().manual_seed(opt.Seed)
    return dataset, TrainingClipsOnDevice(dataset, device, opt.BatchSize, generator=generator)


def fresh_model(opt, device):
    seed_everything(opt.Seed)
    model = build_model(opt)
    model.apply(weights_init)
    return model.to(device).train()


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_configuration(opt, batches, device, amp, deterministic, steps):
    """Seconds per step and the first COMPARED_STEPS losses of training from the seed's initial weights on
    ``batches`` (warm-up steps first) with ``--AMP amp`` and ``--IsDeter deterministic``."""
    set_deterministic(deterministic)
    set_precision(amp)
    model = fresh_model(opt, device)
    optimizer = make_optimizer(model, opt.LR, ahead=True)
    losses = LossSettings.from_options(opt)
    terms = []
    for i, clips in enumerate(batches):
        if i == WARMUP_STEPS:
            synchronize(device)
            started = time.perf_counter()
        terms.append(training_step_ahead(model, clips, optimizer, losses, amp)[1][0])
    synchronize(device)
    seconds = (time.perf_counter() - started) / steps
    return seconds, torch.stack(terms[:COMPARED_STEPS]).tolist()


def dense_rates(device):
    """The data-sheet dense rates (TFLOP/s per --AMP) of ``device``, or None for a device not in DENSE_TFLOPS."""
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    return next((rates for key, rates in DENSE_TFLOPS if key in name), None)


def configurations(device, opt, flags):
    """(--AMP, --IsDeter) pairs to probe, float32 deterministic first (the losses' reference): each precision with
    and without cuDNN's determinism; on a CPU, where TF32 and cuDNN change nothing, float32 and bf16. An --AMP or
    --IsDeter among the user's ``flags`` fixes that choice (float32 stays, as the reference)."""
    amps = AMP_CHOICES if device.type == 'cuda' else ('none', 'bf16')
    determinism = (True, False) if device.type == 'cuda' else (True,)
    if '--AMP' in flags:
        amps = tuple(dict.fromkeys(('none', opt.AMP)))
    if '--IsDeter' in flags:
        determinism = (opt.IsDeter,)
    return [('none', True), *((amp, deterministic) for amp in amps for deterministic in determinism
                              if (amp, deterministic) != ('none', True))]


def environment(device):
    about = {'python': platform.python_version(), 'torch': torch.__version__, 'device': str(device)}
    if device.type == 'cuda':
        about.update(name=torch.cuda.get_device_name(device), cudnn=torch.backends.cudnn.version(),
                     memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2 ** 30, 1))
    return about


def probe(opt, device, steps, flags=()):
    """Time every configuration and choose one (see the module docstring); returns the probe's record."""
    dataset, clips = training_clips(opt, device)
    epochs = (batch for _ in itertools.count() for _, batch in clips)  # a small data set's next epochs too
    batches = list(itertools.islice(epochs, WARMUP_STEPS + steps))
    flops = flops_per_clip(fresh_model(opt, device), batches[0][0], backward=True)  # from the layer shapes
    clips_per_epoch = len(dataset)
    rates = dense_rates(device)
    print(f"probe on {environment(device).get('name', device)}: {clips_per_epoch} training clips of "
          f"{' x '.join(str(n) for n in batches[0].shape[1:])}, {flops / 1e9:.1f} GFLOP to train one (forward and "
          f'backward, from the layer shapes); {steps} timed steps of batch {opt.BatchSize} per configuration')
    rows, reference = [], None
    for amp, deterministic in configurations(device, opt, flags):
        seconds, losses = time_configuration(opt, batches, device, amp, deterministic, steps)
        reference = reference or losses  # the first configuration is float32, deterministic
        clips_per_second = batches[0].shape[0] / seconds
        differences = [abs(a - b) / abs(b) for a, b in zip(losses, reference)]
        row = {'AMP': amp, 'IsDeter': deterministic, 'clips_per_second': clips_per_second,
               'tflops': flops * clips_per_second / 1e12, 'first_losses': losses,
               'first_loss_relative_difference': differences[0],
               'largest_relative_loss_difference': max(differences),
               'accepted': max(differences) <= LOSS_TOLERANCE,
               'projected_seconds': opt.EpochNum * clips_per_epoch / clips_per_second}
        if rates:
            row['share_of_dense_rate'] = row['tflops'] / rates[amp]
        rows.append(row)
        print(describe_configuration(row, rates, opt.EpochNum))
    fixed = [row for row in rows if ('--AMP' not in flags or row['AMP'] == opt.AMP)
             and ('--IsDeter' not in flags or row['IsDeter'] == opt.IsDeter)]
    chosen = max((row for row in fixed if row['accepted']), key=lambda row: row['clips_per_second'], default=None)
    if chosen is None:
        raise InputError(f'--AMP {opt.AMP}: its first losses differ from float32\'s by more than {LOSS_TOLERANCE:.0%}; '
                         f'train with another --AMP')
    print(f"chosen: --AMP {chosen['AMP']} --IsDeter {chosen['IsDeter']} (the fastest whose first {COMPARED_STEPS} "
          f'losses lie within {LOSS_TOLERANCE:.0%} of float32\'s)')
    return {'environment': environment(device), 'flops_per_clip': flops, 'clips_per_epoch': clips_per_epoch,
            'epochs': opt.EpochNum, 'batch_size': opt.BatchSize, 'timed_steps': steps, 'dense_tflops': rates,
            'loss_tolerance': LOSS_TOLERANCE, 'configurations': rows,
            'chosen': {'AMP': chosen['AMP'], 'IsDeter': chosen['IsDeter']}}


def describe_configuration(row, rates, epochs):
    share = f" = {row['share_of_dense_rate']:.0%} of {rates[row['AMP']]:g} dense" if rates else ''
    verdict = 'accepted' if row['accepted'] else f'refused (> {LOSS_TOLERANCE:.0%})'
    return (f"  --AMP {row['AMP']:<4} --IsDeter {str(row['IsDeter']):<5}: {row['clips_per_second']:8.1f} clips/s, "
            f"{row['tflops']:7.2f} TFLOP/s{share}; {epochs} epochs in {row['projected_seconds'] / 60:.1f} min; "
            f"losses vs float32: first {row['first_loss_relative_difference']:.1e}, first {COMPARED_STEPS} within "
            f"{row['largest_relative_loss_difference']:.1e}: {verdict}")


def script_command(script, *flags):
    return [sys.executable, str(REPO / script), *flags]


def test_seconds_estimate(record, test_clips):
    """Seconds testing will take: its start, then the test clips' forward passes (a third of a training pass) at
    float32's training rate."""
    float32 = record['configurations'][0]
    return TEST_START_SECONDS + test_clips / (3 * float32['clips_per_second'])


def final_weights(work, opt):
    return Path(work) / f'model_{opt.setting}' / f'{opt.setting}_epoch_{opt.EpochNum - 1:04d}_final.pt'


def split_into_parts(path, out):
    """``path`` cut into files ``<name>.partNN`` of at most PART_BYTES under ``out``; their names, sizes and
    sha256, and the whole file's."""
    data = Path(path).read_bytes()
    parts = []
    for number, start in enumerate(range(0, len(data), PART_BYTES)):
        chunk = data[start:start + PART_BYTES]
        name = f'{Path(path).name}.part{number:02d}'
        replace_atomically(Path(out) / name, lambda file, chunk=chunk: file.write(chunk))
        parts.append({'file': name, 'bytes': len(chunk), 'sha256': hashlib.sha256(chunk).hexdigest()})
    return {'file': Path(path).name, 'bytes': len(data), 'sha256': hashlib.sha256(data).hexdigest(), 'parts': parts}


def pack_results(res, out):
    """results.json, and every test video's clip scores as one scores.json (the device returns few files)."""
    res = Path(res)
    write_text(Path(out) / 'results.json', (res / 'results.json').read_text())
    scores = {path.stem: np.load(path).tolist() for path in sorted(res.glob('*.npy'))}
    write_json(Path(out) / 'scores.json', scores)
    return read_json(res / 'results.json', 'the test results')


def earlier_choice(model_dir, opt):
    """The --AMP and --IsDeter of an unfinished run in ``model_dir`` (its training state and opt.json are there), so
    that a resumed run keeps the precision it started with; None for a new run."""
    if not (model_dir / f'{opt.setting}_resume.pt').is_file() or not (model_dir / 'opt.json').is_file():
        return None
    options = read_json(model_dir / 'opt.json', 'the options of the unfinished run')
    if options.get('AMP') not in AMP_CHOICES or not isinstance(options.get('IsDeter'), bool):
        raise InputError(f"{model_dir / 'opt.json'} names no valid --AMP and --IsDeter; delete {model_dir} to start "
                         f'the run afresh')
    print(f"resuming the run in {model_dir}: it keeps --AMP {options['AMP']} --IsDeter {options['IsDeter']}")
    return {'AMP': options['AMP'], 'IsDeter': options['IsDeter']}


def run_job(args):
    started = time.monotonic()
    stop_at = started + args.budget
    out, work = make_folder(args.out), make_folder(args.work)
    opt = training_options(args)
    device = select_device(opt.UseCUDA)
    flags, train_flags, test_flags = video_settings(args.experiment)
    record = probe(opt, device, args.steps, args.flags)
    if device.type == 'cuda':
        torch.cuda.empty_cache()  # the probe's models and batches: the training process needs the memory
    job = {'experiment': args.experiment, 'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'probe': record}
    chosen = earlier_choice(work / f'model_{opt.setting}', opt) or record['chosen']
    train = script_command('script_training.py', *flags, *train_flags, '--DataRoot', args.DataRoot,
                           '--ModelRoot', str(work), '--OutRoot', str(work), '--Suffix', 'Non', *args.flags,
                           '--AMP', chosen['AMP'], '--IsDeter', str(chosen['IsDeter']), '--IsTbLog', 'False',
                           '--TextLogInterval', '20', '--PreloadFrames', 'True', '--Resume', 'auto')
    test = script_command('script_testing.py', *flags, *test_flags, '--DataRoot', args.DataRoot,
                          '--ModelRoot', str(work), '--OutRoot', str(work), '--Suffix', 'Non',
                          *TestOptions().own_flags(args.flags),
                          '--AMP', 'none', '--Plots', 'False')
    job.update(chosen=chosen, commands={'train': shlex.join(train), 'test': shlex.join(test)})
    layout = VideoLayout(Path(opt.DataRoot) / opt.Dataset)
    test_clips = sum(len(list(layout.index_dir('test').joinpath(v).glob('*.mat'))) for v in layout.videos('test'))
    reserve = test_seconds_estimate(record, test_clips) + PACK_SECONDS
    left = stop_at - reserve - time.monotonic()
    projected = next((row['projected_seconds'] for row in record['configurations']
                      if (row['AMP'], row['IsDeter']) == (chosen['AMP'], chosen['IsDeter'])), 0)
    if projected > left:
        print(f'note: the {opt.EpochNum} epochs need about {projected / 60:.1f} min, more than the {left / 60:.1f} '
              f'min this budget leaves before testing: training stops then, keeps its finished epochs, and the same '
              f'command resumes it')
    train_started = time.monotonic()
    code = run_child(train, stop_at=stop_at - reserve, cwd=REPO)
    job['train_seconds'] = time.monotonic() - train_started
    model_dir = work / f'model_{opt.setting}'
    for name in ('train_log.csv', 'opt.json'):
        if (model_dir / name).is_file():
            write_text(out / name, (model_dir / name).read_text())
    weights = final_weights(work, opt)
    if code != 0 or not weights.is_file():
        job['status'] = f'training stopped (exit code {code}) before its last epoch'
        write_json(out / 'job.json', job)
        print(f"{job['status']}; its finished epochs are in {model_dir}: run the same command again to resume")
        return 1
    test_started = time.monotonic()
    code = run_child(test, cwd=REPO)
    job['test_seconds'] = time.monotonic() - test_started
    if code != 0:
        job['status'] = f'testing failed (exit code {code})'
        write_json(out / 'job.json', job)
        print(job['status'])
        return 1
    results = pack_results(work / f'res_{opt.setting}', out)
    job['weights'] = split_into_parts(weights, out)
    job.update(status='finished', auc=results['metrics']['auc'], seconds=time.monotonic() - started)
    write_json(out / 'job.json', job)
    print(f"GPU job finished: {args.experiment} frame AUC {job['auc']:.4f} (paper: see docs/REPRODUCTION.md); "
          f"training {job['train_seconds'] / 60:.1f} min, testing {job['test_seconds']:.0f} s; files in {out}")
    return 0


def unpack(args):
    """Join the weights' parts that ``run`` wrote, check every sha256, and put the weights where training would."""
    src = Path(args.src)
    job = read_json(src / 'job.json', 'the GPU job record')
    weights = job.get('weights')
    if not isinstance(weights, dict) or not isinstance(weights.get('parts'), list):
        raise InputError(f'{src / "job.json"} lists no weights: the job did not finish ({job.get("status")})')
    chunks = []
    for part in weights['parts']:
        path = src / part['file']
        if not path.is_file():
            raise InputError(f'{path} is missing: copy every part of {weights["file"]} into {src}')
        chunk = path.read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part['sha256']:
            raise InputError(f'{path} does not match its sha256 in job.json: it was damaged on the way')
        chunks.append(chunk)
    data = b''.join(chunks)
    if hashlib.sha256(data).hexdigest() != weights['sha256']:
        raise InputError(f'the joined parts do not match the sha256 of {weights["file"]} in {src / "job.json"}')
    setting = weights['file'].rsplit('_epoch_', 1)[0]
    target = make_folder(Path(args.dst) / f'model_{setting}') / weights['file']
    replace_atomically(target, lambda file: file.write(data))
    print(f"{target}: sha256 {weights['sha256']} checked; the GPU scored it frame AUC {job.get('auc')}; score it "
          f"here with MODEL_ROOT={args.dst} bash test.sh {job.get('experiment', 'ped2')}")
    return 0


def main(argv=None):
    args = parse_arguments(argv)
    if args.command == 'unpack':
        return unpack(args)
    if args.command == 'probe':
        opt = training_options(args)
        probe(opt, select_device(opt.UseCUDA), args.steps, args.flags)
        return 0
    return run_job(args)


if __name__ == '__main__':
    sys.exit(run_cli(main))
