"""Progress of long runs (utils/progress.py): the time left, the progress file a sweep reads, and what the sweep
shows while a variant runs (utils/experiments/ablation.py)."""
import io
import json

import pytest

import script_training
from utils import progress
from utils.experiments.ablation import Progress
from utils.progress import EpochClock, format_duration, read_progress


class Clock:
    """A stand-in for time.perf_counter that the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_durations_read_as_a_person_reads_an_estimate():
    assert [format_duration(s) for s in (0, 59.6, 61, 3599, 3600, 3725)] == [
        '0m00s', '1m00s', '1m01s', '59m59s', '1h00m', '1h02m']


def test_time_left_is_the_mean_epoch_time_times_the_epochs_left_and_goes_to_the_progress_file(
        tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, 'perf_counter', clock)
    monkeypatch.setenv(progress.PROGRESS_ENV, str(tmp_path / 'progress.json'))
    epochs = EpochClock(units=3, epochs=4)
    assert epochs.time_left() == 'time left not known yet'
    epochs.start_epoch()
    clock.now += 10
    assert epochs.end_epoch('run0', 0, 1) == 10
    clock.now += 20  # the next epoch started when the last ended
    epochs.end_epoch('run0', 0, 2)
    assert epochs.seconds_left == 10 * 15 and epochs.describe() == '0m20s per epoch, about 2m30s left'
    assert read_progress(tmp_path / 'progress.json') == {'unit': 'run0', 'units_done': 0, 'units': 3, 'epoch': 2,
                                                         'epochs': 4, 'seconds_left': 150.0}
    epochs.skip_unit('run1')  # a unit finished before (--Resume auto): its four epochs are not left
    epochs.skip_unit('run1')  # said again (lockstep says it before training, each unit again when it is visited)
    assert epochs.epochs_left == 3 * 4 - 2 - 4
    assert read_progress(tmp_path / 'nothing.json') is None


def test_a_resumed_run_counts_only_the_epochs_it_still_has(monkeypatch):
    """A model resumed after epoch 7 reports epoch 8 first: 2 of its 10 are left, not 9."""
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    epochs = EpochClock(units=2, epochs=10)
    epochs.start_epoch()
    epochs.end_epoch('video', 0, 8)
    assert epochs.epochs_left == 2 + 10


def test_a_resumed_lockstep_run_counts_down_to_zero_over_the_units_it_trains(tmp_path, monkeypatch):
    """Run 0 finished before, run 1 is new: the time left counts run 1's two epochs (the finished unit's are not
    left to do: it is scored from its result after the lockstep training)."""
    from synthetic import make_kdd
    make_kdd(tmp_path / 'data', num_rows=300)
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    argv = ['--Dataset', 'KDDCUP99', '--EpochNum', '2', '--BatchSize', '64', '--MemDim', '10', '--ShrinkThres', '0.1',
            '--UseCUDA', 'False', '--IsTbLog', 'False', '--Lockstep', 'True', '--DataRoot', str(tmp_path / 'data'),
            '--ModelRoot', str(tmp_path / 'm'), '--OutRoot', str(tmp_path / 'o')]
    assert script_training.main([*argv, '--Runs', '1']) == 0
    left = []
    original = EpochClock.end_epoch
    monkeypatch.setattr(EpochClock, 'end_epoch', lambda self, *args: (original(self, *args),
                                                                      left.append(self.epochs_left))[0])
    assert script_training.main([*argv, '--Runs', '2', '--Resume', 'auto']) == 0
    assert left == [1, 0]


def test_the_sweep_shows_unit_epoch_and_both_times_left():
    """Off a terminal one line per unit (a KDD variant would print 280 lines a line per epoch); the sweep's time
    left adds the variants after this one, each as long as this one's estimated total until one has run."""
    stream = io.StringIO()
    sweep = Progress(total=3, stream=stream)
    sweep.begin('[1/3] AE')
    sweep.started -= 60  # the variant has run for a minute
    sweep.watch(None)  # nothing reported yet
    record = {'unit': 'run0', 'units_done': 0, 'units': 2, 'epoch': 3, 'epochs': 10, 'seconds_left': 240.0}
    sweep.watch(record)
    sweep.watch({**record, 'epoch': 4, 'seconds_left': 230.0})  # same unit: no new line
    sweep.watch({**record, 'unit': 'run1', 'units_done': 1, 'epoch': 1, 'seconds_left': 120.0})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('[1/3] AE: run0 (0/2 done), epoch 3/10, about 4m00s left; sweep about ')
    # 240 s left here, and two variants after it of about 60 + 240 s each
    assert lines[0].endswith('sweep about 14m00s left')
    sweep.done(300.0, skipped=False)
    assert sweep.sweep_seconds_left(100.0) == pytest.approx(100.0 + 1 * 300.0)  # the mean of those run


def test_video_training_prints_the_time_left_and_warns_before_a_slow_epoch(prepared_root, tmp_path, capsys):
    assert script_training.main(['--DataRoot', str(prepared_root), '--ModelRoot', str(tmp_path), '--UseCUDA', 'False',
                                 '--NumWorker', '0', '--MemDim', '20', '--BatchSize', '4', '--IsTbLog', 'False',
                                 '--EpochNum', '2']) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('epoch ')]
    assert len(lines) == 2 and 'per epoch, about' in lines[0] and lines[1].endswith('per epoch, done')
    script_training.warn_if_slow(2.0, 1801, 'cpu')  # 3602 s: over an hour
    script_training.warn_if_slow(2.0, 1800, 'cpu')  # 3600 s: not over
    warned = capsys.readouterr()
    assert (warned.out + warned.err).count('note: at 2.0 s per iteration an epoch takes about 1h00m on cpu') == 1


def test_progress_bars_show_only_the_terms_the_model_has():
    from utils.training import LossSettings
    assert LossSettings('MemAE').model_terms == ('loss', 'recon_loss', 'entropy_loss')
    assert LossSettings('AE').model_terms == ('loss', 'recon_loss')
    assert LossSettings('AEL1').model_terms == ('loss', 'recon_loss', 'l1_loss')


def test_a_sweep_variant_reports_progress_through_its_file(tmp_path, monkeypatch):
    """The training command of a KDD variant writes the file that the sweep's watcher reads."""
    from synthetic import make_kdd
    make_kdd(tmp_path / 'data', num_rows=300)
    seen = []
    monkeypatch.setenv(progress.PROGRESS_ENV, str(tmp_path / 'progress.json'))
    original = EpochClock.end_epoch

    def spy(self, unit, units_done, epoch):
        result = original(self, unit, units_done, epoch)
        seen.append(json.loads((tmp_path / 'progress.json').read_text()))
        return result
    monkeypatch.setattr(EpochClock, 'end_epoch', spy)
    argv = ['--Dataset', 'KDDCUP99', '--Runs', '2', '--EpochNum', '2', '--BatchSize', '64', '--MemDim', '10',
            '--ShrinkThres', '0.1', '--ModelSetting', 'FCSpar', '--UseCUDA', 'False', '--IsTbLog', 'False',
            '--DataRoot', str(tmp_path / 'data'), '--ModelRoot', str(tmp_path / 'm'), '--OutRoot', str(tmp_path / 'o')]
    assert script_training.main([*argv, '--Lockstep', 'False']) == 0
    assert [(r['unit'], r['units_done'], r['epoch']) for r in seen] == [('run0', 0, 1), ('run0', 0, 2),
                                                                         ('run1', 1, 1), ('run1', 1, 2)]
    assert seen[-1]['seconds_left'] == 0 and all(r['units'] == 2 and r['epochs'] == 2 for r in seen)
    seen.clear()
    assert script_training.main(argv) == 0  # in lockstep (the default) every epoch ends for both runs at once
    assert [(r['unit'], r['units_done'], r['epoch']) for r in seen] == [('run0', 0, 1), ('run1', 0, 1),
                                                                         ('run0', 0, 2), ('run1', 0, 2)]
    assert seen[-1]['seconds_left'] == 0 and all(r['units'] == 2 and r['epochs'] == 2 for r in seen)
