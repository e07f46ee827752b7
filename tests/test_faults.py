"""Fault injection across whole runs: a full disk at every file a command writes, an interrupt at random points
of a command, and broken copies of every file a test run reads. Each ends in the contract of utils/errors.py
(exit status 2, or 130/143 for an interrupt; no traceback; one sentence or line), and the output folder of an
earlier complete run is left with no temporary file and no file half-written: each of its files is either the
earlier run's, byte for byte, or a complete new one.

The commands run on a tiny prepared data set (2 + 2 videos of 20 frames of 32 x 32) and a tiny KDDCUP99 file; an
earlier complete run of the same command fills the output folder first, then the faulty run goes over it."""
import json
import random
import re
import shutil
import signal
import threading

import numpy as np
import pytest
import scipy.io as sio
import torch
from PIL import Image

import script_eval_video
import script_testing
import script_training
import utils.files as files
from data import prepare_video
from data.movies import movie_frames
from models import AutoEncoderCov3DMem
from one_sentence import expect_one_sentence
from synthetic import make_kdd, make_shanghaitech, make_ucsd_original
from utils.errors import InputError, run_cli
from utils.localization import LocalizationAccumulator

VIDEO = ['--UseCUDA', 'False', '--NumWorker', '0', '--MemDim', '20']
REAL_OPEN = open


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp('weights') / 'memae.pt'
    torch.manual_seed(0)
    torch.save(AutoEncoderCov3DMem(1, 20).state_dict(), path)
    return path


@pytest.fixture(scope='module')
def kdd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('kdd')
    make_kdd(root, num_rows=300)
    return root


@pytest.fixture(scope='module')
def ucsd_source(tmp_path_factory):
    return make_ucsd_original(tmp_path_factory.mktemp('source'), num_frames=20)


@pytest.fixture
def inputs(prepared_root, kdd_root, weights, ucsd_source):
    return {'prepared_root': prepared_root, 'kdd_root': kdd_root, 'weights': weights, 'source': ucsd_source}


def command(name, out, prepared_root=None, kdd_root=None, weights=None, source=None):
    """(main, argv) of each kind of command, writing everything under ``out``."""
    test = ['--DataRoot', str(prepared_root), '--OutRoot', str(out), '--ModelFilePath', str(weights), *VIDEO]
    if name == 'prepare':
        return prepare_video.main, ['--src', str(source), '--dst', str(out / 'UCSD_P2_256'), '--size', '32', '32',
                                    '--overwrite']
    if name == 'test':
        return script_testing.main, [*test, '--Plots', 'True']
    if name == 'video':
        return script_testing.main, [*test, '--Plots', 'True', '--Video',
                                     str(prepared_root / 'UCSD_P2_256' / 'testing' / 'Test001')]
    if name == 'train':
        return script_training.main, ['--DataRoot', str(prepared_root), '--ModelRoot', str(out), *VIDEO,
                                      '--IsTbLog', 'False', '--EpochNum', '2', '--BatchSize', '4',
                                      '--SaveCheckInterval', '1']
    assert name == 'kdd'
    return script_training.main, ['--Dataset', 'KDDCUP99', '--Runs', '2', '--EpochNum', '2', '--BatchSize', '64',
                                  '--MemDim', '10', '--ModelSetting', 'FCSpar', '--UseCUDA', 'False',
                                  '--IsTbLog', 'False', '--DataRoot', str(kdd_root), '--ModelRoot',
                                  str(out / 'models'), '--OutRoot', str(out), '--Lockstep', 'False']


COMMANDS = ['prepare', 'test', 'video', 'train', 'kdd']


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def readable(path):
    """Whether ``path`` is a complete file of its format (what a reader of a half-written one would fail on)."""
    suffix = path.suffix
    try:
        if suffix == '.pt':
            torch.load(path, weights_only=True)
        elif suffix == '.json':
            json.loads(path.read_text())
        elif suffix == '.npy':
            np.load(path)
        elif suffix == '.npz':
            with np.load(path) as content:
                for key in content:
                    content[key]
        elif suffix in ('.png', '.gif', '.jpg'):
            with Image.open(path) as image:
                image.load()
        elif suffix == '.mat':
            sio.loadmat(path)
        elif suffix == '.mp4':
            return len(list(movie_frames(path))) > 0
        else:  # text: whole lines
            return path.read_text().endswith('\n')
    except Exception:
        return False
    return True


def check_folder_after_fault(out, before, stable, failed=None):
    """No temporary file; every file is the earlier run's (always so for ``stable`` ones, whose bytes do not
    change between runs, and for the file whose write ``failed``) or a complete new one."""
    after = snapshot(out)
    assert not [name for name in after if name.endswith('.tmp')], sorted(after)
    for name, data in after.items():
        if name in stable or name == failed:
            assert data == before[name], name
        else:
            assert readable(out / name), name
    assert set(before) - set(after) == set(), 'a file of the earlier run went missing'


def final_path(temporary):
    """The file a temporary file of utils.files.replace_atomically (``.<name>.<pid>.tmp``) is written for."""
    return temporary.with_name(temporary.name[1:].rsplit('.', 2)[0])


class WriteSpy:
    """Records every path written through utils/files.py, in order, at the opening of its temporary file."""

    def __init__(self, monkeypatch):
        self.paths = []

        def spy(path, mode='r', *args, **kwargs):
            if 'w' in mode:
                self.paths.append(final_path(path))
            return REAL_OPEN(path, mode, *args, **kwargs)
        monkeypatch.setattr(files, 'open', spy, raising=False)


@pytest.fixture
def complete_run(inputs, tmp_path, monkeypatch, capsys):
    """Run a command twice into one folder; returns (main, argv, out, its files, the names of those whose bytes
    the second run left unchanged, every path written)."""
    def run(name):
        out = tmp_path / 'out'
        main, argv = command(name, out, **inputs)
        assert run_cli(main, argv) == 0
        first = snapshot(out)
        assert len(first) >= 5 and all(readable(out / name) for name in first), sorted(first)
        with monkeypatch.context() as patch:
            spy = WriteSpy(patch)
            assert run_cli(main, argv) == 0
        second = snapshot(out)
        capsys.readouterr()
        # Only complete content is asked of a training log, which starts afresh with every run that does not
        # resume, and of .mat and .mp4 files, whose headers hold the time they were written (to the second: two
        # runs within one second write the same bytes, a third a second later does not).
        stable = {n for n in second if first.get(n) == second[n]
                  and not n.endswith(('train_log.csv', '.mat', '.mp4'))}
        return main, argv, out, second, stable, spy.paths
    return run


def one_per_kind(paths):
    """The first path of every kind, i.e. of every place in the code that writes files: ``Test001.npy`` stands for
    every video's scores, one figure for all (they are all written by utils.plots.save_figure)."""
    kinds = {}
    for path in paths:
        kind = path.suffix if path.suffix == '.png' else re.sub(r'\d+', 'N', path.name)
        kinds.setdefault((re.sub(r'\d+', 'N', path.parent.name), kind), path)
    return list(kinds.values())


@pytest.mark.parametrize('name', COMMANDS)
def test_a_full_disk_at_each_file_is_one_sentence_and_loses_nothing(complete_run, monkeypatch, capsys, name):
    main, argv, out, before, stable, written = complete_run(name)
    assert len(one_per_kind(written)) >= 4
    for path in one_per_kind(written):
        with monkeypatch.context() as patch:
            def full_disk(target, mode='r', *args, **kwargs):
                if 'w' in mode and final_path(target) == path:
                    return REAL_OPEN('/dev/full', mode)
                return REAL_OPEN(target, mode, *args, **kwargs)
            patch.setattr(files, 'open', full_disk, raising=False)
            expect_one_sentence(main, argv, capsys, f'cannot write {path}: No space left on device')
        check_folder_after_fault(out, before, stable, failed=str(path.relative_to(out)))


class Interrupter:
    """Raises a real signal at the k-th event of a run: a module's forward pass (a point inside the computing) or
    the start of a file write (its temporary file just created)."""

    def __init__(self, monkeypatch, at, signum):
        self.count, self.at, self.signum = 0, at, signum
        self.lock = threading.Lock()  # data.prepare_video writes from several threads

        def open_then_maybe_stop(path, mode='r', *args, **kwargs):
            file = REAL_OPEN(path, mode, *args, **kwargs)
            if 'w' in mode:
                self.event()
            return file
        monkeypatch.setattr(files, 'open', open_then_maybe_stop, raising=False)
        self.hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda *_: self.event())

    def event(self):
        with self.lock:
            self.count += 1
            now = self.count == self.at
        if now:
            signal.raise_signal(self.signum)

    def remove(self):
        self.hook.remove()


@pytest.mark.parametrize('name', COMMANDS)
def test_an_interrupt_at_random_points_leaves_earlier_results_whole(complete_run, monkeypatch, capsys, name):
    main, argv, out, before, stable, _ = complete_run(name)
    with monkeypatch.context() as patch:
        counter = Interrupter(patch, at=0, signum=signal.SIGINT)
        assert run_cli(main, argv) == 0
        counter.remove()
    capsys.readouterr()
    check_folder_after_fault(out, before, stable)
    points = random.Random(f'interrupt {name}').sample(range(1, counter.count + 1), 3)  # a fixed seed per command
    for at, signum in zip(points, (signal.SIGINT, signal.SIGTERM, signal.SIGINT)):
        with monkeypatch.context() as patch:
            interrupter = Interrupter(patch, at, signum)
            try:
                code = run_cli(main, argv)
            finally:
                interrupter.remove()
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip() and '%|' not in line]
        assert code == 128 + signum and 'Traceback' not in err, (at, err)
        assert len(lines) == 1 and lines[0].startswith(f'interrupted ({signal.Signals(signum).name}); '), (at, err)
        check_folder_after_fault(out, before, stable)


# ---- readers: broken copies of each file a test run reads --------------------------------------------------------

def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def first(folder, pattern):
    return sorted(folder.rglob(pattern))[0]


# (what, how to find it in the prepared data set, damage, fragment of the sentence besides the file's path); the
# mask is of frame 9, the centre of the first clip (the masks of other frames are not read)
READ_FAULTS = [
    ('frame', 'testing/*/*.jpg', 'missing', 'names frame 1, which is not in'),
    ('frame', 'testing/*/*.jpg', 'truncated', 'is not a readable image'),
    ('frame', 'testing/*/*.jpg', 'other size', 'pixels, but'),
    ('index', 'testing_idx/*/*.mat', 'truncated', 'is not a readable MATLAB .mat file'),
    ('index', 'testing_idx/*/*.mat', 'wrong type', 'must be a non-empty numeric array'),
    ('ground truth', 'testing_gt/*.mat', 'missing', 'does not exist'),
    ('ground truth', 'testing_gt/*.mat', 'truncated', 'is not a readable MATLAB .mat file'),
    ('ground truth', 'testing_gt/*.mat', 'wrong type', 'must be a non-empty numeric array'),
    ('pixel mask', 'testing_masks/Test001/009.png', 'missing', 'has no mask for frame'),
    ('pixel mask', 'testing_masks/Test001/009.png', 'truncated', 'is not a readable image'),
    ('pixel mask', 'testing_masks/Test001/009.png', 'other size', 'is 48 x 32 pixels, but the frames of Test001 are '
                                                                  '32 x 32: masks must have the prepared frame size'),
]


def damage(path, how):
    if how == 'missing':
        path.unlink()
    elif how == 'truncated':
        truncate(path)
    elif how == 'other size':
        Image.new('L', (48, 32)).save(path, format='PNG' if path.suffix == '.png' else 'JPEG')
    elif how == 'wrong type':
        name = 'idx' if 'idx' in str(path.parent.parent.name) else 'l'
        sio.savemat(path, {'v_name': 'Test001', name: np.array([['a', 'b']])})


@pytest.mark.parametrize('what, pattern, how, fragment', READ_FAULTS,
                         ids=[f'{what}-{how}' for what, _, how, _ in READ_FAULTS])
def test_a_broken_data_file_is_one_sentence_naming_it(prepared_root, weights, tmp_path, capsys, what, pattern, how,
                                                      fragment):
    root = tmp_path / 'data'
    shutil.copytree(prepared_root, root)
    target = first(root / 'UCSD_P2_256', pattern)
    damage(target, how)
    named = str(target) if how != 'missing' or what == 'ground truth' else str(target.parent)  # a file's folder
    main, argv = command('test', tmp_path / 'out', root, weights=weights)
    expect_one_sentence(main, argv, capsys, named, fragment)


def tensors_with(weights, change):
    state = torch.load(weights, weights_only=True)
    key = 'encoder.0.weight'
    state[key] = change(state[key])
    return state, key


@pytest.mark.parametrize('change, fragment', [
    (lambda w: (w * 1000).to(torch.int32), 'holds int32 values, not floating-point weights'),
    (lambda w: w.to(torch.bool), 'holds bool values, not floating-point weights'),
    (lambda w: w.index_fill(0, torch.tensor([0]), float('nan')), 'non-finite value(s) (NaN or Inf)'),
    (lambda w: w.index_fill(0, torch.tensor([1]), float('inf')), 'non-finite value(s) (NaN or Inf)'),
], ids=['int32', 'bool', 'nan', 'inf'])
def test_weights_that_are_not_weights_are_refused_naming_the_tensor(prepared_root, weights, tmp_path, capsys, change,
                                                                   fragment):
    state, key = tensors_with(weights, change)
    path = tmp_path / 'odd.pt'
    torch.save(state, path)
    main, argv = command('test', tmp_path / 'out', prepared_root, weights=path)
    expect_one_sentence(main, argv, capsys, f'{path}: tensor {key} ', fragment)


def test_non_finite_scores_name_the_video_and_clip(prepared_root, weights, tmp_path, capsys):
    """Finite weights whose output overflows float32 (a last decoder layer scaled by 1e37) stop the test with one
    sentence naming the video and the clip, not with an error inside scikit-learn or a meaningless AUC."""
    state = torch.load(weights, weights_only=True)
    state['decoder.9.weight'] = state['decoder.9.weight'] * 1e37
    path = tmp_path / 'overflowing.pt'
    torch.save(state, path)
    main, argv = command('test', tmp_path / 'out', prepared_root, weights=path)
    expect_one_sentence(main, argv, capsys, 'test video Test001 (', 'the score of clip 0 (0-based) is ',
                        "model's output overflowed")


def test_non_finite_scores_of_a_one_class_unit_name_the_unit_and_sample(kdd_root, tmp_path, capsys, monkeypatch):
    """The image and KDD units check their scores the same way (here the scorer made to return a NaN, as an
    overflow would) before any metric or result file."""
    import utils.one_class
    real = utils.one_class.score_samples

    def with_a_nan(*args):
        scores = real(*args)
        scores[3] = np.nan
        return scores
    monkeypatch.setattr(utils.one_class, 'score_samples', with_a_nan)
    main, argv = command('kdd', tmp_path / 'out', kdd_root=kdd_root)
    expect_one_sentence(main, argv, capsys, 'run0 (', 'Run0.pt): the score of test sample 3 (0-based) is nan, 1 of ')
    assert not list((tmp_path / 'out').rglob('run0.json'))


def test_non_finite_error_maps_name_the_video_and_frame(prepared_root):
    """The pixel-level measures get each batch's error maps before the clip scores are checked: a NaN map (an
    overflow turned inf - inf) is one sentence naming the video and the centre frame, not a histogram error."""
    masks = prepared_root / 'UCSD_P2_256' / 'testing_masks' / 'Test001'
    add_maps = LocalizationAccumulator().video('Test001', [8, 9], masks)
    maps = np.zeros((2, 32, 32), np.float32)
    maps[1, 3, 4] = np.nan
    with pytest.raises(InputError, match=r'^test video Test001: the error map of the clip centred on frame 10 is '
                                         r'not finite; the model'):
        add_maps(maps)


def test_damaged_saved_results_and_states_are_one_sentence(kdd_root, tmp_path, capsys):
    """A KDD run's own files read back on --Resume auto: a damaged unit result is redone, a damaged training
    state is one sentence naming it."""
    out = tmp_path / 'out'
    main, argv = command('kdd', out, kdd_root=kdd_root)
    assert run_cli(main, [*argv, '--KeepIntermediate', 'True']) == 0
    result = first(out, 'run0.json')
    result.write_text('{"unit": ')
    state = first(out / 'models', '*Run1_resume.pt')
    truncate(state)
    (first(out, 'run1.json')).unlink()
    expect_one_sentence(main, [*argv, '--Resume', 'auto'], capsys, str(state), 'is not a readable')
    assert json.loads(result.read_text())['unit'] == 'run0'  # the damaged result was redone before run1 failed


def test_a_damaged_video_training_state_is_one_sentence(prepared_root, tmp_path, capsys):
    """A training state whose model fits but whose optimizer part is damaged (torch would raise deep inside
    Adam's loader), or whose weights are integers."""
    out = tmp_path / 'out'
    main, argv = command('train', out, prepared_root)
    assert run_cli(main, [*argv, '--EpochNum', '1', '--KeepIntermediate', 'True']) == 0
    state_file = first(out, '*_resume.pt')
    state = torch.load(state_file, weights_only=True)
    broken = tmp_path / 'broken_resume.pt'
    torch.save({**state, 'optimizer': {'state': {}, 'param_groups': []}}, broken)
    expect_one_sentence(main, [*argv, '--Resume', str(broken)], capsys, f'{broken}: its optimizer or random states '
                        'are damaged (ValueError); delete it and start afresh')
    torch.save({**state, 'model': {k: v.to(torch.int64) for k, v in state['model'].items()}}, broken)
    expect_one_sentence(main, [*argv, '--Resume', str(broken)], capsys, f'{broken}: tensor encoder.0.weight holds '
                        'int64 values')


def test_damaged_cifar10_batches_are_one_sentence(tmp_path, capsys):
    """torchvision's reader of the CIFAR-10 python batches finds a checksum that does not match: one sentence
    naming the folder, not torchvision's RuntimeError."""
    folder = tmp_path / 'data' / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    for name in ('data_batch_1', 'test_batch', 'batches.meta'):
        (folder / name).write_bytes(b'not a pickle')
    argv = ['--Dataset', 'CIFAR10', '--DataRoot', str(tmp_path / 'data'), '--OutRoot', str(tmp_path / 'out'),
            '--ModelRoot', str(tmp_path / 'models'), '--UseCUDA', 'False', '--IsTbLog', 'False', '--EpochNum', '1']
    expect_one_sentence(script_training.main, argv, capsys, f'CIFAR-10 in {folder} could not be fetched or read '
                        '(torchvision: ', 'pass --Download True')


@pytest.mark.parametrize('content, fragment', [
    (b'\x93NUMPY garbage', 'is not a readable frame mask (ValueError'),
    (np.zeros((2, 3)), 'is not a frame mask: a 1-D array of numbers, found float64 of shape (2, 3)'),
], ids=['damaged', 'wrong shape'])
def test_damaged_shanghaitech_frame_masks_name_the_file(tmp_path, capsys, content, fragment):
    src, _ = make_shanghaitech(tmp_path, num_train=1, num_test=1, num_frames=18)
    mask = src / 'testing' / 'test_frame_mask' / '01_0001.npy'
    if isinstance(content, bytes):
        mask.write_bytes(content)
    else:
        np.save(mask, content)
    expect_one_sentence(prepare_video.main, ['--src', str(src), '--dst', str(tmp_path / 'dst')], capsys,
                        str(mask), fragment)
    assert not (tmp_path / 'dst').exists() or not any((tmp_path / 'dst').iterdir())


@pytest.mark.parametrize('scores, fragment', [
    (np.array([0.1, np.nan, 0.3, 0.2, 0.5]), 'the score of clip 1 (0-based) is nan, 1 of 5 are not finite; the file '
                                              'is damaged'),
    (np.array([0.1, 0.2, 0.3, 0.2, 0.5]) * 1j, 'must hold a 1-D array of real clip scores, found complex128'),
    (np.zeros((5, 2)), 'must hold a 1-D array of real clip scores, found float64 of shape (5, 2)'),
], ids=['nan', 'complex', '2-d'])
def test_saved_scores_that_are_not_scores_name_the_file(prepared_root, weights, tmp_path, capsys, scores, fragment):
    """``script_eval_video.py`` re-evaluates the saved ``<Video>.npy`` scores: each must be finite real numbers."""
    main, argv = command('test', tmp_path / 'out', prepared_root, weights=weights)
    argv = argv[:argv.index('--Plots')]  # the figures are not needed here
    assert run_cli(main, argv) == 0
    saved = first(tmp_path / 'out', 'Test001.npy')
    np.save(saved, scores)
    expect_one_sentence(script_eval_video.main, argv, capsys, str(saved), fragment)
