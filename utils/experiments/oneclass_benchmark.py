"""The image and KDDCUP99 commands against a minimal loop over the same model, data and epochs
(``python -m utils.benchmark oneclass --DataRoot DIR``; see utils/benchmark.py).

The minimal loop is what the commands must cost at least: the data already in memory as one tensor, a plain
Adam loop over index batches (forward, MSE + alpha x entropy, backward, step; nothing logged, nothing saved),
then the test samples scored in one pass. The commands are the real ones (``bash train.sh kdd``, ``bash test.sh
kdd``, ``bash train.sh mnist``), run as subprocesses and timed whole: interpreter start, imports, reading the data
(the KDD parse cache warmed first, as every run after a user's first finds it), training, scoring and files.

Each row also gives the *FLOP floor* of the minimal loop's work: the forward and backward FLOPs of every training
sample pass and the forward FLOPs of every scored sample (torch's FLOP counter: matrix products and convolutions,
which dominate), divided by the FLOP rate of a 1024 x 1024 float32 matrix product measured in the same run at the
same thread count. No loop can run faster than its floor; a loop near it gains little from batching units
together (docs/SPEED.md).
"""
import os
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from data.image_sets import load_mnist
from data.kdd import load_kdd
from data.protocols import image_split, image_validation_split, kdd_indices, kdd_rows
from models import ImageMemAE, MLPMemAE, weights_init
from utils.errors import InputError
from utils.interrupts import run_child
from utils.one_class import as_tensor

REPO = Path(__file__).resolve().parents[2]
ENTROPY_WEIGHT = 0.0002


def minimal_training(model, samples, epochs, batch_size, lr, seed):
    """Plain Adam on index batches of an in-memory tensor: the least any training of these models can cost."""
    model.apply(weights_init)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(samples), generator=generator).split(batch_size):
            x = samples[batch]
            output = model(x)
            att = output['att']
            entropy = -(att * torch.log(att + 1e-12)).sum(dim=1).mean()
            loss = F.mse_loss(output['output'], x) + ENTROPY_WEIGHT * entropy
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def minimal_scores(model, samples):
    model.eval()
    with torch.inference_mode():
        return torch.cat([(model(x)['output'] - x).square().flatten(1).mean(1) for x in samples.split(8192)])


def flops_per_sample(model, batch):
    """(forward + backward FLOPs, forward FLOPs) per sample of one training step of ``model`` on ``batch``."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        output = model(batch)
        forward = counter.get_total_flops()
        F.mse_loss(output['output'], batch).backward()
        total = counter.get_total_flops()
    return total / len(batch), forward / len(batch)


def matmul_rate(size=1024, repeats=5):
    """FLOP/s of a ``size`` x ``size`` float32 matrix product at this process's thread count (the best of
    ``repeats``, after one warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    return 2 * size ** 3 / min(timed(lambda: torch.mm(a, b)) for _ in range(repeats))


def floor_seconds(flops, trained, scored, rate):
    """The FLOP floor: ``trained`` training sample passes and ``scored`` scored samples at ``rate`` FLOP/s;
    ``flops``: the per-sample (training step, forward) FLOPs of :func:`flops_per_sample`."""
    step, forward = flops
    return (trained * step + scored * forward) / rate


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def command_seconds(command, data_root, out, model_root, threads=None):
    """Wall time of ``bash <script> ...`` in the repository root, results under ``out``, weights in ``model_root``
    (``threads``: OMP_NUM_THREADS for it, else the environment's)."""
    env = {**os.environ, 'DATA_ROOT': str(data_root), 'OUT_ROOT': str(out), 'MODEL_ROOT': str(model_root)}
    if threads is not None:
        env['OMP_NUM_THREADS'] = str(threads)
    started = time.perf_counter()
    run_checked(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_checked(command, **popen_arguments):
    code = run_child(command, **popen_arguments)
    if code:
        raise InputError(f'`{shlex.join(command)}` failed (exit {code}); run it alone to see why')


def kdd_table_rows(data_root, runs, epochs, out, rate):
    """train.sh kdd (``runs`` runs, ``epochs`` epochs) and test.sh kdd (the weights train.sh just wrote) against
    the minimal loops and their FLOP floors at ``rate``; settings of utils/experiments/settings.py (batch 1024, LR
    1e-4, N = 50)."""
    source = load_kdd(data_root)  # also warms the parse cache for the commands
    records, labels = as_tensor(source.x), source.y
    splits = [kdd_indices(labels, 1 + run) for run in range(runs)]
    flops = flops_per_sample(MLPMemAE(records.shape[1], 50, 0.02), records[:1024])
    tested = sum(len(test) for _, test in splits)
    train_floor = floor_seconds(flops, epochs * sum(len(train) for train, _ in splits), tested, rate)
    test_floor = floor_seconds(flops, 0, tested, rate)

    def train_all():
        for run in range(runs):
            train_rows, test_rows = kdd_indices(labels, 1 + run)
            torch.manual_seed(1 + run)
            model = MLPMemAE(records.shape[1], 50, 0.02)
            minimal_training(model, records[train_rows], epochs, 1024, 1e-4, 1 + run)
            minimal_scores(model, records[test_rows])

    def score_all():
        for run in range(runs):
            _, test_rows = kdd_indices(labels, 1 + run)
            minimal_scores(MLPMemAE(records.shape[1], 50, 0.02), records[test_rows])

    flags = ['--Runs', str(runs), '--EpochNum', str(epochs)]
    weights = out / 'kdd_models'
    return [('kdd', f'bash train.sh kdd {" ".join(flags)}',
             command_seconds(['bash', 'train.sh', 'kdd', *flags], data_root, out / 'train_kdd', weights),
             timed(train_all), train_floor),
            ('kdd', f'MODEL_ROOT=<those weights> bash test.sh kdd --Runs {runs}',
             command_seconds(['bash', 'test.sh', 'kdd', '--Runs', str(runs)], data_root,
                             out / 'test_kdd', weights), timed(score_all), test_floor)]


def mnist_table_rows(data_root, normal_class, epochs, out, rate):
    """train.sh mnist for one class against the minimal loop (batch 64, LR 1e-3, N = 100, lambda 0.01) and its
    FLOP floor at ``rate``."""
    source = load_mnist(data_root)
    split = image_split(source.splits, normal_class, 'standard', 0.3, 1)
    train, test = as_tensor(split.train_x), as_tensor(split.test_x)
    floor = floor_seconds(flops_per_sample(ImageMemAE(100, arch='mnist', shrink_thres=0.01), train[:64]),
                          epochs * len(train), len(test), rate)

    def train_one():
        torch.manual_seed(1)
        model = ImageMemAE(100, arch='mnist', shrink_thres=0.01)
        minimal_training(model, train, epochs, 64, 1e-3, 1)
        minimal_scores(model, test)

    flags = ['--NormalClass', str(normal_class), '--EpochNum', str(epochs)]
    return [('mnist', f'bash train.sh mnist {" ".join(flags)}',
             command_seconds(['bash', 'train.sh', 'mnist', *flags], data_root, out / 'train_mnist',
                             out / 'mnist_models'),
             timed(train_one), floor)]


def startup_seconds():
    """What every command pays before its first unit: the interpreter and the imports of the scripts."""
    started = time.perf_counter()
    run_checked(['python', '-c', 'import script_training, script_testing, utils.experiments.images, '
                 'utils.experiments.kdd'], cwd=REPO)
    return time.perf_counter() - started


def oneclass_benchmark(data_root, kdd_runs, kdd_epochs, mnist_class, mnist_epochs):
    """Rows (experiment, command, command seconds, minimal-loop seconds, ratio), printed as a table."""
    startup = startup_seconds()
    # The first optimizer of a process imports torch._dynamo (about 2 s), which the commands pay once each: paid
    # here before any minimal loop is timed, so that every minimal loop measures the training alone.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    rate = matmul_rate()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [*kdd_table_rows(data_root, kdd_runs, kdd_epochs, Path(tmp), rate),
                *mnist_table_rows(data_root, mnist_class, mnist_epochs, Path(tmp), rate)]
    table = [{'experiment': e, 'command': c, 'command_seconds': s, 'minimal_seconds': m, 'ratio': s / m,
              'floor_seconds': f, 'minimal_over_floor': m / f} for e, c, s, m, f in rows]
    print(f'{"command":58} {"command s":>9} {"minimal s":>9} {"ratio":>6} {"floor s":>8} {"minimal/floor":>13}')
    for row in table:
        print(f"{row['command']:58} {row['command_seconds']:9.1f} {row['minimal_seconds']:9.1f} "
              f"{row['ratio']:6.2f} {row['floor_seconds']:8.2f} {row['minimal_over_floor']:13.2f}")
    print(f'{torch.get_num_threads()} threads, matrix products at {rate / 1e9:.1f} GFLOP/s; train.sh kdd: '
          f'{table[0]["command_seconds"] / kdd_runs:.1f} s per run; every command first spends {startup:.1f} s '
          f'starting Python and importing the scripts')
    for row in table:
        row['startup_seconds'] = startup
    return table


@contextmanager
def busy_core(busy):
    """A competing process that keeps one core busy (``busy``), as another user's job would."""
    competitor = subprocess.Popen([sys.executable, '-c', 'while True: pass']) if busy else None
    try:
        yield
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def lockstep_work(data_root, experiment, units):
    """(model, training samples, scored samples per epoch, test samples) summed over the units of ``bash train.sh
    <experiment>`` (kdd: ``units`` runs; mnist: the ten classes, seed 1), each run stopping on its validation set
    (scored after every epoch) as the settings have it; the model is the experiment's
    (utils/experiments/settings.py)."""
    if experiment == 'kdd':
        source = load_kdd(data_root)
        splits = [kdd_rows(source.y, 1 + run, 'dagmm', True, 0.2) for run in range(units)]
        return (MLPMemAE(source.x.shape[1], 50, 0.02), sum(len(rows.train) for rows in splits),
                sum(len(rows.val) for rows in splits), sum(int(rows.is_test.sum()) for rows in splits))
    source = load_mnist(data_root)
    trained = validated = tested = 0
    for normal_class in range(10):
        validation = image_validation_split(source.splits, normal_class, 'standard', 0.3, 1)
        trained += len(validation.train_x)
        validated += len(validation.test_x)
        tested += len(image_split(source.splits, normal_class, 'standard', 0.3, 1).test_x)
    return ImageMemAE(100, arch='mnist', shrink_thres=0.01, code_channels=4), trained, validated, tested


def lockstep_benchmark(data_root, kdd_runs, kdd_epochs, mnist_epochs):
    """``bash train.sh kdd`` (``kdd_runs`` runs, ``kdd_epochs`` epochs) and ``bash train.sh mnist`` (ten classes,
    ``mnist_epochs``) one unit after another (--Lockstep False) against --Lockstep True, side by side, at 2 and 1
    threads, idle and with one competing busy process; rows of (command, threads, busy, one-at-a-time seconds,
    lockstep seconds, ratio, the FLOP floor of the command's training, validation and test passes at the matrix
    rate measured at that thread count, lockstep over floor)."""
    commands = {'kdd': ['--Runs', str(kdd_runs), '--EpochNum', str(kdd_epochs)],
                'mnist': ['--EpochNum', str(mnist_epochs)]}
    epochs = {'kdd': kdd_epochs, 'mnist': mnist_epochs}
    work = {name: lockstep_work(data_root, name, kdd_runs) for name in commands}
    flops = {name: flops_per_sample(model, torch.rand(64, *((model.encoder[0].in_features,) if name == 'kdd'
                                                            else (1, 28, 28))))
             for name, (model, *_) in work.items()}
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads, busy in ((2, False), (1, False), (2, True), (1, True)):
            with busy_core(busy):
                rate = thread_rate(threads)
                for name, flags in commands.items():
                    flags = [*flags, '--IsTbLog', 'False', '--UseCUDA', 'False']
                    seconds = {}
                    for lockstep in ('False', 'True'):
                        out = Path(tmp) / f'{name}_{threads}_{busy}_{lockstep}'
                        seconds[lockstep] = command_seconds(['bash', 'train.sh', name, *flags, '--Lockstep',
                                                             lockstep], data_root, out, out / 'models', threads)
                    _, trained, validated, tested = work[name]
                    floor = floor_seconds(flops[name], epochs[name] * trained, epochs[name] * validated + tested,
                                          rate)
                    table.append({'command': f'bash train.sh {name} {" ".join(flags)}', 'threads': threads,
                                  'busy_process': busy, 'one_at_a_time_seconds': seconds['False'],
                                  'lockstep_seconds': seconds['True'], 'ratio': seconds['False'] / seconds['True'],
                                  'floor_seconds': floor, 'lockstep_over_floor': seconds['True'] / floor,
                                  'matmul_gflops': rate / 1e9})
    print('one unit after another (--Lockstep False) against --Lockstep True')
    print(f'{"command":52} {"threads":>7} {"busy":>4} {"one at a time s":>15} {"lockstep s":>10} {"ratio":>6} '
          f'{"floor s":>8} {"lockstep/floor":>14}')
    for row in table:
        print(f"{row['command']:52} {row['threads']:7d} {'yes' if row['busy_process'] else 'no':>4} "
              f"{row['one_at_a_time_seconds']:15.1f} {row['lockstep_seconds']:10.1f} {row['ratio']:6.2f} "
              f"{row['floor_seconds']:8.1f} {row['lockstep_over_floor']:14.1f}")
    return table


def thread_rate(threads):
    """:func:`matmul_rate` at ``threads`` threads (this process's count restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return matmul_rate()
    finally:
        torch.set_num_threads(before)
