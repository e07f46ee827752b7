"""End to end through the two scripts on a prepared synthetic data set of 16 x 32 x 32 clips."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics

import script_testing
import script_training
from data.layout import VideoLayout
from data.video_datasets import VideoDatasetOneDir
from models import AutoEncoderCov3DMem
from shell import SHELL_TIMEOUT, run_script
from utils.errors import run_cli

REPO = Path(__file__).resolve().parents[1]
MEMAE = ['--MemDim', '20', '--UseCUDA', 'False', '--NumWorker', '0']
AE = ['--ModelName', 'AE', '--ModelSetting', 'Conv3D', '--UseCUDA', 'False', '--NumWorker', '0']


@pytest.fixture(scope='module')
def trained(prepared_root, tmp_path_factory):
    """MemAE and AE trained for one epoch through script_training.py."""
    model_root = tmp_path_factory.mktemp('models')
    common = ['--DataRoot', str(prepared_root), '--ModelRoot', str(model_root), '--EpochNum', '1', '--BatchSize', '4',
              '--IsTbLog', 'True', '--TBImgLogInterval', '1']
    assert script_training.main(MEMAE + common + ['--KeepIntermediate', 'True']) == 0
    assert script_training.main(AE + common) == 0  # the default: what only an unfinished run needs is removed
    return model_root


def run_testing(prepared_root, model_root, out_root, *extra):
    argv = ['--DataRoot', str(prepared_root), '--ModelRoot', str(model_root), '--OutRoot', str(out_root), *extra]
    assert script_testing.main(argv) == 0
    res = [p for p in Path(out_root).iterdir() if p.name.startswith('res_')]
    assert len(res) == 1
    return res[0]


def test_training_writes_the_released_outputs(trained):
    setting = 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim20_EntW0.0002_ShrThres0.0025_Seed1_Non'
    folder = trained / f'model_{setting}'
    names = {p.name for p in folder.iterdir()}
    assert {f'{setting}_snap.pt', f'{setting}_epoch_0000.pt', f'{setting}_epoch_0000_final.pt', 'opt.txt',
            'opt.json', 'train_log.csv', f'{setting}_resume.pt'} == names  # --KeepIntermediate True
    log = (folder / 'train_log.csv').read_text().splitlines()
    assert log[0] == 'epoch,iteration,loss,recon_loss,entropy_loss,l1_loss' and len(log) == 1 + 3  # 10 clips, batch 4
    for k, row in enumerate(log[1:]):  # each row is one iteration; its loss is the weighted sum of its terms
        epoch, iteration, loss, recon, entropy, l1 = (float(v) for v in row.split(','))
        assert (epoch, iteration, l1) == (0, k, 0) and entropy > 0
        assert loss == pytest.approx(recon + 0.0002 * entropy, rel=1e-5)
    assert any((trained / f'log_{setting}').iterdir())  # TensorBoard events
    # by default a finished run keeps its final weights, not the snapshot, the training state or the last epoch's
    # checkpoint (the same weights as the final file; one epoch here)
    assert {p.name for p in (trained / 'model_AE_Conv3D_UCSD_P2_256_Non').iterdir()} == {
        'AE_Conv3D_UCSD_P2_256_Non_epoch_0000_final.pt', 'opt.txt', 'opt.json', 'train_log.csv'}


def test_tensorboard_logs_losses_addressing_and_images(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    setting = 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim20_EntW0.0002_ShrThres0.0025_Seed1_Non'
    events = EventAccumulator(str(trained / f'log_{setting}'), size_guidance={'histograms': 0}).Reload()
    tags = events.Tags()
    assert {'loss', 'recon_loss', 'entropy_loss', 'memory/nonzero_weights_per_query',
            'memory/slots_used'} <= set(tags['scalars'])
    assert {'x', 'x_rec'} <= set(tags['images']) and 'memory/slot_share' in tags['histograms']
    nonzero = events.Scalars('memory/nonzero_weights_per_query')[0].value
    assert 0 < nonzero <= 20


def test_memory_collapse_is_reported(prepared_root, tmp_path, capsys):
    argv = ['--DataRoot', str(prepared_root), '--ModelRoot', str(tmp_path), '--EpochNum', '1', '--BatchSize', '5',
            '--IsTbLog', 'False', '--ShrinkThres', '0.9']  # above any weight of a 20-slot softmax: all shrunk
    assert script_training.main(MEMAE + argv) == 0
    out = capsys.readouterr().out
    assert '0.00 non-zero addressing weights per query, 0 of 20 slots used -- memory collapse' in out


def test_testing_writes_scores_acc_and_results(prepared_root, trained, tmp_path):
    res = run_testing(prepared_root, trained, tmp_path, *MEMAE)
    assert res.name == 'res_MemAE_Conv3DSpar_UCSD_P2_256_MemDim20_EntW0.0002_ShrThres0.0025_Seed1_Non'
    for video in ('Test001', 'Test002'):
        scores = np.load(res / f'{video}.npy')
        assert scores.shape == (5,) and np.all(np.isfinite(scores)) and np.all(scores > 0)
    acc = (res / 'acc.txt').read_text().splitlines()
    assert acc[0] == f'{prepared_root / "UCSD_P2_256"}/' and acc[1].startswith('AUC: ')
    results = json.loads((res / 'results.json').read_text())
    assert results['metrics']['auc'] == pytest.approx(float(acc[1].split()[1]))
    assert results['metrics']['num_clips'] == 10 and results['score'] == 'l2'
    assert {'auc_unnormalised', 'mean_video_auc', 'aupr', 'eer'} <= set(results['metrics'])
    assert (res / 'opt.txt').is_file() and (res / 'opt.json').is_file()


def test_ae_is_scored_with_the_released_ae_score(prepared_root, trained, tmp_path):
    """The released AE score: the MSE of clip and reconstruction, both mapped back to [0, 1], recomputed here from
    the trained weights and the prepared frames."""
    from models import AutoEncoderCov3D
    res = run_testing(prepared_root, trained, tmp_path, *AE)
    assert json.loads((res / 'results.json').read_text())['score'] == 'mse'
    model = AutoEncoderCov3D(1)
    weights = trained / 'model_AE_Conv3D_UCSD_P2_256_Non' / 'AE_Conv3D_UCSD_P2_256_Non_epoch_0000_final.pt'
    model.load_state_dict(torch.load(weights, weights_only=True))
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    dataset = VideoDatasetOneDir(layout.index_dir('test') / 'Test002', layout.frames_dir('test') / 'Test002')
    with torch.no_grad():
        clips = torch.stack([dataset[i][1] for i in range(len(dataset))])
        expected = ((model.eval()(clips) * 0.5 + 0.5 - (clips * 0.5 + 0.5)) ** 2).flatten(1).mean(1)
    np.testing.assert_allclose(np.load(res / 'Test002.npy'), expected.numpy(), rtol=1e-5)


def test_legacy_checkpoint_through_the_script_equals_a_direct_forward_pass(prepared_root, tmp_path):
    torch.manual_seed(3)
    model = AutoEncoderCov3DMem(1, 20)
    model.apply(lambda m: m.reset_running_stats() if hasattr(m, 'reset_running_stats') else None)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)):
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    legacy = {k: v for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}
    weights = tmp_path / 'released.pt'
    torch.save(legacy, weights, _use_new_zipfile_serialization=False)

    res = run_testing(prepared_root, tmp_path / 'unused', tmp_path / 'out', *MEMAE, '--ModelFilePath', str(weights),
                      '--ClipWindow', '0')
    windows = run_testing(prepared_root, tmp_path / 'unused', tmp_path / 'windows', *MEMAE, '--ModelFilePath',
                          str(weights))

    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    model.eval()
    centre_maps, centre_masks = [], []  # for the localization check below
    for video in ('Test001', 'Test002'):
        dataset = VideoDatasetOneDir(layout.index_dir('test') / video, layout.frames_dir('test') / video)
        expected = []
        with torch.no_grad():
            for i in range(len(dataset)):
                clip = dataset[i][1][None]
                r = model(clip)['output'] - clip
                expected.append(torch.mean((torch.sum(r ** 2, dim=1) ** 0.5).view(1, -1), dim=-1).item())
                centre_maps.append((torch.sum(r[0, :, 8] ** 2, dim=0) ** 0.5).numpy())  # clip i: frames i+1..i+16
                mask = Image.open(prepared_root / 'UCSD_P2_256' / 'testing_masks' / video / f'{i + 9:03d}.png')
                centre_masks.append(np.asarray(mask) > 0)
        assert np.array_equal(np.load(res / f'{video}.npy'), np.array(expected))  # the released computation
        # the default clip windows: the same up to float rounding
        assert np.allclose(np.load(windows / f'{video}.npy'), np.array(expected), rtol=1e-6, atol=0)

    # Localization (the synthetic data has pixel masks): the UCSD criterion per frame (anomalous: the
    # ceil(0.4 n)-th largest error in the mask; normal: the largest error) and every pixel, from the maps above
    anomalous = np.array([m.any() for m in centre_masks])
    assert 0 < anomalous.sum() < len(anomalous)
    criterion = [np.sort(e[m])[::-1][-(-2 * m.sum() // 5) - 1] if m.any() else e.max()
                 for e, m in zip(centre_maps, centre_masks)]
    pixels = np.concatenate([e.ravel() for e in centre_maps]), np.concatenate([m.ravel() for m in centre_masks])
    for folder in (res, windows):
        localization = json.loads((folder / 'results.json').read_text())['localization']
        assert (localization['frames'], localization['anomalous_frames']) == (10, anomalous.sum())
        assert localization['videos'] == ['Test001', 'Test002']
        assert localization['pixel_level_auc'] == pytest.approx(metrics.roc_auc_score(anomalous, criterion), abs=1e-9)
        exact = metrics.roc_auc_score(pixels[1], pixels[0])
        assert abs(localization['pixel_auroc'] - exact) <= localization['pixel_auroc_bin_bound'] + 1e-12


def test_batch_size_does_not_change_scores(prepared_root, trained, tmp_path):
    one = run_testing(prepared_root, trained, tmp_path / 'b1', *MEMAE, '--ClipWindow', '0')
    three = run_testing(prepared_root, trained, tmp_path / 'b3', *MEMAE, '--BatchSize', '3', '--NumWorker', '1',
                        '--ClipWindow', '0')
    for video in ('Test001', 'Test002'):
        assert np.array_equal(np.load(three / f"{video}.npy"), np.load(one / f"{video}.npy"))


def test_score_type_option_switches_the_score(prepared_root, trained, tmp_path):
    released = run_testing(prepared_root, trained, tmp_path / 'a', *AE)
    l2 = run_testing(prepared_root, trained, tmp_path / 'b', *AE, '--ScoreType', 'l2')
    assert json.loads((l2 / 'results.json').read_text())['score'] == 'l2'
    assert not np.allclose(np.load(l2 / 'Test001.npy'), np.load(released / 'Test001.npy'))


@pytest.mark.parametrize('args, message', [
    (['--DataRoot', '/nonexistent'], 'does not exist'),
    (['--ModelName', 'VAE'], "unknown --ModelName 'VAE'; valid: AE, MemAE, AEL1"),
    (['--Dataset', 'Nope'], "unknown --Dataset 'Nope'"),
    (['--FrameNum', '8'], '--FrameNum is 8'),
])
def test_bad_input_is_one_sentence_and_exit_code_2(prepared_root, trained, tmp_path, capsys, args, message):
    argv = ['--DataRoot', str(prepared_root), '--ModelRoot', str(trained), '--OutRoot', str(tmp_path), *MEMAE, *args]
    assert run_cli(script_testing.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err and 'Traceback' not in err


def test_missing_weights_list_the_names_tried(prepared_root, tmp_path, capsys):
    argv = ['--DataRoot', str(prepared_root), '--ModelRoot', str(tmp_path), '--OutRoot', str(tmp_path), *MEMAE]
    assert run_cli(script_testing.main, argv) == 2
    err = capsys.readouterr().err
    setting = 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim20_EntW0.0002_ShrThres0.0025_Seed1_Non'
    searched = [tmp_path / f'{setting}.pt', tmp_path / f'{setting.replace("_Seed1", "")}.pt',
                tmp_path / f'model_{setting}' / f'{setting}_epoch_*_final.pt']
    assert err.startswith(f'error: no model weights found for {setting}; searched {", ".join(map(str, searched))}; '
                          'to fix: train them with the same model flags: bash train.sh EXPERIMENT')
    assert err.count('\n') == 1 and 'Options ---' not in err  # one line, no options table before it


def test_scripts_run_as_commands(prepared_root, trained, tmp_path):
    """The command line a user types, in a subprocess: CUDA asked for on a machine without it is a warning."""
    result = subprocess.run([sys.executable, 'script_testing.py', '--DataRoot', str(prepared_root), '--ModelRoot',
                             str(trained), '--OutRoot', str(tmp_path), '--MemDim', '20', '--NumWorker', '0'],
                            cwd=REPO, capture_output=True, text=True, timeout=SHELL_TIMEOUT)
    assert result.returncode == 0, result.stderr
    # the console's AUC is the one written beside the scores, in the folder the line names
    line = next(line for line in result.stdout.splitlines() if line.startswith('AUC: '))
    res = Path(line.split(' -> ')[1])
    assert res.parent == tmp_path
    assert float(line.split()[1]) == json.loads((res / 'results.json').read_text())['metrics']['auc']
    if not torch.cuda.is_available():  # one plain line, not a Python warning with a line of our source
        assert [line for line in result.stderr.splitlines() if 'CUDA' in line] == [
            'note: --UseCUDA is True but CUDA is not available: running on the CPU']
        assert 'Warning' not in result.stderr


def run_shell(script, env_roots, *args):
    return run_script('bash', script, *args, **env_roots)


def test_shell_scripts_train_then_test_an_experiment(prepared_root, tmp_path):
    roots = {'DATA_ROOT': prepared_root, 'MODEL_ROOT': tmp_path / 'models', 'OUT_ROOT': tmp_path / 'out'}
    trained = run_shell('train.sh', roots, 'ped2_ae', '--EpochNum', '1', '--UseCUDA', 'False', '--NumWorker', '0',
                        '--IsTbLog', 'False')
    assert trained.returncode == 0, trained.stderr
    tested = run_shell('test.sh', roots, 'ped2_ae', '--UseCUDA', 'False', '--NumWorker', '0')
    assert tested.returncode == 0, tested.stderr
    res = tmp_path / 'out' / 'res_AE_Conv3D_UCSD_P2_256_Non'
    results = json.loads((res / 'results.json').read_text())
    # test.sh scored the weights train.sh wrote under MODEL_ROOT, and acc.txt holds the AUC of results.json
    assert Path(results['weights']).parent == tmp_path / 'models' / 'model_AE_Conv3D_UCSD_P2_256_Non'
    assert float((res / 'acc.txt').read_text().split()[-1]) == pytest.approx(results['metrics']['auc'])


def test_shell_experiment_ped2_is_the_released_test_command():
    listed = run_script('bash', '-c', 'eval "$(python -m utils.experiments.settings ped2)" && echo "${FLAGS[@]}"'
                        ).stdout.split()
    assert listed == ('--ModelName MemAE --ModelSetting Conv3DSpar --Dataset UCSD_P2_256 --MemDim 2000 '
                      '--EntropyLossWeight 0.0002 --ShrinkThres 0.0025 --Seed 1').split()
    unknown = run_shell('test.sh', {}, 'nope')
    assert unknown.returncode == 2 and 'valid: ped2 ped2_ae ped2_nonspar' in unknown.stderr


def test_training_with_held_out_videos_never_reads_them(prepared_root, tmp_path, capsys, monkeypatch):
    """--HoldOutVideos 1: the training data set excludes the last training video and the weights go under a run
    name that says so."""
    from data.video_datasets import ClipDataset
    read, original = [], ClipDataset.__getitem__  # every clip training reads

    def recording(self, item):
        read.append(str(self.clips[item][1]))
        return original(self, item)
    monkeypatch.setattr(ClipDataset, '__getitem__', recording)
    assert script_training.main(AE + ['--DataRoot', str(prepared_root), '--ModelRoot', str(tmp_path), '--EpochNum',
                                      '1', '--BatchSize', '4', '--IsTbLog', 'False', '--HoldOutVideos', '1']) == 0
    assert read and all(folder.endswith('Train001') for folder in read)
    assert '--HoldOutVideos 1: not training on Train002' in capsys.readouterr().out
    folder = tmp_path / 'model_AE_Conv3D_UCSD_P2_256_HoldOut1_Non'
    assert (folder / 'AE_Conv3D_UCSD_P2_256_HoldOut1_Non_epoch_0000_final.pt').is_file()
    assert len((folder / 'train_log.csv').read_text().splitlines()) == 1 + 2  # Train001's 5 clips, batch 4
