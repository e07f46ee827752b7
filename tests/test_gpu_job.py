"""The GPU path of video training, run on the CPU: training clips held on the device (the DataLoader's clips and
order), steps that run ahead of their loss reads (fused Adam skips a non-finite update on the device), and the
one-command GPU job (probe, train, test, pack) with its unpacking (utils/gpu_job.py)."""
import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

import script_testing
import script_training
import utils.training
from data.layout import VideoLayout
from data.video_datasets import TrainingClipsOnDevice, VideoDataset
from test_robustness import SETTING, final_weights, log_rows, train
from utils import gpu_job
from utils.errors import InputError, run_cli
from utils.training import LossSettings, make_optimizer, training_step_ahead



def training_set(prepared_root):
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    return VideoDataset(layout.index_dir('train'), layout.frames_dir('train'), frame_num=16)


@pytest.mark.parametrize('workers', [0, 1])
def test_clips_held_on_the_device_are_the_dataloaders_clips_in_its_order(prepared_root, workers):
    dataset = training_set(prepared_root)
    loader_generator, device_generator = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    loader = DataLoader(dataset, batch_size=3, shuffle=True, generator=loader_generator, num_workers=workers)
    held = TrainingClipsOnDevice(dataset, torch.device('cpu'), 3, generator=device_generator)
    assert len(held) == len(loader) == 4
    for _ in range(2):  # two epochs: the second order is drawn from where the first left the generator
        for (positions, clips), (held_positions, held_clips) in zip(loader, held, strict=True):
            assert torch.equal(held_positions, positions) and torch.equal(held_clips, clips)
    assert torch.equal(device_generator.get_state(), loader_generator.get_state())  # a resumed run draws alike
    assert held.frame_bytes(dataset) == held.video.frames.numel()


def test_a_processes_share_of_clips_held_on_the_device_is_its_samplers(prepared_root):
    dataset = training_set(prepared_root)
    shares = [DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=5) for _ in range(2)]
    for share in shares:
        share.set_epoch(1)
    loader = DataLoader(dataset, batch_size=2, sampler=shares[0])
    held = TrainingClipsOnDevice(dataset, torch.device('cpu'), 2, sampler=shares[1])
    for (positions, clips), (held_positions, held_clips) in zip(loader, held, strict=True):
        assert torch.equal(held_positions, positions) and torch.equal(held_clips, clips)


def test_training_on_frames_held_on_the_device_equals_the_dataloader_run(prepared_root, tmp_path):
    assert train(prepared_root, tmp_path / 'loader', '--EpochNum', '2', '--PreloadFrames', 'False') == 0
    assert train(prepared_root, tmp_path / 'held', '--EpochNum', '2', '--PreloadFrames', 'True') == 0
    assert log_rows(tmp_path / 'held') == log_rows(tmp_path / 'loader')
    held, loaded = final_weights(tmp_path / 'held', 2), final_weights(tmp_path / 'loader', 2)
    assert all(torch.equal(held[k], loaded[k]) for k in loaded)


def test_a_non_finite_step_ahead_changes_no_weight_and_no_adam_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 2), torch.nn.Linear(2, 6))
    optimizer = make_optimizer(model, 1e-3, ahead=True)
    losses = LossSettings('AE')
    batch = torch.randn(4, 6)
    training_step_ahead(model, batch, optimizer, losses)
    before = [p.detach().clone() for p in model.parameters()]
    state = {k: v.clone() for k, v in optimizer.state[next(model.parameters())].items()}
    _, terms = training_step_ahead(model, batch * float('inf'), optimizer, losses)
    assert not torch.isfinite(terms[0])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.equal(v, optimizer.state[next(model.parameters())][k]) for k, v in state.items())
    training_step_ahead(model, batch, optimizer, losses)  # a finite step updates again
    assert not torch.equal(before[0], next(model.parameters()))


@pytest.fixture
def steps_ahead(monkeypatch):
    """Video training as on a GPU (losses read late, fused Adam), here on the CPU; counts the reads."""
    monkeypatch.setattr(script_training, 'reads_losses_late', lambda device: True)
    reads = []
    real = script_training.TrainingRun.read_losses

    def counted(run, pending, epoch):
        reads.append([iteration for _, iteration, _ in pending])
        return real(run, pending, epoch)
    monkeypatch.setattr(script_training.TrainingRun, 'read_losses', counted)
    return reads


def test_steps_ahead_are_read_only_where_a_value_is_printed_and_train_as_the_cpu_path(prepared_root, tmp_path,
                                                                                     steps_ahead, monkeypatch):
    common = ('--EpochNum', '3', '--TextLogInterval', '2', '--SnapInterval', '100')
    assert train(prepared_root, tmp_path / 'ahead', *common) == 0
    # 3 iterations per epoch: read after the first (printed), then the last two at the epoch's end
    assert steps_ahead == [[0], [1, 2], [3], [4, 5], [6], [7, 8]]
    assert len(log_rows(tmp_path / 'ahead')) == 1 + 2 * 3  # batches 0 and 2 of each epoch, as on the CPU path
    steps_ahead.clear()
    monkeypatch.setattr(script_training, 'reads_losses_late', utils.training.reads_losses_late)  # the CPU path
    assert train(prepared_root, tmp_path / 'cpu', *common) == 0
    assert len(steps_ahead) == 9  # read after every step
    ahead, cpu = ([[float(x) for x in row.split(',')] for row in log_rows(root)[1:]]
                  for root in (tmp_path / 'ahead', tmp_path / 'cpu'))
    # fused and foreach Adam compute the same update with other roundings; 9 steps of lr 1e-4 on a loss ~0.3
    assert np.allclose(ahead, cpu, rtol=1e-3, atol=0)


def test_a_non_finite_loss_ahead_stops_naming_its_iteration_before_any_file_is_written(prepared_root, tmp_path,
                                                                                      capsys, steps_ahead,
                                                                                      monkeypatch):
    real = utils.training.loss_terms
    calls = []

    def nan_in_epoch_two(model, batch, losses):
        loss, recon, terms = real(model, batch, losses)
        calls.append(1)
        if len(calls) == 5:  # 3 iterations per epoch: the second of epoch 2
            return loss * float('nan'), recon, terms * float('nan')
        return loss, recon, terms
    monkeypatch.setattr(utils.training, 'loss_terms', nan_in_epoch_two)
    assert train(prepared_root, tmp_path, '--EpochNum', '3', '--TextLogInterval', '100') == 2
    err = capsys.readouterr().err
    folder = tmp_path / f'model_{SETTING}'
    assert 'the loss is nan' in err and 'at iteration 4 (epoch 2)' in err and 'skipped on the device' in err
    state = torch.load(folder / f'{SETTING}_resume.pt', weights_only=True)
    assert state['epochs_done'] == 1 and not (folder / f'{SETTING}_epoch_0001.pt').exists()
    assert all(torch.isfinite(v).all() for v in state['model'].values() if v.is_floating_point())


JOB_FLAGS = ['--steps', '1', '--MemDim', '20', '--EpochNum', '2', '--BatchSize', '4', '--UseCUDA', 'False',
             '--NumWorker', '0']


def run_job(prepared_root, tmp_path, *extra):
    return run_cli(gpu_job.main, ['run', '--out', str(tmp_path / 'out'), '--work', str(tmp_path / 'work'),
                                  '--DataRoot', str(prepared_root), *JOB_FLAGS, *extra])


def test_the_probe_chooses_the_fastest_configuration_whose_first_losses_stay_near_float32(prepared_root, monkeypatch,
                                                                                         capsys):
    """On fixed timings and losses (the real ones need a GPU): bf16 fastest but 6 % off float32 is refused, TF32
    without determinism chosen; --AMP among the flags fixes the precision; float32 is always the reference."""
    timings = {('none', True): (1.0, [1.0] * 5), ('none', False): (0.9, [1.0] * 5),
               ('tf32', True): (0.5, [1.0, 1.01, 1.0, 1.0, 1.02]), ('tf32', False): (0.4, [1.0, 1.0, 1.03, 1.0, 1.0]),
               ('bf16', True): (0.2, [1.0, 1.0, 1.0, 1.06, 1.0]), ('bf16', False): (0.1, [1.06, 1.0, 1.0, 1.0, 1.0])}
    monkeypatch.setattr(gpu_job, 'time_configuration', lambda opt, batches, device, amp, deterministic, steps:
                        timings[amp, deterministic])
    real = gpu_job.configurations
    monkeypatch.setattr(gpu_job, 'configurations', lambda device, opt, flags: real(torch.device('cuda'), opt, flags))
    args = SimpleNamespace(experiment='ped2', DataRoot=str(prepared_root), flags=['--MemDim', '20', '--UseCUDA',
                                                                                  'False', '--BatchSize', '4'])
    record = gpu_job.probe(gpu_job.training_options(args), torch.device('cpu'), 1)
    assert [(row['AMP'], row['IsDeter']) for row in record['configurations']][0] == ('none', True)
    assert record['chosen'] == {'AMP': 'tf32', 'IsDeter': False}
    assert [row['accepted'] for row in record['configurations']] == [True, True, True, True, False, False]
    assert record['configurations'][2]['projected_seconds'] == pytest.approx(100 * 10 / (4 / 0.5))
    args.flags += ['--AMP', 'bf16']
    with pytest.raises(InputError, match='--AMP bf16: its first losses differ from float32'):
        gpu_job.probe(gpu_job.training_options(args), torch.device('cpu'), 1, args.flags)
    args.flags[-1] = 'none'
    fixed = gpu_job.probe(gpu_job.training_options(args), torch.device('cpu'), 1, args.flags)
    assert fixed['chosen'] == {'AMP': 'none', 'IsDeter': False}  # the faster of float32's two


def test_the_gpu_job_trains_tests_and_packs_what_unpacks_to_the_same_auc(prepared_root, tmp_path, capsys):
    assert run_job(prepared_root, tmp_path, '--AMP', 'none') == 0  # the choice itself: the test above
    printed = capsys.readouterr().out
    assert 'probe on cpu' in printed and 'chosen: --AMP none --IsDeter True' in printed
    out = tmp_path / 'out'
    files = sorted(path.name for path in out.iterdir())
    assert len(files) <= 8 and all(path.is_file() for path in out.iterdir())  # what the device tool returns
    assert {'job.json', 'results.json', 'scores.json', 'train_log.csv', 'opt.json'} <= set(files)
    job = json.loads((out / 'job.json').read_text())
    assert job['status'] == 'finished' and job['probe']['chosen'] == {'AMP': 'none', 'IsDeter': True}
    assert [row['AMP'] for row in job['probe']['configurations']] == ['none']
    assert job['probe']['flops_per_clip'] > 0 and job['probe']['clips_per_epoch'] == 10
    weights = tmp_path / 'work' / f'model_{SETTING}' / f'{SETTING}_epoch_0001_final.pt'
    assert job['weights']['sha256'] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert json.loads((out / 'opt.json').read_text())['AMP'] == 'none'
    results = json.loads((out / 'results.json').read_text())
    scores = json.loads((out / 'scores.json').read_text())
    assert sorted(scores) == ['Test001', 'Test002'] and job['auc'] == results['metrics']['auc']
    np.testing.assert_array_equal(scores['Test001'], np.load(tmp_path / 'work' / f'res_{SETTING}' / 'Test001.npy'))

    assert run_cli(gpu_job.main, ['unpack', '--src', str(out), '--dst', str(tmp_path / 'here')]) == 0
    unpacked = tmp_path / 'here' / f'model_{SETTING}' / weights.name
    assert unpacked.read_bytes() == weights.read_bytes()
    assert script_testing.main(['--DataRoot', str(prepared_root), '--ModelRoot', str(tmp_path / 'here'),
                                '--OutRoot', str(tmp_path / 'rescored'), '--UseCUDA', 'False', '--MemDim', '20']) == 0
    rescored = json.loads((tmp_path / 'rescored' / f'res_{SETTING}' / 'results.json').read_text())
    assert rescored['metrics']['auc'] == job['auc']  # the same weights, the same protocol

    part = out / job['weights']['parts'][0]['file']
    part.write_bytes(part.read_bytes()[:-1] + b'\0')
    capsys.readouterr()
    assert run_cli(gpu_job.main, ['unpack', '--src', str(out), '--dst', str(tmp_path / 'again')]) == 2
    assert 'does not match its sha256' in capsys.readouterr().err


def test_a_gpu_job_out_of_time_keeps_its_epochs_and_the_same_command_finishes(prepared_root, tmp_path, capsys):
    # a budget already spent by the probe: training is stopped (SIGTERM) as soon as it starts
    assert run_job(prepared_root, tmp_path, '--AMP', 'none', '--budget', '0') == 1
    job = json.loads((tmp_path / 'out' / 'job.json').read_text())
    assert job['status'].startswith('training stopped') and 'weights' not in job
    printed = capsys.readouterr().out
    assert 'run the same command again to resume' in printed and '--AMP bf16' not in printed  # --AMP fixed it
    assert run_job(prepared_root, tmp_path, '--AMP', 'none') == 0
    assert json.loads((tmp_path / 'out' / 'job.json').read_text())['status'] == 'finished'


def test_the_gpu_job_refuses_a_data_set_that_is_not_video(tmp_path, capsys):
    assert run_cli(gpu_job.main, ['probe', '--experiment', 'kdd', '--DataRoot', str(tmp_path)]) == 2
    assert 'not a video experiment' in capsys.readouterr().err
    assert run_cli(gpu_job.main, ['probe', '--experiment', 'ped3', '--DataRoot', str(tmp_path)]) == 2
    assert "unknown experiment 'ped3'" in capsys.readouterr().err


@pytest.mark.parametrize('amp, tf32', [('none', False), ('tf32', True), ('bf16', False)])
def test_only_amp_tf32_lets_cuda_use_tf32(amp, tf32):
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [flag.allow_tf32 for flag in flags]
    try:
        for flag in flags:  # the opposite to start from (PyTorch's own default for cuDNN: allowed)
            flag.allow_tf32 = not tf32
        gpu_job.set_precision(amp)
        assert [flag.allow_tf32 for flag in flags] == [tf32, tf32]
    finally:
        for flag, value in zip(flags, before):
            flag.allow_tf32 = value


def test_the_testing_script_gets_only_its_own_flags_of_a_training_command_line():
    flags = ['--EpochNum', '2', '--MemDim', '20', '--IsTbLog', 'False', '--VideoSize', '8', '8', '--UseCUDA',
             '--Seed=3', '--LR', '1e-3']
    assert gpu_job.TestOptions().own_flags(flags) == ['--MemDim', '20', '--VideoSize', '8', '8', '--UseCUDA',
                                                      '--Seed=3']


def test_a_resumed_gpu_job_keeps_the_precision_its_run_started_with(tmp_path, capsys):
    opt = SimpleNamespace(setting='run')
    assert gpu_job.earlier_choice(tmp_path, opt) is None  # nothing started: the probe chooses
    (tmp_path / 'opt.json').write_text(json.dumps({'AMP': 'bf16', 'IsDeter': False}))
    assert gpu_job.earlier_choice(tmp_path, opt) is None  # a finished run has no training state
    (tmp_path / 'run_resume.pt').write_bytes(b'state')
    assert gpu_job.earlier_choice(tmp_path, opt) == {'AMP': 'bf16', 'IsDeter': False}
    (tmp_path / 'opt.json').write_text(json.dumps({'AMP': 'fp8', 'IsDeter': False}))
    with pytest.raises(InputError, match='names no valid --AMP'):
        gpu_job.earlier_choice(tmp_path, opt)
