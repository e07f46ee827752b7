"""Resumable and deterministic training, safe checkpoints, a stop on non-finite losses, and one clear sentence for
every kind of bad input (on the 16 x 32 x 32 synthetic data set of conftest.py)."""
import shutil

import numpy as np
import pytest
import torch

import script_testing
import script_training
import utils.training
from data.prepare_video import prepare
from data.readers import write_ground_truth
from synthetic import make_ucsd_original
from utils.errors import run_cli

FAST = ['--UseCUDA', 'False', '--NumWorker', '0', '--MemDim', '20', '--BatchSize', '4', '--IsTbLog', 'False']
SETTING = 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim20_EntW0.0002_ShrThres0.0025_Seed1_Non'


def train(data_root, model_root, *extra):
    return run_cli(script_training.main, ['--DataRoot', str(data_root), '--ModelRoot', str(model_root), *FAST,
                                          *extra])


def log_rows(model_root):
    return (model_root / f'model_{SETTING}' / 'train_log.csv').read_text().splitlines()


def final_weights(model_root, epochs):
    return torch.load(model_root / f'model_{SETTING}' / f'{SETTING}_epoch_{epochs - 1:04d}_final.pt',
                      weights_only=True)


def assert_same_weights(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resumed_run_equals_the_uninterrupted_one_bit_for_bit(prepared_root, tmp_path):
    assert train(prepared_root, tmp_path / 'whole', '--EpochNum', '3') == 0
    assert train(prepared_root, tmp_path / 'parts', '--EpochNum', '1') == 0
    assert train(prepared_root, tmp_path / 'parts', '--EpochNum', '3', '--Resume', 'auto') == 0
    assert log_rows(tmp_path / 'parts') == log_rows(tmp_path / 'whole')  # every loss of every iteration
    assert len(log_rows(tmp_path / 'whole')) == 1 + 3 * 3
    assert_same_weights(final_weights(tmp_path / 'parts', 3), final_weights(tmp_path / 'whole', 3))


def test_same_seed_gives_identical_losses(prepared_root, tmp_path):
    for run in ('a', 'b'):
        assert train(prepared_root, tmp_path / run, '--EpochNum', '2', '--IsDeter', 'True') == 0
    assert log_rows(tmp_path / 'a') == log_rows(tmp_path / 'b')
    losses = [float(row.split(',')[2]) for row in log_rows(tmp_path / 'a')[1:]]
    assert len(set(losses)) > 1  # the log holds real, changing losses


def test_resume_auto_without_a_state_starts_afresh(prepared_root, tmp_path, capsys):
    assert train(prepared_root, tmp_path, '--EpochNum', '1', '--Resume', 'auto', '--KeepIntermediate', 'True') == 0
    assert '--Resume auto: no training state' in capsys.readouterr().out
    assert (tmp_path / f'model_{SETTING}' / f'{SETTING}_resume.pt').is_file()


def test_a_finished_run_keeps_its_final_weights_and_resume_auto_leaves_it_finished(prepared_root, tmp_path, capsys):
    """The training state is removed when the run finishes (--KeepIntermediate False, the default); --Resume auto
    then finds the run finished instead of starting it again."""
    assert train(prepared_root, tmp_path, '--EpochNum', '2') == 0
    folder = tmp_path / f'model_{SETTING}'
    assert sorted(p.name for p in folder.glob('*.pt')) == [f'{SETTING}_epoch_0000.pt', f'{SETTING}_epoch_0001_final.pt']
    final = (folder / f'{SETTING}_epoch_0001_final.pt').read_bytes()
    capsys.readouterr()
    assert train(prepared_root, tmp_path, '--EpochNum', '2', '--Resume', 'auto') == 0
    assert capsys.readouterr().out.strip().endswith(f'--Resume auto: this run finished before; its final weights are '
                                                    f'{folder / f"{SETTING}_epoch_0001_final.pt"}')
    assert (folder / f'{SETTING}_epoch_0001_final.pt').read_bytes() == final


def test_resume_refuses_plain_weights_and_other_runs(prepared_root, tmp_path, capsys):
    assert train(prepared_root, tmp_path, '--EpochNum', '1', '--KeepIntermediate', 'True') == 0
    folder = tmp_path / f'model_{SETTING}'
    assert train(prepared_root, tmp_path, '--Resume', str(folder / f'{SETTING}_epoch_0000_final.pt')) == 2
    assert 'plain weights cannot be resumed' in capsys.readouterr().err
    other_run = ['--ShrinkThres', '0.01', '--Resume', str(folder / f'{SETTING}_resume.pt')]
    assert train(prepared_root, tmp_path, *other_run) == 2
    assert f'belongs to the run {SETTING}' in capsys.readouterr().err
    assert train(prepared_root, tmp_path, '--Resume', str(tmp_path / 'nope.pt')) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_non_finite_loss_stops_with_the_iteration_and_keeps_the_last_good_state(prepared_root, tmp_path, capsys,
                                                                                 monkeypatch):
    real = utils.training.compute_losses
    calls = []

    def nan_in_epoch_two(model, batch, losses):
        loss, recon, values = real(model, batch, losses)
        calls.append(1)
        if len(calls) == 5:  # 3 iterations per epoch: the second of epoch 2
            return loss * float('nan'), recon, {**values, 'loss': float('nan')}
        return loss, recon, values
    monkeypatch.setattr(utils.training, 'compute_losses', nan_in_epoch_two)
    assert train(prepared_root, tmp_path, '--EpochNum', '3') == 2
    err = capsys.readouterr().err
    state_file = tmp_path / f'model_{SETTING}' / f'{SETTING}_resume.pt'
    assert 'the loss is nan' in err and 'at iteration 4 (epoch 2)' in err and str(state_file) in err
    state = torch.load(state_file, weights_only=True)
    assert state['epochs_done'] == 1 and all(torch.isfinite(v).all() for v in state['model'].values()
                                             if v.is_floating_point())


@pytest.fixture
def data_copy(prepared_root, tmp_path):
    """A copy of the prepared data set that a test may damage."""
    shutil.copytree(prepared_root, tmp_path / 'data')
    return tmp_path / 'data', tmp_path / 'data' / 'UCSD_P2_256'


def expect_error(main, argv, capsys, *fragments):
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err  # progress bars of the run may come first
    last = err.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'Traceback' not in err, err
    for fragment in fragments:
        assert fragment in last, err


def test_bad_data_is_one_sentence_naming_the_file(data_copy, tmp_path, capsys):
    root, dataset = data_copy
    args = ['--DataRoot', str(root), '--ModelRoot', str(tmp_path / 'm'), '--EpochNum', '1', *FAST]
    shutil.rmtree(dataset / 'training_idx' / 'Train001')
    (dataset / 'training_idx' / 'Train001').mkdir()
    expect_error(script_training.main, args, capsys, 'training_idx/Train001 holds no .mat files')
    shutil.rmtree(dataset / 'training_idx')
    expect_error(script_training.main, args, capsys, 'has no training_idx or Train_idx folder')


def test_corrupt_frame_in_a_dataloader_worker_is_one_sentence(data_copy, tmp_path, capsys):
    root, dataset = data_copy
    frame = dataset / 'training' / 'Train002' / '003.jpg'
    frame.write_bytes(frame.read_bytes()[:40])  # truncated JPEG
    args = ['--DataRoot', str(root), '--ModelRoot', str(tmp_path / 'm'), '--EpochNum', '1', *FAST,
            '--NumWorker', '1']
    expect_error(script_training.main, args, capsys, f'frame {frame} is not a readable image')


def test_debug_shows_the_traceback(data_copy, tmp_path):
    root, dataset = data_copy
    shutil.rmtree(dataset / 'training_idx')
    with pytest.raises(Exception, match='has no training_idx'):
        train(root, tmp_path / 'm', '--Debug')


def test_a_failing_run_leaves_earlier_outputs_intact(data_copy, tmp_path, capsys):
    root, dataset = data_copy
    assert train(root, tmp_path / 'm', '--EpochNum', '1') == 0
    folder = tmp_path / 'm' / f'model_{SETTING}'
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (dataset / 'training_idx' / 'Train001' / 'Train001_i001.mat').write_bytes(b'MATLAB 5.0 garbage')
    expect_error(script_training.main, ['--DataRoot', str(root), '--ModelRoot', str(tmp_path / 'm'), *FAST],
                 capsys, 'Train001_i001.mat is not a readable MATLAB .mat file')
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_ground_truth_of_the_wrong_length_names_the_video(data_copy, tmp_path, capsys):
    root, dataset = data_copy
    assert train(root, tmp_path / 'm', '--EpochNum', '1') == 0
    write_ground_truth(dataset / 'testing_gt' / 'Test002.mat', np.zeros(12))
    expect_error(script_testing.main, ['--DataRoot', str(root), '--ModelRoot', str(tmp_path / 'm'), '--OutRoot',
                                       str(tmp_path / 'out'), *FAST[:6]], capsys,
                 'video Test002 (', 'testing_gt/Test002.mat): the ground truth has 12 frames')


def test_frame_size_that_the_autoencoder_cannot_take_fails_before_training(tmp_path, capsys):
    src = make_ucsd_original(tmp_path / 'src', num_frames=18)
    prepare(src, tmp_path / 'data' / 'UCSD_P2_256', size=(24, 24), progress=False)
    expect_error(script_training.main, ['--DataRoot', str(tmp_path / 'data'), '--ModelRoot', str(tmp_path / 'm'),
                                        *FAST], capsys, 'frame height and width multiples of 16')
    assert not (tmp_path / 'm').exists()  # nothing written


def test_a_rerun_stopped_before_its_first_epoch_is_started_again_by_resume_auto(prepared_root, tmp_path, capsys,
                                                                                monkeypatch):
    """A finished run, then the same command again, stopped before its first epoch ended (Ctrl-C): the final
    weights in the folder are the earlier run's, and --Resume auto must run the interrupted one, not call it done."""
    assert train(prepared_root, tmp_path, '--EpochNum', '1') == 0
    folder = tmp_path / f'model_{SETTING}'
    earlier = (folder / f'{SETTING}_epoch_0000_final.pt').read_bytes()
    with monkeypatch.context() as patch:
        def stopped(run, epoch, iteration):
            raise KeyboardInterrupt
        patch.setattr(script_training.TrainingRun, 'train_epoch', stopped)
        assert train(prepared_root, tmp_path, '--EpochNum', '1', '--LR', '1e-3') == 130
    assert (folder / f'{SETTING}_unfinished.json').is_file()
    capsys.readouterr()
    assert train(prepared_root, tmp_path, '--EpochNum', '1', '--LR', '1e-3', '--Resume', 'auto') == 0
    out = capsys.readouterr().out
    assert 'stopped before its first epoch ended; starting it afresh' in out and 'finished before' not in out
    assert 'no training state' not in out  # said once
    assert (folder / f'{SETTING}_epoch_0000_final.pt').read_bytes() != earlier  # the interrupted run's own weights
    assert not (folder / f'{SETTING}_unfinished.json').exists()
    capsys.readouterr()
    assert train(prepared_root, tmp_path, '--EpochNum', '1', '--LR', '1e-3', '--Resume', 'auto') == 0
    assert 'this run finished before' in capsys.readouterr().out
